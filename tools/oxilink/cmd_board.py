"""`oxilink board check FILE...`: validate board files with the firmware's own schema, on the unix port."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import mprun

SCRIPT = Path(__file__).parent / "mp" / "board_check.py"


def _json_position(path: Path) -> str | None:
    """CPython's JSON parser says where a syntax error is; MicroPython's does not."""
    try:
        json.loads(path.read_text())
    except (OSError, UnicodeDecodeError):
        return None
    except json.JSONDecodeError as e:
        return f"{path}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
    return None


def do_check(args: argparse.Namespace) -> int:
    files = [Path(f) for f in args.files]
    proc = mprun.run(SCRIPT, [str(f) for f in files], timeout=60)
    sys.stdout.write(proc.stdout)
    err = proc.stderr
    for f in files:
        where = _json_position(f)
        if where:
            err = "\n".join(line for line in err.splitlines() if not line.startswith(f"{f}: not valid JSON"))
            err = (err + "\n" if err else "") + where
    if err.strip():
        sys.stderr.write(err.rstrip("\n") + "\n")
    return proc.returncode


def register(sub: argparse._SubParsersAction) -> None:
    board = sub.add_parser("board", help="board files: validate against the schema (docs/boards.md)")
    bsub = board.add_subparsers(dest="board_command", metavar="ACTION", required=True)
    check = bsub.add_parser("check", help="validate board files; exit 0 when all are valid")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=do_check)
