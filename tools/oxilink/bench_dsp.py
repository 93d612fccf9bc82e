"""DSP bench: the firmware's vitals pipeline (on the unix port) beside HeartPy and an FFT/ratio baseline.

    .venv/bin/python -m oxilink.bench_dsp [--data DIR] [--quick] [--jobs N]

Every method emits one value per output second; each is scored against the reference value nearest in time
(within 2 s). Coverage = outputs with a value / output seconds that have a reference. Writes
build/bench/dsp.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import baselines, cmd_analyze, paths, ppgdata, synth

MATCH_S = 2.0
WITHIN_BPM = 5.0
SYNTH_IDS = ("01", "05", "09", "13", "17", "21", "25", "29", "33", "37")


@dataclass
class Scored:
    errors: list[float] = field(default_factory=list)
    with_ref: int = 0  # output seconds that have a reference within MATCH_S

    def add(self, other: Scored) -> None:
        self.errors += other.errors
        self.with_ref += other.with_ref

    def summary(self, within: float | None = None) -> dict:
        e = np.abs(np.array(self.errors))
        out = {
            "n_values": int(len(e)),
            "n_ref_seconds": int(self.with_ref),
            "coverage_pct": round(100.0 * len(e) / self.with_ref, 1) if self.with_ref else None,
            "mae": round(float(e.mean()), 2) if len(e) else None,
            "arms": round(float(np.sqrt((e ** 2).mean())), 2) if len(e) else None,
        }
        if within is not None:
            out["within_pct"] = round(100.0 * float((e <= within).mean()), 1) if len(e) else None
        return out


def score(t: np.ndarray, v: np.ndarray, ref: ppgdata.Series | None) -> Scored:
    """Each output second against the reference value nearest in time, within MATCH_S."""
    s = Scored()
    if ref is None or len(ref.t) == 0:
        return s
    idx = np.clip(np.searchsorted(ref.t, t), 1, len(ref.t) - 1)
    left, right = ref.t[idx - 1], ref.t[idx]
    nearest = np.where(np.abs(t - left) <= np.abs(right - t), idx - 1, idx)
    if len(ref.t) == 1:
        nearest = np.zeros(len(t), dtype=int)
    close = np.abs(ref.t[nearest] - t) <= MATCH_S
    s.with_ref = int(close.sum())
    ok = close & np.isfinite(v)
    s.errors = list((v[ok] - ref.v[nearest[ok]]).astype(float))
    return s


def load_set(name: str, root: Path, quick: bool) -> list[ppgdata.Recording]:
    if name == "bidmc":
        ids = ppgdata.bidmc_ids(root)
        return [ppgdata.bidmc(i, root) for i in (ids[:6] if quick else ids)]
    if name == "uw":
        ids = ppgdata.uw_ids(root)
        return [ppgdata.uw(h, s, root) for h, s in (ids[:2] if quick else ids)]
    if name == "welltory":
        ids = ppgdata.welltory_ids(root)
        return [ppgdata.welltory(s, root) for s in (ids[:6] if quick else ids)]
    if name == "synthetic":
        ids = SYNTH_IDS[:3] if quick else SYNTH_IDS
        return [synth.synthetic_recording(i, seed=int(i), seconds=180 if quick else None) for i in ids]
    raise ValueError(name)


def _baselines(rec: ppgdata.Recording) -> dict:
    t, hp = baselines.heartpy_hr(rec.ir, rec.fs)
    t2, ff = baselines.fft_hr(rec.ir, rec.fs)
    out = {"heartpy": (t, hp), "fft": (t2, ff)}
    if rec.red is not None:
        out["fft_spo2"] = baselines.ratio_spo2(rec.red, rec.ir, rec.fs)
    return out


def _oxilink(rec: ppgdata.Recording) -> cmd_analyze.Analysis:
    return cmd_analyze.run_arrays(rec.ir, rec.red, int(rec.fs))


def run(sets: list[str], root: Path, quick: bool, jobs: int) -> dict:
    result: dict = {"data": str(root), "quick": quick, "sets": {}}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for name in sets:
            recs = load_set(name, root, quick)
            base_f = [pool.submit(_baselines, r) for r in recs]
            ox_f = [pool.submit(_oxilink, r) for r in recs]
            acc = {k: Scored() for k in ("oxilink", "heartpy", "fft", "oxilink_spo2", "fft_spo2")}
            per_rec = []
            us = []
            for rec, bf, of in zip(recs, base_f, ox_f, strict=True):
                ox = of.result()
                b = bf.result()
                us.append(ox.us_per_signal_second)
                t, hr = ox.series("hr_bpm")
                s_ox = score(t, hr, rec.ref_hr)
                acc["oxilink"].add(s_ox)
                acc["heartpy"].add(score(*b["heartpy"], rec.ref_hr))
                acc["fft"].add(score(*b["fft"], rec.ref_hr))
                row = {"name": rec.name, "hr": s_ox.summary(WITHIN_BPM)}
                if rec.red is not None:
                    t, sp = ox.series("spo2_pct")
                    s_sp = score(t, sp, rec.ref_spo2)
                    acc["oxilink_spo2"].add(s_sp)
                    acc["fft_spo2"].add(score(*b["fft_spo2"], rec.ref_spo2))
                    row["spo2"] = s_sp.summary()
                per_rec.append(row)
            entry = {
                "recordings": len(recs),
                "signal_seconds": round(sum(r.seconds for r in recs), 1),
                "fs": sorted({r.fs for r in recs}),
                "hr": {k: acc[k].summary(WITHIN_BPM) for k in ("oxilink", "heartpy", "fft")},
                "us_per_signal_second": round(float(np.mean(us)), 1),
                "per_recording": per_rec,
            }
            if acc["oxilink_spo2"].with_ref:
                entry["spo2"] = {"oxilink": acc["oxilink_spo2"].summary(), "ratio_baseline": acc["fft_spo2"].summary()}
            result["sets"][name] = entry
    result["cpu_100hz"] = cpu_at_100hz(root)
    return result


def cpu_at_100hz(root: Path, seconds: float = 300.0) -> dict:
    """Whole pipeline (red + IR) on a synthetic recording resampled to 100 Hz, timed inside MicroPython."""
    rec = synth.synthetic_recording(SYNTH_IDS[0], seed=1, seconds=seconds)
    n = int(len(rec.ir) * 100 / rec.fs)
    x = np.arange(n) * rec.fs / 100
    ir = np.interp(x, np.arange(len(rec.ir)), rec.ir)
    red = np.interp(x, np.arange(len(rec.red)), rec.red)
    runs = [cmd_analyze.run_arrays(ir, red, 100).us_per_signal_second for _ in range(3)]
    return {"fs": 100, "signal_seconds": seconds, "us_per_signal_second": round(float(min(runs)), 1),
            "runs": [round(r, 1) for r in runs]}


def _fmt(v, suffix: str = "") -> str:
    return "-" if v is None else f"{v}{suffix}"


def table(result: dict) -> str:
    lines = [
        f"{'set':10} {'method':9} {'HR MAE':>7} {'<=5bpm%':>8} {'cover%':>7} {'SpO2 MAE':>9} {'Arms':>6} {'us/s':>7}",
    ]
    for name, e in result["sets"].items():
        for m in ("oxilink", "heartpy", "fft"):
            h = e["hr"][m]
            sp = None
            if "spo2" in e and m in ("oxilink", "fft"):
                sp = e["spo2"]["oxilink" if m == "oxilink" else "ratio_baseline"]
            us = e["us_per_signal_second"] if m == "oxilink" else None
            lines.append(
                f"{name:10} {m:9} {_fmt(h['mae']):>7} {_fmt(h.get('within_pct')):>8} {_fmt(h['coverage_pct']):>7} "
                f"{_fmt(sp and sp['mae']):>9} {_fmt(sp and sp['arms']):>6} {_fmt(us):>7}"
            )
    c = result["cpu_100hz"]
    lines.append(f"CPU at 100 Hz (red+IR, unix port): {c['us_per_signal_second']} us per signal-second")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m oxilink.bench_dsp", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="PPG data folder (default: ../shared/data/ppg)")
    ap.add_argument("--quick", action="store_true", help="a few recordings per set")
    ap.add_argument("--sets", default="bidmc,uw,welltory,synthetic")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", type=Path, default=paths.BENCH / "dsp.json")
    args = ap.parse_args(argv)
    root = args.data or paths.data_dir()
    if not root.exists():
        print(f"bench_dsp: no data at {root} (use --data or OXILINK_DATA)", file=sys.stderr)
        return 2
    t0 = time.time()
    result = run(args.sets.split(","), root, args.quick, args.jobs)
    result["wall_s"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"wrote {args.out} ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
