"""`oxilink calibrate REC.csv... --fs HZ --board FILE`: fit the SpO2 curve and write it into a board file.

Each recording is a CSV with `red`, `ir` (raw counts) and `spo2` (reference SpO2 in %, blank where there is
none) columns. The firmware pipeline runs over each one on the unix port and reports, per output second, the
ratio of ratios R behind it; SpO2 = c0 + c1*R + c2*R^2 is fitted by least squares on (R, reference) pairs.
With two or more recordings the leave-one-recording-out error is reported: the curve fitted without a
recording, scored on that recording.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import cmd_analyze, mprun, ppgdata

BOARD_CHECK = Path(__file__).parent / "mp" / "board_check.py"


def ratio_pairs(red: np.ndarray, ir: np.ndarray, spo2: np.ndarray, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """(R, reference SpO2) for every output second with a ratio and a reference (mean over that second)."""
    res = cmd_analyze.run_arrays(ir, red, fs, swap_detect=False)
    rs, refs = [], []
    for row, r in zip(res.rows, res.ratios, strict=True):
        if r is None:
            continue
        seg = spo2[max(0, (row["t"] - 1) * fs):row["t"] * fs]
        seg = seg[np.isfinite(seg)]
        if len(seg):
            rs.append(r)
            refs.append(float(np.mean(seg)))
    return np.array(rs), np.array(refs)


def fit_curve(r: np.ndarray, spo2: np.ndarray, degree: int) -> list[float]:
    """[c0, c1, c2] of SpO2 = c0 + c1 R + c2 R^2 (c2 = 0 for degree 1)."""
    coef = np.polynomial.polynomial.polyfit(r, spo2, degree)
    return [float(c) for c in coef] + [0.0] * (3 - len(coef))


def predict(curve: list[float], r: np.ndarray) -> np.ndarray:
    return curve[0] + curve[1] * r + curve[2] * r * r


def leave_one_out(pairs: list[tuple[str, np.ndarray, np.ndarray]], degree: int) -> list[dict]:
    out = []
    for k, (name, r, s) in enumerate(pairs):
        rest_r = np.concatenate([p[1] for j, p in enumerate(pairs) if j != k])
        rest_s = np.concatenate([p[2] for j, p in enumerate(pairs) if j != k])
        err = predict(fit_curve(rest_r, rest_s, degree), r) - s
        out.append({"recording": name, "seconds": int(len(r)), "mae": float(np.mean(np.abs(err))),
                    "arms": float(np.sqrt(np.mean(err ** 2)))})
    return out


def write_curve(board: Path, curve: list[float]) -> None:
    raw = json.loads(board.read_text())
    raw.setdefault("vitals", {})["spo2_curve"] = [round(c, 4) for c in curve]
    board.write_text(json.dumps(raw, indent=2) + "\n")


def do_calibrate(args: argparse.Namespace) -> int:
    pairs = []
    for f in args.files:
        try:
            cols = ppgdata.read_columns(Path(f), required=("red", "ir", "spo2"), blank_ok=("spo2",))
        except (OSError, ValueError) as e:
            print(f"oxilink calibrate: {e}", file=sys.stderr)
            return 2
        r, s = ratio_pairs(cols["red"], cols["ir"], cols["spo2"], args.fs)
        print(f"{f}: {len(r)} seconds with a ratio and a reference")
        if len(r):
            pairs.append((str(f), r, s))
    n = sum(len(p[1]) for p in pairs)
    if n < 10 * (args.degree + 1):
        print(f"oxilink calibrate: only {n} usable seconds; need at least {10 * (args.degree + 1)}", file=sys.stderr)
        return 1
    all_r = np.concatenate([p[1] for p in pairs])
    all_s = np.concatenate([p[2] for p in pairs])
    curve = fit_curve(all_r, all_s, args.degree)
    fit_err = predict(curve, all_r) - all_s
    report = {
        "spo2_curve": [round(c, 4) for c in curve],
        "seconds": int(n),
        "r_range": [round(float(all_r.min()), 3), round(float(all_r.max()), 3)],
        "fit_mae": round(float(np.mean(np.abs(fit_err))), 2),
        "fit_arms": round(float(np.sqrt(np.mean(fit_err ** 2))), 2),
    }
    if len(pairs) >= 2:
        loo = leave_one_out(pairs, args.degree)
        report["leave_one_out"] = [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in d.items()}
                                   for d in loo]
        err_all = np.array([d["mae"] for d in loo])
        report["leave_one_out_mae"] = round(float(np.average(err_all, weights=[d["seconds"] for d in loo])), 2)
    print(json.dumps(report, indent=1))
    if args.board and not args.dry_run:
        board = Path(args.board)
        write_curve(board, curve)
        proc = mprun.run(BOARD_CHECK, [str(board)], timeout=60)
        if proc.returncode != 0:
            print(f"oxilink calibrate: {board} no longer validates:\n{proc.stderr}", file=sys.stderr)
            return 1
        print(f"wrote vitals.spo2_curve into {board}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit the SpO2 curve from red/IR recordings with reference SpO2")
    p.add_argument("files", nargs="+", metavar="REC.csv", help="CSV with red, ir and spo2 (reference) columns")
    p.add_argument("--fs", type=cmd_analyze._fs_arg, required=True, help="sample rate in Hz (25..400)")
    p.add_argument("--board", help="board file to write vitals.spo2_curve into")
    p.add_argument("--degree", type=int, choices=(1, 2), default=2, help="polynomial degree in R (default 2)")
    p.add_argument("--dry-run", action="store_true", help="report the fit without writing the board file")
    p.set_defaults(func=do_calibrate)
