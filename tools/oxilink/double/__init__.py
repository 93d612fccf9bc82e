"""The board double: an ESP32 dev board simulated on the host, that boots the deployed firmware unchanged.

See docs/board-double.md. Board (board.py) is the API for tests and `oxilink double` the CLI.
"""

from .board import Board, Boot, default_wiring
from .wifi import AccessPoint

__all__ = ["AccessPoint", "Board", "Boot", "default_wiring"]
