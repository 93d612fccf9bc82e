"""`oxilink quarantine list|save`: the messages the receiver kept aside (docs/receiver.md, "Quarantine").

list: one JSON line per message (id, when, topic, reason, details, size, SHA-256), never the bytes.
save ID -o FILE: the sealed message exactly as received (still encrypted), for a closer look or a replay.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .receiver import setup


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quarantine", help="messages the receiver kept aside instead of storing")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="print the quarantined messages (JSON lines, without their bytes)")
    setup.add_db(ls)
    ls.set_defaults(func=do_list)
    save = actions.add_parser("save", help="write one quarantined message's sealed bytes to a file")
    setup.add_db(save)
    save.add_argument("id", type=int)
    save.add_argument("-o", "--output", type=Path, required=True)
    save.set_defaults(func=do_save)


def do_list(args: argparse.Namespace) -> int:
    store = setup.open_db(args)
    try:
        for q in store.quarantined():
            payload = q.pop("payload")
            print(json.dumps({**q, "detail": json.loads(q["detail"]), "size": len(payload)}, ensure_ascii=False))
    finally:
        store.close()
    return 0


def do_save(args: argparse.Namespace) -> int:
    store = setup.open_db(args)
    try:
        found = [q for q in store.quarantined() if q["id"] == args.id]
    finally:
        store.close()
    if not found:
        print(f"oxilink quarantine: no quarantined message {args.id} in {setup.db_label(args.db)}", file=sys.stderr)
        return 2
    args.output.write_bytes(bytes(found[0]["payload"]))
    print(f"message {args.id} ({found[0]['reason']}, {found[0]['topic']}): {args.output}")
    return 0
