"""Loaders for the shared PPG recordings (BIDMC, UW phone oximetry, Welltory, wrist exercise) and their references.

Each loader returns a `Recording`: the signal mapped into MAX30102-like 18-bit counts (intensity, so a pulse
is a dip), its sample rate, and per-second reference series. Nothing here is copied into the repository:
the files are read from `paths.data_dir()` (../shared/data/ppg, or $OXILINK_DATA).
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import paths

DC_COUNTS = 100_000.0  # fingertip DC level the recordings are mapped to
BIDMC_AC_SCALE = 1000.0  # counts per PLETH unit: pulses of a few hundred counts on a DC of ~100000
WELLTORY_FS = 30.0


@dataclass
class Series:
    """A reference value sampled at times `t` (seconds from the start of the signal)."""

    t: np.ndarray
    v: np.ndarray


@dataclass
class Recording:
    name: str
    dataset: str
    fs: float
    ir: np.ndarray
    red: np.ndarray | None = None
    ref_hr: Series | None = None
    ref_spo2: Series | None = None
    activity: str = ""  # wrist_exercise: walk, run, low_resistance_bike, high_resistance_bike
    motion: Series | None = None  # per-second wrist acceleration (evaluation only: never fed to the firmware)
    acc: np.ndarray | None = None  # wrist_exercise(keep_acc=True): acceleration x/y/z (3, n), evaluation only

    @property
    def seconds(self) -> float:
        return len(self.ir) / self.fs


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    return [h.strip() for h in rows[0]], rows[1:]


def _column(header: list[str], rows: list[list[str]], name: str) -> np.ndarray:
    i = header.index(name)
    out = np.full(len(rows), np.nan)
    for k, row in enumerate(rows):
        try:
            out[k] = float(row[i])
        except (ValueError, IndexError):
            pass
    return out


def _fill_nan(x: np.ndarray) -> np.ndarray:
    bad = np.isnan(x)
    if bad.all():
        raise ValueError("signal has no valid samples")
    if bad.any():
        idx = np.arange(len(x))
        x = x.copy()
        x[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    return x


def _valid(t: np.ndarray, v: np.ndarray) -> Series:
    ok = np.isfinite(v) & (v > 0)
    return Series(t[ok], v[ok])


# ---- BIDMC ---------------------------------------------------------------------------------------------

def bidmc_ids(root: Path | None = None) -> list[str]:
    d = (root or paths.data_dir()) / "bidmc"
    return sorted(p.name[6:8] for p in d.glob("bidmc_*_Signals.csv.gz"))


def bidmc(rec_id: str, root: Path | None = None) -> Recording:
    d = (root or paths.data_dir()) / "bidmc"
    header, rows = _read_csv(d / f"bidmc_{rec_id}_Signals.csv.gz")
    pleth = _fill_nan(_column(header, rows, "PLETH"))
    # PLETH is drawn pulse-up: invert into intensity counts around the fingertip DC level.
    ir = DC_COUNTS - BIDMC_AC_SCALE * (pleth - np.mean(pleth))
    nh, nrows = _read_csv(d / f"bidmc_{rec_id}_Numerics.csv")
    t = _column(nh, nrows, "Time [s]")
    hr = _valid(t, _column(nh, nrows, "HR")) if "HR" in nh else None
    spo2 = _valid(t, _column(nh, nrows, "SpO2")) if "SpO2" in nh else None
    return Recording(f"bidmc_{rec_id}", "bidmc", 125.0, ir, None, hr, spo2)


def bidmc_pleth(rec_id: str, root: Path | None = None) -> tuple[np.ndarray, float]:
    """The raw PLETH waveform (pulse-up, 0..1 scale) for building synthetic red/IR."""
    d = (root or paths.data_dir()) / "bidmc"
    header, rows = _read_csv(d / f"bidmc_{rec_id}_Signals.csv.gz")
    return _fill_nan(_column(header, rows, "PLETH")), 125.0


# ---- UW phone oximetry ---------------------------------------------------------------------------------

def uw_ids(root: Path | None = None) -> list[tuple[str, str]]:
    d = (root or paths.data_dir()) / "uw_phone_oximetry" / "ppg-csv"
    return sorted((p.parent.name, p.stem) for p in d.glob("*/*.csv"))


def _median_nonzero(header: list[str], rows: list[list[str]], prefix: str) -> np.ndarray:
    cols = [h for h in header if h.startswith(prefix + " ") and h[len(prefix) + 1:].isdigit()]
    vals = np.vstack([_column(header, rows, c) for c in cols]).T
    vals[(vals <= 0) | ~np.isfinite(vals)] = np.nan
    out = np.full(len(rows), np.nan)
    for k, row in enumerate(vals):
        good = row[np.isfinite(row)]
        if len(good):
            out[k] = float(np.median(good))
    return out


def uw(hand: str, subject: str, root: Path | None = None) -> Recording:
    """Camera red channel as `ir` (raw intensity, pulses are dips); reference = median of the oximeters."""
    base = (root or paths.data_dir()) / "uw_phone_oximetry"
    header, rows = _read_csv(base / "ppg-csv" / hand / f"{subject}.csv")
    r = _fill_nan(_column(header, rows, "R"))
    ir = r * (DC_COUNTS / np.median(r))
    gh, grows = _read_csv(base / "gt" / f"{subject}.csv")
    grows = [row for row in grows if row and not row[0].startswith("Collection")]
    t = np.arange(len(grows), dtype=float)  # row k is second k; camera frame n is at n/30 s
    hr = _valid(t, _median_nonzero(gh, grows, "Pulse"))
    spo2 = _valid(t, _median_nonzero(gh, grows, "SpO2"))
    return Recording(f"uw_{hand.lower()}_{subject}", "uw", 30.0, ir, None, hr, spo2)


# ---- Welltory ------------------------------------------------------------------------------------------

def welltory_ids(root: Path | None = None) -> list[str]:
    d = (root or paths.data_dir()) / "welltory_phone" / "data"
    return sorted(p.name.split("_")[1] for p in d.glob("subject_*") if (p / "PPG.csv").exists())


def rr_to_hr(rr_ms: np.ndarray, seconds: float, half_window: float = 3.0) -> Series:
    """Per-second HR from beat-to-beat intervals: beats per minute over the intervals centred on each second."""
    rr = rr_ms[(rr_ms >= 250) & (rr_ms <= 2500)] / 1000.0
    ends = np.cumsum(rr)
    mids = ends - rr / 2
    t = np.arange(0, int(min(seconds, ends[-1])) + 1, dtype=float)
    v = np.full(len(t), np.nan)
    for k, tk in enumerate(t):
        sel = np.abs(mids - tk) <= half_window
        if sel.sum() >= 2:
            v[k] = 60.0 * sel.sum() / rr[sel].sum()
    return _valid(t, v)


CAMERA_CLIP = 254.5  # 8-bit camera channel at or above this: clipped (no pulse can show)


def camera_channel(header: list[str], rows: list[list[str]]) -> np.ndarray:
    """The camera's red channel, or green when red is clipped in more than half the frames.

    A phone camera against a lit fingertip usually saturates nothing, and red carries the strongest pulse; when
    red reads 255 (the sensor's limit) the pulse is gone from it, as it would be from a saturated MAX30102, and
    camera-PPG apps fall back to green. Welltory subject_20's red is 255 in every frame.
    """
    r = _column(header, rows, "R")
    if np.mean(r[np.isfinite(r)] >= CAMERA_CLIP) > 0.5:
        return _column(header, rows, "G")
    return r


def welltory(subject: str, root: Path | None = None, fs: float = WELLTORY_FS) -> Recording:
    """Irregular camera frames resampled to a uniform rate; HR reference from the chest strap's RR intervals."""
    d = (root or paths.data_dir()) / "welltory_phone" / "data" / f"subject_{subject}"
    header, rows = _read_csv(d / "PPG.csv")
    t_ms = _column(header, rows, "time")
    r = camera_channel(header, rows)
    ok = np.isfinite(t_ms) & np.isfinite(r)
    t_s, r = t_ms[ok] / 1000.0, r[ok]
    order = np.argsort(t_s, kind="stable")
    t_s, r = t_s[order], r[order]
    keep = np.concatenate([[True], np.diff(t_s) > 0])
    t_s, r = t_s[keep], r[keep]
    grid = np.arange(t_s[0], t_s[-1], 1.0 / fs)
    x = np.interp(grid, t_s, r)
    ir = x * (DC_COUNTS / np.median(x))
    rr = np.array([float(v) for v in (d / "RR.txt").read_text().split()])
    return Recording(f"welltory_{subject}", "welltory", fs, ir, None, rr_to_hr(rr, len(ir) / fs))


# ---- Wrist PPG during exercise (EDF + ECG beat annotations) -------------------------------------------

WRIST_GAIN = 1.0 / 32  # counts per EDF digital unit: the band-passed wrist PPG swings a few hundred counts
ECG_TEMPLATE_MEDIAN = 0.8  # clean window: the median beat's QRS correlates this well with the record's median QRS
ECG_TEMPLATE_MIN = 0.5  # ... and no beat in it less than this (an annotation on a motion artefact)
ECG_STEADY = 0.15  # clean window: every beat interval within this fraction of the window's median interval
ECG_HALF_WINDOW_S = 3.0
ECG_MIN_BEATS = 4


@dataclass
class EdfSignal:
    label: str
    physical: np.ndarray
    digital: np.ndarray
    fs: float


def read_edf(path: Path) -> list[EdfSignal]:
    """Every signal of an EDF file (header per the EDF spec: 256 bytes, then 256 per signal; int16 records)."""
    raw = Path(path).read_bytes()
    header_bytes = int(raw[184:192])
    n_records = int(raw[236:244])
    record_s = float(raw[244:252])
    ns = int(raw[252:256])
    fields = []
    pos = 256
    for width in (16, 80, 8, 8, 8, 8, 8, 80, 8, 32):  # label, transducer, dimension, pmin, pmax, dmin, dmax,
        fields.append([raw[pos + i * width:pos + (i + 1) * width].decode("ascii").strip() for i in range(ns)])
        pos += width * ns  # prefiltering, samples per record, reserved
    label, pmin, pmax, dmin, dmax, spr = fields[0], fields[3], fields[4], fields[5], fields[6], fields[8]
    per_record = [int(x) for x in spr]
    data = np.frombuffer(raw[header_bytes:header_bytes + 2 * n_records * sum(per_record)], dtype="<i2")
    data = data.reshape(n_records, sum(per_record))
    out = []
    col = 0
    for i in range(ns):
        d = data[:, col:col + per_record[i]].reshape(-1).astype(float)
        col += per_record[i]
        p0, p1, d0, d1 = float(pmin[i]), float(pmax[i]), float(dmin[i]), float(dmax[i])
        out.append(EdfSignal(label[i], p0 + (d - d0) * (p1 - p0) / (d1 - d0), d, per_record[i] / record_s))
    return out


def wrist_ids(root: Path | None = None) -> list[str]:
    d = (root or paths.data_dir()) / "wrist_exercise"
    return sorted(p.stem for p in (d / "edf").glob("*.edf") if (d / "ecg_beats" / f"{p.stem}.txt").exists())


def wrist_activity(record: str) -> str:
    return record.split("_", 1)[1]


def ecg_beat_samples(path: Path) -> np.ndarray:
    """Sample indexes of the normal (`N`) beats in a text dump of PhysioNet beat annotations."""
    out = []
    for line in path.read_text().splitlines()[1:]:
        p = line.split()
        if len(p) >= 3 and p[2] == "N":
            out.append(int(p[1]))
    return np.array(out, dtype=int)


def _bandpass(x: np.ndarray, fs: float, lo: float, hi: float) -> np.ndarray:
    from scipy.signal import butter, filtfilt

    b, a = butter(2, [lo / (fs / 2), hi / (fs / 2)], "band")
    return filtfilt(b, a, x)


def clean_ecg_hr(ecg: np.ndarray, beats: np.ndarray, fs: float, seconds: int) -> Series:
    """Per-second HR from the ECG beats, only where those beats are clean.

    Each annotated beat's QRS (ECG band-passed 5-30 Hz, +-0.1 s) is correlated with the record's median QRS:
    in the noisy running records the annotations partly follow motion artefacts (s4_run's annotated rate is its
    step cadence), and those do not look like the record's QRS. Second t has a reference when the beats within
    +-3 s are >= 4 and cover the window (no edge gap over 1.5 intervals), their median correlation is >= 0.8
    and none is below 0.5, and every interval between them is within 15 % of their median (a missed or extra
    beat, or an artefact between two beats, breaks it). The value is 60 / mean interval of those beats.
    """
    e = _bandpass(ecg, fs, 5.0, 30.0)
    half = int(0.1 * fs)
    ok = (beats > half) & (beats < len(e) - half)
    beats = beats[ok]
    segs = np.array([e[i - half:i + half + 1] for i in beats])
    template = np.median(segs, axis=0)
    corr = np.array([np.corrcoef(s, template)[0, 1] for s in segs])
    bt = beats / fs
    t = np.arange(seconds, dtype=float)
    v = np.full(seconds, np.nan)
    for k, tk in enumerate(t):
        sel = np.where(np.abs(bt - tk) <= ECG_HALF_WINDOW_S)[0]
        if len(sel) < ECG_MIN_BEATS or sel[-1] - sel[0] != len(sel) - 1:
            continue
        if np.min(corr[sel]) < ECG_TEMPLATE_MIN or np.median(corr[sel]) < ECG_TEMPLATE_MEDIAN:
            continue
        rr = np.diff(bt[sel])
        med = np.median(rr)
        if np.any(np.abs(rr - med) > ECG_STEADY * med):
            continue
        # no beat may be missing at the window's edges either: the window is covered by beats
        if bt[sel[0]] - (tk - ECG_HALF_WINDOW_S) > 1.5 * med or (tk + ECG_HALF_WINDOW_S) - bt[sel[-1]] > 1.5 * med:
            continue
        v[k] = 60.0 / float(np.mean(rr))
    return _valid(t, v)


def wrist_exercise(record: str, root: Path | None = None, keep_acc: bool = False) -> Recording:
    """Wrist PPG (pulse-up in the file: inverted into intensity counts) at its own 256 Hz.

    The trailing padding (every channel at the digital minimum) is cut. Samples where the PPG sits at its
    sensor's limits become ADC full scale, as a clipping MAX30102 reports. `motion` is the per-second
    standard deviation of the wrist acceleration magnitude (m/s^2), for evaluation only; with keep_acc the
    low-noise accelerometer's x/y/z come along as `acc` (bench_wrist's oracle).
    """
    d = (root or paths.data_dir()) / "wrist_exercise"
    sig = read_edf(d / "edf" / f"{record}.edf")
    ecg, ppg = sig[0], sig[1]
    fs = ppg.fs
    pad = ((ecg.digital == -32768) & (ppg.digital == -32768))[::-1]
    n = len(ppg.digital) - (int(np.argmin(pad)) if not pad.all() else len(pad))
    dig = ppg.digital[:n]
    ir = DC_COUNTS - WRIST_GAIN * (dig - np.median(dig))
    ir[(dig >= 32767) | (dig <= -32768)] = 262143.0
    seconds = int(n / fs)
    ref = clean_ecg_hr(ecg.physical[:n], ecg_beat_samples(d / "ecg_beats" / f"{record}.txt"), fs, seconds)
    acc = np.vstack([s.physical[:n] for s in sig[5:8]])  # the low-noise accelerometer (labels are cut: by position)
    mag = np.sqrt((acc ** 2).sum(axis=0))
    per_s = mag[: seconds * int(fs)].reshape(seconds, int(fs)).std(axis=1)
    motion = Series(np.arange(seconds, dtype=float) + 0.5, per_s)
    return Recording(f"wrist_{record}", "wrist_exercise", fs, ir, None, ref, None, wrist_activity(record), motion,
                     acc if keep_acc else None)


# ---- CSV in the `analyze` format -----------------------------------------------------------------------

def read_signal_csv(path: Path) -> tuple[np.ndarray | None, np.ndarray]:
    """`red`/`ir` columns (case-insensitive) of a CSV with a header; returns (red or None, ir) as floats."""
    cols = read_columns(path, required=("ir",), optional=("red",))
    return cols.get("red"), cols["ir"]


def read_columns(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = (),
                 blank_ok: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Named numeric columns (case-insensitive header); blank cells become NaN in `blank_ok` columns."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: empty file") from None
        for name in required:
            if name not in header:
                raise ValueError(f"{path}: no '{name}' column (header: {', '.join(header)})")
        index = {n: header.index(n) for n in required + optional + blank_ok if n in header}
        values: dict[str, list[float]] = {n: [] for n in index}
        for line, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            for name, i in index.items():
                cell = row[i].strip() if i < len(row) else ""
                if cell == "" and name in blank_ok:
                    values[name].append(float("nan"))
                    continue
                try:
                    values[name].append(float(cell))
                except ValueError:
                    raise ValueError(f"{path}:{line}: column {name}: not a number: {cell!r}") from None
    return {n: np.array(v) for n, v in values.items()}


def write_signal_csv(path: Path, ir: np.ndarray, red: np.ndarray | None = None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if red is None:
            w.writerow(["ir"])
            w.writerows([int(round(v))] for v in ir)
        else:
            w.writerow(["red", "ir"])
            w.writerows([int(round(a)), int(round(b))] for a, b in zip(red, ir, strict=True))
