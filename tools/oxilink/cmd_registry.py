"""`oxilink registry add|rotate|revoke|list`: the receiver's device registry by hand (provisioning uses the
same API: oxilink.receiver.registry.DeviceRegistry). Key material is read as hex; list never prints it."""

from __future__ import annotations

import argparse
import sys
import time

from .receiver import setup
from .receiver.registry import DEFAULT_OVERLAP_S, DESCRIPTION, DeviceRegistry, KeyEntry, fingerprint


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("registry", help="devices and their sealing keys, as the receiver knows them")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, helptext in (("add", "register a device and its first key"),
                           ("rotate", "add a new key; the old ones stay valid for --overlap seconds")):
        a = actions.add_parser(name, help=helptext)
        a.add_argument("device")
        a.add_argument("--kid", type=_hex, required=True, help="key id (hex)")
        a.add_argument("--key-file", required=True, help="file holding the 16-byte AES key as hex (not argv: "
                                                          "command lines are visible to other users)")
        a.add_argument("--base-iv", type=_hex, required=True, help="13-byte base IV (hex)")
        if name == "rotate":
            a.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP_S, help="seconds both keys work")
        a.set_defaults(func=do_add if name == "add" else do_rotate)
    r = actions.add_parser("revoke", help="revoke one key (--kid) or the whole device, at once")
    r.add_argument("device")
    r.add_argument("--kid", type=_hex)
    r.set_defaults(func=do_revoke)
    ls = actions.add_parser("list", help="devices, kids, validity (no key material)")
    ls.set_defaults(func=do_list)
    for a in (*actions.choices.values(),):
        setup.add_registry(a)
        setup.add_audit(a)


def _registry(args: argparse.Namespace) -> DeviceRegistry:
    return DeviceRegistry(args.registry, setup.open_audit(args, "registry"))


def _key(args: argparse.Namespace) -> bytes:
    with open(args.key_file) as f:
        return _hex(f.read().strip())


def do_add(args: argparse.Namespace) -> int:
    _registry(args).register_device(args.device, args.kid, _key(args), args.base_iv)
    return 0


def do_rotate(args: argparse.Namespace) -> int:
    until = _registry(args).rotate_key(args.device, args.kid, _key(args), args.base_iv, overlap_s=args.overlap)
    print(f"old keys of {args.device} accepted until {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(until))}")
    return 0


def do_revoke(args: argparse.Namespace) -> int:
    try:
        _registry(args).revoke(args.device, args.kid)
    except KeyError as e:
        print(f"oxilink registry: {e.args[0]}", file=sys.stderr)
        return 1
    return 0


def do_list(args: argparse.Namespace) -> int:
    now = time.time()
    reg = DeviceRegistry(args.registry)
    for device, d in sorted(reg.devices().items()):
        described = "".join(f"  {k.replace('_', ' ')} {d[k]}" for k in DESCRIPTION if d.get(k))
        print(device + (" (revoked)" if d.get("revoked_at") else "") + described)
        for k in d["keys"]:
            entry = KeyEntry(device, bytes.fromhex(k["kid"]), bytes.fromhex(k["key"]), bytes.fromhex(k["base_iv"]),
                             k["not_before"], k.get("not_after"), k.get("revoked_at"))
            print(f"  kid {k['kid']}  key sha256:{fingerprint(entry.key)}  {entry.state(now)}")
    return 0
