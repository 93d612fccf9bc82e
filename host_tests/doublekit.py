"""Helpers for tests on the board double (tools/oxilink/double): a board with files on its flash."""

from __future__ import annotations

from pathlib import Path

from oxilink.double import Board
from oxilink.double.flashimage import FlashImage, erase


def flash_with(tmp_path: Path, files: dict[str, str | bytes], name: str = "flash.img") -> Path:
    """An ESP32 flash image holding `files` ({board path: content}), formatted as the board formats it."""
    image = erase(tmp_path / name)
    srcdir = tmp_path / (name + ".src")
    srcdir.mkdir(exist_ok=True)
    puts = []
    for i, (remote, content) in enumerate(files.items()):
        src = srcdir / f"f{i}"
        src.write_bytes(content.encode() if isinstance(content, str) else content)
        puts.append((src, remote))
    FlashImage(image).put(puts)
    return image


def board(tmp_path: Path, files: dict[str, str | bytes] | None = None, **kw) -> Board:
    """A Board (not yet powered: use it as a context manager) booting from a flash with `files`."""
    image = flash_with(tmp_path, files) if files is not None else None
    return Board(tmp_path / "board", image, **kw)
