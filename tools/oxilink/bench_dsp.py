"""DSP bench: the firmware's vitals pipeline (on the unix port) beside HeartPy and an FFT/ratio baseline.

    .venv/bin/python -m oxilink.bench_dsp [--data DIR] [--quick] [--sets a,b] [--jobs N]

Every method emits one value per output second; each is scored against the reference value nearest in time
(within 2 s; on wrist_exercise, whose reference is per second and only where the ECG is clean, the same
second, after an 8 s warm-up). Coverage = outputs with a value / output seconds that have a reference; MAE,
the shares within 5 and 10 bpm and the worst 1 % error (99th percentile of |error|) are over the values
reported. Time to first value: seconds from the start of each recording (the finger placed) to its first
HR / SpO2, and the same on the simulated chip through driver and acquisition. The firmware runs on both
MicroPython builds (--builds): the tables are the first one's (the ESP32-like build: the device's number
model), and a last table compares every set's figures between the builds. Writes build/bench/dsp.json.
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

from . import baselines, cmd_analyze, mprun, paths, ppgdata, synth

MATCH_S = 2.0
WITHIN_BPM = 5.0
WITHIN_WIDE_BPM = 10.0
WORST_PCT = 99.0
# Per set: (seconds a reference may be from the output second, reference seconds skipped at the start).
SCORING = {"wrist": (0.5, 8.0)}
SIM_FIRST_VALUE = [(hr, seed) for hr in (60, 72, 90, 110, 140) for seed in (1, 2, 3)]
FIRST_VALUE_SCRIPT = Path(__file__).parent / "mp" / "first_value.py"
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
            "worst1_pct": round(float(np.percentile(e, WORST_PCT)), 1) if len(e) else None,
        }
        if within is not None:
            out["within_pct"] = round(100.0 * float((e <= within).mean()), 1) if len(e) else None
            out["within10_pct"] = round(100.0 * float((e <= WITHIN_WIDE_BPM).mean()), 1) if len(e) else None
        return out


def score(t: np.ndarray, v: np.ndarray, ref: ppgdata.Series | None, match_s: float = MATCH_S,
          skip_s: float = 0.0) -> Scored:
    """Each output second against the reference value nearest in time, within match_s; reference seconds
    before skip_s are not scored."""
    s = Scored()
    if ref is not None and skip_s > 0:
        keep = ref.t >= skip_s
        ref = ppgdata.Series(ref.t[keep], ref.v[keep])
    if ref is None or len(ref.t) == 0:
        return s
    idx = np.clip(np.searchsorted(ref.t, t), 1, len(ref.t) - 1)
    left, right = ref.t[idx - 1], ref.t[idx]
    nearest = np.where(np.abs(t - left) <= np.abs(right - t), idx - 1, idx)
    if len(ref.t) == 1:
        nearest = np.zeros(len(t), dtype=int)
    close = np.abs(ref.t[nearest] - t) <= match_s
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
    if name == "wrist":
        ids = ppgdata.wrist_ids(root)
        if quick:  # one record of each activity
            acts = sorted({ppgdata.wrist_activity(i) for i in ids})
            ids = [next(i for i in ids if ppgdata.wrist_activity(i) == a) for a in acts]
        return [ppgdata.wrist_exercise(i, root) for i in ids]
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


def _oxilink(rec: ppgdata.Recording, build: str) -> cmd_analyze.Analysis:
    return cmd_analyze.run_arrays(rec.ir, rec.red, int(rec.fs), build=build)


def _first_value(t: np.ndarray, v: np.ndarray) -> float | None:
    """Seconds from the start to the first output second with a value (t counts completed seconds)."""
    ok = np.isfinite(v)
    return float(t[ok][0]) if ok.any() else None


def _median(xs: list[float | None]) -> float | None:
    got = [x for x in xs if x is not None]
    return round(float(np.median(got)), 1) if got else None


def run(sets: list[str], root: Path, quick: bool, jobs: int, builds: list[str]) -> dict:
    result: dict = {"data": str(root), "quick": quick, "builds": {}}
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        loaded = {name: load_set(name, root, quick) for name in sets}
        base_f = {name: [pool.submit(_baselines, r) for r in recs] for name, recs in loaded.items()}
        for build in builds:
            ox_f = {name: [pool.submit(_oxilink, r, build) for r in recs] for name, recs in loaded.items()}
            out: dict = {"micropython": mprun.micropython_binary(build), "sets": {}}
            for name, recs in loaded.items():
                out["sets"][name] = _score_set(name, recs, [f.result() for f in base_f[name]],
                                               [f.result() for f in ox_f[name]])
            out["first_value_sim"] = first_value_in_simulator(pool, quick, build)
            out["first_value_recordings"] = _first_value_recordings(out["sets"])
            out["cpu_100hz"] = cpu_at_100hz(root, build)
            result["builds"][build] = out
    return result


def _first_value_recordings(sets: dict) -> dict:
    starts_hr = [r["first_hr_s"] for e in sets.values() for r in e["per_recording"]]
    starts_spo2 = [r.get("first_spo2_s") for e in sets.values() for r in e["per_recording"] if "first_spo2_s" in r]
    return {"hr_median_s": _median(starts_hr), "spo2_median_s": _median(starts_spo2),
            "hr_starts": len(starts_hr), "spo2_starts": len(starts_spo2)}


def _score_set(name: str, recs: list[ppgdata.Recording], bases: list[dict],
               oxs: list[cmd_analyze.Analysis]) -> dict:
    match_s, skip_s = SCORING.get(name, (MATCH_S, 0.0))
    methods = ("oxilink", "heartpy", "fft", "heartpy_on_oxilink_s", "fft_on_oxilink_s")
    acc = {k: Scored() for k in (*methods, "oxilink_spo2", "fft_spo2")}
    by_activity: dict[str, dict[str, Scored]] = {}
    per_rec = []
    us = []
    first_hr: list[float | None] = []
    first_spo2: list[float | None] = []
    for rec, b, ox in zip(recs, bases, oxs, strict=True):
        us.append(ox.us_per_signal_second)
        t, hr = ox.series("hr_bpm")
        first_hr.append(_first_value(t, hr))
        s = {
            "oxilink": score(t, hr, rec.ref_hr, match_s, skip_s),
            "heartpy": score(*b["heartpy"], rec.ref_hr, match_s, skip_s),
            "fft": score(*b["fft"], rec.ref_hr, match_s, skip_s),
        }
        # the baselines on exactly the seconds oxilink reported (precision at equal coverage)
        for m in ("heartpy", "fft"):
            bt, bv = b[m]
            reported = {int(x) for x in t[np.isfinite(hr)]}
            mask = np.array([int(x) in reported for x in bt])
            s[m + "_on_oxilink_s"] = score(bt[mask], bv[mask], rec.ref_hr, match_s, skip_s)
        for k, v in s.items():
            acc[k].add(v)
        if rec.activity:
            act = by_activity.setdefault(rec.activity, {k: Scored() for k in methods})
            for k, v in s.items():
                act[k].add(v)
        row = {"name": rec.name, "hr": s["oxilink"].summary(WITHIN_BPM), "first_hr_s": first_hr[-1]}
        if rec.red is not None:
            t, sp = ox.series("spo2_pct")
            first_spo2.append(_first_value(t, sp))
            s_sp = score(t, sp, rec.ref_spo2)
            acc["oxilink_spo2"].add(s_sp)
            acc["fft_spo2"].add(score(*b["fft_spo2"], rec.ref_spo2))
            row["spo2"] = s_sp.summary()
            row["first_spo2_s"] = first_spo2[-1]
        per_rec.append(row)
    entry = {
        "recordings": len(recs),
        "signal_seconds": round(sum(r.seconds for r in recs), 1),
        "fs": sorted({r.fs for r in recs}),
        "scoring": {"match_s": match_s, "skip_s": skip_s},
        "hr": {k: acc[k].summary(WITHIN_BPM) for k in methods},
        "first_value_s": {"hr_median": _median(first_hr), "spo2_median": _median(first_spo2)},
        "us_per_signal_second": round(float(np.mean(us)), 1),
        "per_recording": per_rec,
    }
    if by_activity:
        entry["by_activity"] = {a: {k: v[k].summary(WITHIN_BPM) for k in methods}
                                for a, v in sorted(by_activity.items())}
    if acc["oxilink_spo2"].with_ref:
        entry["spo2"] = {"oxilink": acc["oxilink_spo2"].summary(), "ratio_baseline": acc["fft_spo2"].summary()}
    return entry


def _sim_first_value(hr: int, seed: int, build: str) -> tuple[float | None, float | None]:
    proc = mprun.run(FIRST_VALUE_SCRIPT, [str(hr), str(seed)], timeout=300, build=build)
    if proc.returncode != 0:
        raise RuntimeError(f"first_value failed on the unix port:\n{proc.stderr}")
    a, b = proc.stdout.strip().splitlines()[-1].split(",")
    return (float(a) if a else None), (float(b) if b else None)


def first_value_in_simulator(pool: ProcessPoolExecutor, quick: bool, build: str) -> dict:
    """Finger placed on the simulated chip (several rates and beat phases): seconds to the first HR and SpO2."""
    cases = SIM_FIRST_VALUE[::3] if quick else SIM_FIRST_VALUE
    got = list(pool.map(_sim_first_value, *zip(*cases, strict=True), [build] * len(cases)))
    return {"cases": len(cases), "hr_median_s": _median([g[0] for g in got]),
            "spo2_median_s": _median([g[1] for g in got]),
            "hr_max_s": max((g[0] for g in got if g[0] is not None), default=None),
            "spo2_max_s": max((g[1] for g in got if g[1] is not None), default=None),
            "missing": sum(g[0] is None or g[1] is None for g in got)}


def cpu_at_100hz(root: Path, build: str, seconds: float = 300.0) -> dict:
    """Whole pipeline (red + IR) on a synthetic recording resampled to 100 Hz, timed inside MicroPython."""
    rec = synth.synthetic_recording(SYNTH_IDS[0], seed=1, seconds=seconds)
    n = int(len(rec.ir) * 100 / rec.fs)
    x = np.arange(n) * rec.fs / 100
    ir = np.interp(x, np.arange(len(rec.ir)), rec.ir)
    red = np.interp(x, np.arange(len(rec.red)), rec.red)
    runs = [cmd_analyze.run_arrays(ir, red, 100, build=build).us_per_signal_second for _ in range(3)]
    return {"fs": 100, "signal_seconds": seconds, "us_per_signal_second": round(float(min(runs)), 1),
            "runs": [round(r, 1) for r in runs]}


def _fmt(v, suffix: str = "") -> str:
    return "-" if v is None else f"{v}{suffix}"


_COLUMNS = (f"{'method':22} {'cover%':>7} {'MAE':>6} {'<=5%':>6} {'<=10%':>6} {'worst1%':>8}")


def _hr_line(label: str, h: dict) -> str:
    return (f"{label:22} {_fmt(h['coverage_pct']):>7} {_fmt(h['mae']):>6} {_fmt(h.get('within_pct')):>6} "
            f"{_fmt(h.get('within10_pct')):>6} {_fmt(h['worst1_pct']):>8}")


def table(result: dict) -> str:
    builds = list(result["builds"])
    first = result["builds"][builds[0]]
    lines = [f"Firmware on the {builds[0]} MicroPython build ({first['micropython']})"]
    for name, e in first["sets"].items():
        sc = e["scoring"]
        lines.append(f"== {name}: {e['recordings']} recordings, {e['signal_seconds']} s, "
                     f"{e['hr']['oxilink']['n_ref_seconds']} reference seconds (match {sc['match_s']} s, "
                     f"skip {sc['skip_s']} s); oxilink {e['us_per_signal_second']} us per signal-second")
        lines.append("  " + _COLUMNS)
        for m in ("oxilink", "heartpy", "fft", "heartpy_on_oxilink_s", "fft_on_oxilink_s"):
            lines.append("  " + _hr_line(m, e["hr"][m]))
        for act, a in e.get("by_activity", {}).items():
            for m in ("oxilink", "heartpy", "fft"):
                lines.append("  " + _hr_line(f"{act[:14]}/{m}", a[m]))
        if "spo2" in e:
            o, r = e["spo2"]["oxilink"], e["spo2"]["ratio_baseline"]
            lines.append(f"  SpO2: oxilink MAE {o['mae']} Arms {o['arms']} cover {o['coverage_pct']} %; "
                         f"ratio baseline MAE {r['mae']} Arms {r['arms']}")
        f = e["first_value_s"]
        lines.append(f"  first value (median over starts): HR {_fmt(f['hr_median'], ' s')}, "
                     f"SpO2 {_fmt(f['spo2_median'], ' s')}")
    lines.append("== both builds: oxilink HR (MAE / coverage % / within 5 % / within 10 %), SpO2 MAE, first values, "
                 "CPU at 100 Hz")
    for build in builds:
        b = result["builds"][build]
        parts = []
        for name, e in b["sets"].items():
            h = e["hr"]["oxilink"]
            sp = f", SpO2 {e['spo2']['oxilink']['mae']}" if "spo2" in e else ""
            parts.append(f"{name} {h['mae']}/{h['coverage_pct']}/{h['within_pct']}/{h['within10_pct']}{sp}")
        fr, fs, c = b["first_value_recordings"], b["first_value_sim"], b["cpu_100hz"]
        lines.append(f"  {build:9} " + "; ".join(parts))
        lines.append(f"  {'':9} first value, recording starts ({fr['hr_starts']} HR, {fr['spo2_starts']} SpO2): "
                     f"HR median {_fmt(fr['hr_median_s'], ' s')}, SpO2 median {_fmt(fr['spo2_median_s'], ' s')}; "
                     f"simulated chip ({fs['cases']} placements): HR median {_fmt(fs['hr_median_s'], ' s')} "
                     f"(max {_fmt(fs['hr_max_s'])}), SpO2 median {_fmt(fs['spo2_median_s'], ' s')} "
                     f"(max {_fmt(fs['spo2_max_s'])}); CPU {c['us_per_signal_second']} us per signal-second")
    if len(builds) > 1:
        lines.append(f"  largest difference {builds[0]} - {builds[1]}: " + _largest_difference(result, *builds[:2]))
    return "\n".join(lines)


def _largest_difference(result: dict, a: str, b: str) -> str:
    """The largest |difference| between two builds over the sets' HR MAE and SpO2 MAE."""
    hr = sp = 0.0
    for name, e in result["builds"][a]["sets"].items():
        o = result["builds"][b]["sets"][name]
        if e["hr"]["oxilink"]["mae"] is not None and o["hr"]["oxilink"]["mae"] is not None:
            hr = max(hr, abs(e["hr"]["oxilink"]["mae"] - o["hr"]["oxilink"]["mae"]))
        if "spo2" in e and "spo2" in o:
            sp = max(sp, abs(e["spo2"]["oxilink"]["mae"] - o["spo2"]["oxilink"]["mae"]))
    return f"HR MAE {hr:.2f} bpm, SpO2 MAE {sp:.2f} %"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m oxilink.bench_dsp", description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None, help="PPG data folder (default: ../shared/data/ppg)")
    ap.add_argument("--quick", action="store_true", help="a few recordings per set")
    ap.add_argument("--sets", default="bidmc,uw,welltory,synthetic,wrist")
    ap.add_argument("--builds", default=",".join(mprun.BUILDS),
                    help="MicroPython builds to run the firmware on; the first one's figures are tabled in full")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", type=Path, default=paths.BENCH / "dsp.json")
    args = ap.parse_args(argv)
    root = args.data or paths.data_dir()
    if not root.exists():
        print(f"bench_dsp: no data at {root} (use --data or OXILINK_DATA)", file=sys.stderr)
        return 2
    t0 = time.time()
    result = run(args.sets.split(","), root, args.quick, args.jobs, args.builds.split(","))
    result["wall_s"] = round(time.time() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(table(result))
    print(f"wrote {args.out} ({result['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
