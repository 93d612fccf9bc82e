"""`oxilink plot --device ID --since T -o out.png`: HR and SpO2 trends with signal-quality shading."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .receiver import setup
from .receiver.timeparse import parse_time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="draw a device's HR and SpO2 trends to a PNG")
    p.add_argument("--device", required=True)
    p.add_argument("--since", help="from this time (ISO 8601, unix seconds, or an age like 24h)")
    p.add_argument("--until", help="up to this time, exclusive")
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    setup.add_db(p)
    setup.add_audit(p)
    p.set_defaults(func=do_plot)


def do_plot(args: argparse.Namespace) -> int:
    from .receiver.plot import plot_trends  # matplotlib is slow to import: only when plotting

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
    except ValueError as e:
        print(f"oxilink plot: {e}", file=sys.stderr)
        return 2
    store = setup.open_db(args)
    try:
        n = plot_trends(store.readings(args.device, since, until), args.output, f"{args.device}")
    finally:
        store.close()
    if not n:
        print(f"oxilink plot: no readings for {args.device} in that period", file=sys.stderr)
        return 1
    setup.open_audit(args, "plot").append("export", format="png", device=args.device, since=since, until=until,
                                          output=str(args.output), rows=n, db=setup.db_label(args.db))
    print(f"{args.output}: {n} readings")
    return 0
