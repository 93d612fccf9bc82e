"""The clock shim (clockshim.c), built for the MicroPython binary that runs the board: -m32 for the esp32like
build, -m64 for the 64-bit wheel. `make double-shim` builds both into build/double/; this builds on demand."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .. import paths

SOURCE = Path(__file__).resolve().parent / "clockshim.c"
OUT = paths.BUILD / "double"


def binary_bits(binary: str) -> int:
    """32 or 64: the word size of the process `binary` becomes (a script runs in the 64-bit CPython)."""
    with open(binary, "rb") as f:
        head = f.read(5)
    if head[:4] == b"\x7fELF":
        return 32 if head[4] == 1 else 64
    return 64


def library(bits: int) -> Path:
    lib = OUT / f"clockshim{bits}.so"
    if lib.exists() and lib.stat().st_mtime >= SOURCE.stat().st_mtime:
        return lib
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise FileNotFoundError("no C compiler for the board double's clock shim: run `make system-deps`")
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_suffix(".tmp")
    subprocess.run([cc, f"-m{bits}", "-shared", "-fPIC", "-O2", "-Wall", "-o", str(tmp), str(SOURCE), "-ldl"],
                   check=True)
    tmp.replace(lib)
    return lib
