"""`oxilink sim`: the whole system on this machine (broker, devices running the firmware, receiver)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .simulate import SimOptions, SimSystem


def do_sim(args: argparse.Namespace) -> int:
    if args.source and not Path(args.source).exists():
        print(f"oxilink sim: --source {args.source}: no such file")
        return 2
    opts = SimOptions(devices=args.devices, duration=args.duration, speed=args.speed, outage=args.broker_outage,
                      db=args.db, source=Path(args.source) if args.source else None, live=not args.quiet,
                      root=args.root, grace=args.grace, batch_seconds=args.batch_seconds)
    return SimSystem(opts).run()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help="run broker, simulated devices (real firmware, unix port) and the receiver")
    p.add_argument("--devices", type=int, default=1, help="how many simulated devices (default 1)")
    p.add_argument("--duration", type=int, help="seconds of signal per device; then deliver everything and exit "
                   "(default: run until Ctrl-C)")
    p.add_argument("--broker-outage", type=int, metavar="SECONDS", help="stop the broker this long, mid-run")
    p.add_argument("--speed", type=int, default=1, help="simulated seconds per real second (default 1)")
    p.add_argument("--source", help="a CSV with red and ir columns (raw counts at 100 Hz) to replay")
    p.add_argument("--db", type=Path, help="readings database (default var/sim/readings.sqlite)")
    p.add_argument("--root", type=Path, help="state folder (default var/sim)")
    p.add_argument("--grace", type=int, default=120, help="seconds allowed to deliver the backlog at the end")
    p.add_argument("--batch-seconds", type=int, default=5, help="readings per sealed batch (default 5)")
    p.add_argument("--quiet", action="store_true", help="no live table")
    p.set_defaults(func=do_sim)
