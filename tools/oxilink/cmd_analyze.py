"""`oxilink analyze FILE.csv --fs HZ`: replay a recording through the firmware's vitals code on the unix port.

The CSV has a header with `red` and `ir` columns (case-insensitive, raw counts); `ir` alone gives HR only.
Prints one JSON object per output second: t, hr_bpm, spo2_pct, pi_pct (null when not valid), quality
(bitmask), reasons, and gate: which criteria of the motion/signal-quality gate withheld the values.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import mprun, ppgdata
from .firmware_facts import gate_flags, quality_flags

SCRIPT = Path(__file__).parent / "mp" / "analyze.py"


@dataclass
class Analysis:
    rows: list[dict] = field(default_factory=list)
    ratios: list[float | None] = field(default_factory=list)  # ratio of ratios behind each row
    us_per_signal_second: float = 0.0

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(t, value) with NaN where the value is absent."""
        t = np.array([r["t"] for r in self.rows], dtype=float)
        v = np.array([np.nan if r[key] is None else r[key] for r in self.rows], dtype=float)
        return t, v


def reasons(quality: int) -> list[str]:
    return [name for bit, name in quality_flags() if quality & bit]


def gates(gate: int) -> list[str]:
    return [name for bit, name in gate_flags() if gate & bit]


def _value(text: str, scale: float) -> float | None:
    return None if text == "" else int(text) / scale


def parse_output(text: str) -> Analysis:
    out = Analysis()
    for line in text.splitlines():
        if line.startswith("#us_per_signal_second="):
            out.us_per_signal_second = float(line.split("=", 1)[1])
            continue
        if not line.strip():
            continue
        t, hr, spo2, pi, q, r, g = line.split(",")
        out.rows.append({
            "t": int(t),
            "hr_bpm": _value(hr, 10),
            "spo2_pct": _value(spo2, 10),
            "pi_pct": _value(pi, 100),
            "quality": int(q),
            "reasons": reasons(int(q)),
            "gate": gates(int(g)),
        })
        out.ratios.append(None if r == "" else float(r))
    return out


def run_arrays(ir: np.ndarray, red: np.ndarray | None, fs: int, *, board: Path | None = None,
               swap_detect: bool = True, timeout: float = 600, build: str | None = None) -> Analysis:
    """Run the firmware pipeline over raw counts (red may be None: HR only)."""
    ir_i = np.clip(np.rint(ir), 0, 262143).astype("<i4")
    red_i = np.zeros_like(ir_i) if red is None else np.clip(np.rint(red), 0, 262143).astype("<i4")
    with tempfile.TemporaryDirectory(prefix="oxilink-analyze-") as tmp:
        data = Path(tmp) / "samples.i32"
        np.column_stack([red_i, ir_i]).astype("<i4").tofile(data)
        args = [str(data), str(int(fs))]
        if red is None:
            args.append("--ir-only")
        if board is not None:
            args += ["--board", str(board)]
        if not swap_detect:
            args.append("--no-swap-detect")
        proc = mprun.run(SCRIPT, args, timeout=timeout, build=build)
    if proc.returncode != 0:
        raise RuntimeError(f"analyze failed on the unix port:\n{proc.stderr}")
    return parse_output(proc.stdout)


def _fs_arg(text: str) -> int:
    fs = float(text)
    if fs != int(fs) or not 25 <= fs <= 400:
        raise argparse.ArgumentTypeError(f"--fs {text}: the pipeline runs at whole rates of 25..400 Hz")
    return int(fs)


def do_analyze(args: argparse.Namespace) -> int:
    try:
        red, ir = ppgdata.read_signal_csv(Path(args.file))
    except (OSError, ValueError) as e:
        print(f"oxilink analyze: {e}", file=sys.stderr)
        return 2
    try:
        result = run_arrays(ir, red, args.fs, board=Path(args.board) if args.board else None,
                            swap_detect=not args.no_swap_detect)
    except RuntimeError as e:
        print(f"oxilink analyze: {e}", file=sys.stderr)
        return 1
    for row in result.rows:
        sys.stdout.write(json.dumps(row) + "\n")
    if args.timing:
        print(f"us_per_signal_second: {result.us_per_signal_second:.1f}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="replay a red/IR CSV through the firmware's vitals code (JSON lines)")
    p.add_argument("file", metavar="FILE.csv", help="CSV with header; columns red and ir (or ir alone)")
    p.add_argument("--fs", type=_fs_arg, required=True, help="sample rate in Hz (25..400)")
    p.add_argument("--board", help="board file whose vitals section (SpO2 curve, thresholds) to use")
    p.add_argument("--no-swap-detect", action="store_true", help="do not flag channels that look swapped")
    p.add_argument("--timing", action="store_true", help="print us_per_signal_second to stderr")
    p.set_defaults(func=do_analyze)
