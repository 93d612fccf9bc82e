"""`oxilink board check FILE...`: validate board files with the firmware's own schema, on the unix port."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import mprun

SCRIPT = Path(__file__).parent / "mp" / "board_check.py"


def _json_error(path: Path) -> str | None:
    """Strict JSON check with a position: MicroPython's parser is lenient (it accepts `,,`) and terse."""
    try:
        json.loads(path.read_text())
    except (OSError, UnicodeDecodeError):
        return None  # the device-side loader reports unreadable files
    except json.JSONDecodeError as e:
        return f"{path}: not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
    return None


def do_check(args: argparse.Namespace) -> int:
    files = [Path(f) for f in args.files]
    syntax = {f: err for f in files if (err := _json_error(f))}
    for err in syntax.values():
        print(err, file=sys.stderr)
    rest = [str(f) for f in files if f not in syntax]
    rc = 1 if syntax else 0
    if rest:
        proc = mprun.run(SCRIPT, rest, timeout=60)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        rc = rc or proc.returncode
    return rc


def register(sub: argparse._SubParsersAction) -> None:
    board = sub.add_parser("board", help="board files: validate against the schema (docs/boards.md)")
    bsub = board.add_subparsers(dest="board_command", metavar="ACTION", required=True)
    check = bsub.add_parser("check", help="validate board files; exit 0 when all are valid")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=do_check)
