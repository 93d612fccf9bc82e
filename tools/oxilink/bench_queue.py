"""Flash-queue benchmark: power-cut sweep, throughput, write amplification, recovery time.

Runs tools/oxilink/mp/bench_queue.py on the MicroPython unix port (RAM block device, real LittleFS),
prints the figures, writes build/bench/queue.json and exits non-zero if a target is missed.

    python -m oxilink.bench_queue [--random-scenarios N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import mprun, paths

SCRIPT = Path(__file__).resolve().parent / "mp" / "bench_queue.py"

# name -> (comparison, limit); the acceptance targets
TARGETS: dict[str, tuple[str, float]] = {
    "lost_records": ("==", 0),
    "corrupt_returned": ("==", 0),
    "other_violations": ("==", 0),
    "write_amplification": ("<=", 3.0),
    "recovery_ms_full": ("<=", 50.0),
    "cut_points": (">=", 1000),
}


def run_benchmark(random_scenarios: int) -> dict:
    proc = mprun.run(SCRIPT, [str(random_scenarios)], heapsize="16M", extra_path=[mprun.HOST_MP_HELPERS],
                     timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"MicroPython benchmark failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


def check_targets(result: dict) -> dict[str, bool]:
    ops = {"==": lambda a, b: a == b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
    return {name: ops[op](result[name], limit) for name, (op, limit) in TARGETS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oxilink.bench_queue", description=__doc__.splitlines()[0])
    parser.add_argument("--random-scenarios", type=int, default=10,
                        help="seeded random scenarios swept in addition to the realistic one (default 10)")
    args = parser.parse_args(argv)
    result = run_benchmark(args.random_scenarios)
    met = check_targets(result)
    result["targets"] = {name: f"{op} {limit}" for name, (op, limit) in TARGETS.items()}
    result["targets_met"] = met
    paths.BENCH.mkdir(parents=True, exist_ok=True)
    out = paths.BENCH / "queue.json"
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    width = max(map(len, result))
    for key in sorted(result):
        if key not in ("targets", "targets_met"):
            mark = "" if key not in met else ("  ok" if met[key] else "  MISSED")
            print(f"{key:<{width}}  {result[key]}{mark}")
    print(f"wrote {out}")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
