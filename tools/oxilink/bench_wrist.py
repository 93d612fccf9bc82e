"""The spectral ceiling on wrist_exercise: how right any PPG-only choice of rate can be there (issue 16).

    .venv/bin/python -m oxilink.bench_wrist [--data DIR]

Scored on the seconds `make bench-dsp` scores on this set (a clean-ECG reference, after the 8 s warm-up),
each against the trailing 8 s of wrist PPG that ends on it (decimated to 32 Hz, band-passed 0.5-4 Hz, Hann
window, zero-padded to 0.47 bpm bins) and its spectral peaks in 30-222 bpm, strongest first. Printed:

- `top k`: the share of seconds whose reference is within 5 bpm of one of the k strongest peaks: the most
  that any PPG-only choice among those k peaks could be right;
- `accelerometer oracle` (evaluation only: the board has no accelerometer): the strongest PPG peak that is
  not within 4 bpm of 1/2, 1, 2 or 3 times one of the two strongest wrist-acceleration peaks, i.e. motion
  harmonics removed as accelerometer-based methods do;
- PPG-only confidence rankings of the strongest peak (its share of the band's power within 3 bpm of it,
  that over the second peak's, how many seconds it has held within 3 bpm): the share right among the 10 %
  and 20 % of seconds each ranks most confident, which is what a gate reporting 10 % or 20 % of the seconds
  could reach by that sign.

Writes build/bench/wrist_ceiling.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import paths, ppgdata

FS = 32.0
WINDOW_S = 8
NFFT = 4096
BAND_BPM = (30.0, 222.0)
WITHIN_BPM = 5.0
MOTION_TOL_BPM = 4.0
MOTION_MULTIPLES = (0.5, 1.0, 2.0, 3.0)
HOLD_BPM = 3.0
PEAK_BPM = 3.0  # a peak's power: the bins within this of it (the Hann main lobe of 8 s is +-15 bpm wide)
WARMUP_S = 8
SHARES = (0.1, 0.2)
BPM = np.fft.rfftfreq(NFFT, 1.0 / FS) * 60.0
BIN_BPM = BPM[1]
OUT_OF_BAND = (BPM < BAND_BPM[0]) | (BPM > BAND_BPM[1])


def to_32hz(x: np.ndarray, fs: float) -> np.ndarray:
    """Band-passed 0.5-4 Hz at 32 Hz (pulse-up: the counts are inverted)."""
    from scipy.signal import butter, filtfilt, resample_poly

    x = np.asarray(x, dtype=float)
    y = resample_poly(np.median(x) - x, int(FS), int(fs))
    b, a = butter(2, [0.5 / (FS / 2), 4.0 / (FS / 2)], "band")
    return filtfilt(b, a, y)


def power(window: np.ndarray) -> np.ndarray:
    """Power spectrum (Hann window, zero-padded to NFFT) with the bins outside BAND_BPM at zero."""
    p = np.abs(np.fft.rfft(window * np.hanning(len(window)), NFFT)) ** 2
    p[OUT_OF_BAND] = 0.0
    return p


def strongest(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spectrum's local maxima inside the band (not its edge bins), strongest first: (bpm, share of the
    band's power within PEAK_BPM of each)."""
    from scipy.signal import find_peaks

    idx, _ = find_peaks(p)
    idx = idx[(BPM[idx] > BAND_BPM[0] + BIN_BPM) & (BPM[idx] < BAND_BPM[1] - BIN_BPM)]
    idx = idx[np.argsort(p[idx])[::-1]]
    cum = np.concatenate([[0.0], np.cumsum(p)])
    w = int(round(PEAK_BPM / BIN_BPM))
    near = cum[np.minimum(idx + w + 1, len(p))] - cum[np.maximum(idx - w, 0)]
    return BPM[idx], near / (cum[-1] or 1.0)


def per_second(ppg32: np.ndarray, acc32: list[np.ndarray], ref: ppgdata.Series) -> list[dict]:
    """For each reference second after the warm-up: the PPG's and the acceleration's peaks over the window
    that ends on it."""
    n = int(WINDOW_S * FS)
    rows = []
    for t, v in zip(ref.t, ref.v, strict=True):
        end = int(round(t * FS))
        if t < WARMUP_S or end < n or end > len(ppg32):
            continue
        f, share = strongest(power(ppg32[end - n:end]))
        acc_bpm, _ = strongest(sum(power(a[end - n:end]) for a in acc32))
        rows.append({"t": float(t), "ref": float(v), "bpm": f, "share": share, "acc_bpm": acc_bpm[:2]})
    return rows


