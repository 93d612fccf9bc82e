"""Loaders for the shared PPG recordings (BIDMC, UW phone oximetry, Welltory) and their reference values.

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
