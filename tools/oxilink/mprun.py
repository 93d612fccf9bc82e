"""Run code on the MicroPython unix port with firmware/ and the fetched libraries on its path.

One runner for the tests, the CLI and the benchmarks, so they all execute the same firmware the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import paths

HOST_MP_HELPERS = paths.ROOT / "host_tests" / "mp"


def micropython_binary() -> str:
    """$MICROPYTHON, else the one installed beside this interpreter (.venv/bin), else PATH."""
    env = os.environ.get("MICROPYTHON")
    if env:
        return env
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise FileNotFoundError("no micropython binary: run `make venv` or set MICROPYTHON=/path/to/micropython")
    return found


def micropypath(extra: list[Path] | tuple[Path, ...] = ()) -> str:
    # ".frozen" keeps the port's frozen modules (asyncio) importable.
    parts = [".frozen", *map(str, extra), str(paths.FIRMWARE), str(paths.BUILD_LIB)]
    return ":".join(parts)


def command(script: str | Path, args: list[str] | tuple[str, ...] = (), heapsize: str | None = None) -> list[str]:
    cmd = [micropython_binary()]
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    return cmd + [str(script), *args]


def environment(extra_path: list[Path] | tuple[Path, ...] = ()) -> dict[str, str]:
    env = dict(os.environ)
    env["MICROPYPATH"] = micropypath(extra_path)
    return env


def run(
    script: str | Path,
    args: list[str] | tuple[str, ...] = (),
    *,
    heapsize: str | None = None,
    extra_path: list[Path] | tuple[Path, ...] = (),
    timeout: float | None = None,
    cwd: str | Path | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(script, args, heapsize),
        env=environment(extra_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        input=input,
    )


def popen(script: str | Path, args=(), *, heapsize=None, extra_path=(), **kw) -> subprocess.Popen:
    return subprocess.Popen(command(script, args, heapsize), env=environment(extra_path), **kw)
