"""A board double's flash: a LittleFS image file, as an ESP32's "vfs" partition (2 MiB of 4096-byte blocks).

The image is read and written by MicroPython's own littlefs (mp/_flash.py, the code the board runs), through
mp/_flashtool.py, so what the host writes is exactly what the board mounts.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .. import mprun

MP_DIR = Path(__file__).resolve().parent / "mp"
BLOCK_SIZE = 4096
DEFAULT_SIZE = 2 * 1024 * 1024


def erase(path: Path, size: int = DEFAULT_SIZE) -> Path:
    """An erased flash (every byte 0xFF): the board formats it at its first boot, as `esptool erase-flash`
    followed by flashing MicroPython leaves it."""
    if size % BLOCK_SIZE or size < 16 * BLOCK_SIZE:
        raise ValueError(f"flash size must be a multiple of {BLOCK_SIZE} bytes, at least 64 KiB; got {size}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff" * size)
    return path


def run_tool(image: Path, commands: list, build: str | None = None) -> list:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(commands, f)
        cmd_file = f.name
    try:
        proc = mprun.run(MP_DIR / "_flashtool.py", [str(image), cmd_file], extra_path=[MP_DIR], build=build,
                         heapsize="1M", timeout=120)
    finally:
        Path(cmd_file).unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"flash tool failed on {image}:\n{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class FlashImage:
    def __init__(self, path: Path, build: str | None = None):
        self.path = Path(path)
        self.build = build

    def erase(self, size: int = DEFAULT_SIZE) -> None:
        erase(self.path, size)

    def format(self) -> None:
        run_tool(self.path, [["format"]], self.build)

    def files(self) -> dict[str, tuple[int, str]]:
        """{path: (size, sha256 hex)} of every file; {} on an erased or unformatted flash."""
        got = run_tool(self.path, [["ls"]], self.build)[0]
        if isinstance(got, dict):
            return {}
        return {p: (size, digest) for p, size, digest in got}

    def read(self, path: str) -> bytes | None:
        got = run_tool(self.path, [["read", path]], self.build)[0]
        return None if got is None or isinstance(got, dict) else bytes.fromhex(got)

    def exists(self, path: str) -> bool:
        got = run_tool(self.path, [["exists", path]], self.build)[0]
        return got is True

    def put(self, files: list[tuple[Path, str]], remove: list[str] = ()) -> None:
        """Copy host files into the image (formatting an erased flash first, as the board would)."""
        commands: list = [["remove", r] for r in remove] + [["put", str(src), dst] for src, dst in files]
        got = run_tool(self.path, commands, self.build)
        if any(isinstance(g, dict) for g in got):
            run_tool(self.path, [["format"]], self.build)
            run_tool(self.path, commands, self.build)
