"""Where things are: the repository, firmware, build folders and the shared data set."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.environ.get("OXILINK_ROOT", Path(__file__).resolve().parents[2]))
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
BUILD = ROOT / "build"
BUILD_LIB = BUILD / "lib"  # fetched MicroPython libraries (umqtt.simple)
BENCH = BUILD / "bench"
VAR = Path(os.environ.get("OXILINK_VAR", ROOT / "var"))  # readings, audit log, sim state


def data_dir() -> Path:
    """The shared PPG recordings: $OXILINK_DATA, else ../shared/data/ppg beside the checkout."""
    env = os.environ.get("OXILINK_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "ppg"