def is_motion(bpm: float, acc_bpm: np.ndarray) -> bool:
    return any(abs(bpm - m * a) <= MOTION_TOL_BPM for a in acc_bpm for m in MOTION_MULTIPLES)


def held_seconds(rows: list[dict]) -> np.ndarray:
    """Per row: for how many consecutive earlier seconds the strongest peak stayed within HOLD_BPM."""
    out = np.zeros(len(rows))
    for i in range(1, len(rows)):
        same = rows[i]["t"] - rows[i - 1]["t"] == 1.0 and len(rows[i]["bpm"]) and len(rows[i - 1]["bpm"])
        if same and abs(rows[i]["bpm"][0] - rows[i - 1]["bpm"][0]) <= HOLD_BPM:
            out[i] = out[i - 1] + 1
    return out


def right_among_most_confident(score: np.ndarray, right: np.ndarray, share: float) -> float:
    """Share of `right` among the `share` of rows with the highest score (ties broken by order)."""
    k = max(1, int(round(share * len(score))))
    order = np.argsort(-score, kind="stable")
    return float(right[order[:k]].mean())


def figures(rows: list[dict]) -> dict:
    def right_in(k: int) -> np.ndarray:
        return np.array([any(abs(b - r["ref"]) <= WITHIN_BPM for b in r["bpm"][:k]) for r in rows])

    top1 = right_in(1)
    oracle = []
    for r in rows:
        free = [b for b in r["bpm"] if not is_motion(b, r["acc_bpm"])]
        oracle.append(bool(free) and abs(free[0] - r["ref"]) <= WITHIN_BPM)
    share0 = np.array([r["share"][0] if len(r["share"]) else 0.0 for r in rows])
    share1 = np.array([r["share"][1] if len(r["share"]) > 1 else 1e-9 for r in rows])
    rankings = {"concentration": share0, "peak_ratio": share0 / share1, "held_s": held_seconds(rows) + 1e-3 * share0}
    return {
        "seconds": len(rows),
        "top_k_within5_pct": {k: round(100 * float(right_in(k).mean()), 1) for k in (1, 2, 3, 6)},
        "accelerometer_oracle_within5_pct": round(100 * float(np.mean(oracle)), 1),
        "most_confident_within5_pct": {
            name: {f"{int(100 * s)}%": round(100 * right_among_most_confident(score, top1, s), 1) for s in SHARES}
            for name, score in rankings.items()},
    }


def record_rows(record: str, root: Path) -> list[dict]:
    rec = ppgdata.wrist_exercise(record, root, keep_acc=True)
    return per_second(to_32hz(rec.ir, rec.fs), [to_32hz(a, rec.fs) for a in rec.acc], rec.ref_hr)


def run(root: Path) -> dict:
    by_activity: dict[str, list[dict]] = {}
    pooled: list[dict] = []
    for record in ppgdata.wrist_ids(root):
        rows = record_rows(record, root)
        by_activity.setdefault(ppgdata.wrist_activity(record), []).extend(rows)
        pooled.extend(rows)
    return {"pooled": figures(pooled), "activities": {a: figures(r) for a, r in sorted(by_activity.items())}}


def table(result: dict) -> str:
    lines = ["set | seconds | top1 | top2 | top3 | top6 | acc. oracle | best PPG-only ranking at 10 % / 20 %"]
    for name, f in [("pooled", result["pooled"])] + list(result["activities"].items()):
        best = max(f["most_confident_within5_pct"].items(), key=lambda kv: kv[1]["10%"])
        k = f["top_k_within5_pct"]
        lines.append(f"{name} | {f['seconds']} | {k[1]} | {k[2]} | {k[3]} | {k[6]} | "
                     f"{f['accelerometer_oracle_within5_pct']} | {best[0]} {best[1]['10%']} / {best[1]['20%']}")
    lines.append("pooled, every ranking (within 5 bpm among the 10 % / 20 % most confident seconds): " + ", ".join(
        f"{n} {v['10%']} / {v['20%']}" for n, v in result["pooled"]["most_confident_within5_pct"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m oxilink.bench_wrist", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="PPG data folder (default: ../shared/data/ppg)")
    ap.add_argument("--out", type=Path, default=paths.BENCH / "wrist_ceiling.json")
    args = ap.parse_args(argv)
    root = args.data or paths.data_dir()
    if not (root / "wrist_exercise").exists():
        print(f"bench_wrist: no wrist_exercise recordings under {root} (use --data or OXILINK_DATA)", file=sys.stderr)
        return 2
    result = run(root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
