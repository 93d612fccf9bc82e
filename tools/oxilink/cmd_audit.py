"""`oxilink audit verify|show`: check the hash chain of the receiver's audit log, or read it."""

from __future__ import annotations

import argparse
import json
import sys

from .receiver import setup
from .receiver.audit import read_entries, verify


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="the receiver's hash-chained audit log")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    v = actions.add_parser("verify", help="exit 1 and name every edited, deleted or reordered entry")
    setup.add_audit(v, operator=False)
    v.set_defaults(func=do_verify)
    s = actions.add_parser("show", help="print entries (JSON lines)")
    setup.add_audit(s, operator=False)
    s.add_argument("--event", action="append", help="only this event (repeatable), e.g. verification_failed")
    s.add_argument("--tail", type=int, help="only the last N matching entries")
    s.set_defaults(func=do_show)


def do_verify(args: argparse.Namespace) -> int:
    count, problems = verify(args.audit)
    for p in problems:
        print(f"{args.audit}: {p}", file=sys.stderr)
    if problems:
        print(f"audit log {args.audit}: TAMPERED or damaged ({len(problems)} problem(s), {count} entries read)")
        return 1
    print(f"audit log {args.audit}: intact, {count} entries")
    return 0


def do_show(args: argparse.Namespace) -> int:
    entries = [e for e in read_entries(args.audit) if not args.event or e.get("event") in args.event]
    for e in entries[-args.tail:] if args.tail else entries:
        print(json.dumps(e, ensure_ascii=False))
    return 0
