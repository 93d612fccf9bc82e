"""The `oxilink` command: one CLI, subcommands from the `cmd_*` modules of this package.

Each `cmd_<name>.py` module defines `register(subparsers)`, adding its parser(s) with
`set_defaults(func=handler)`; a handler takes the parsed args and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oxilink", description="oxilink host tools")
    parser.add_argument("--version", action="version", version=f"oxilink {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    package = importlib.import_module(__package__)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"{__package__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `oxilink export csv | head`: the reader left; not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
