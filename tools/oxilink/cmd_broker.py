"""`oxilink broker --listen ADDR [--listen ADDR ...]`: Mosquitto for real boards, in the foreground.

Runs Mosquitto (it replaces this process: signals, exit status and the pid are Mosquitto's, as systemd wants)
with the configuration `oxilink provision` generated in secrets/broker/: mutual TLS on the provisioned port,
the identity plugin, ACL, CRL and durable persistence (docs/broker.md). It listens only on the addresses
given; a name is resolved to its addresses. Nothing defaults to every interface: 0.0.0.0 or :: must be
asked for, and even then a warning says so.

Before starting, the server certificate is checked against every broker name a board was provisioned with
and every listen address, and reissued if one is missing. `oxilink provision --broker NEW-NAME:PORT` while
the broker runs reissues it and sends SIGHUP, and Mosquitto reloads it without dropping a connection.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys

from .broker import BrokerSettings, identity_plugin, mosquitto_binary
from .provision import project_ca, secrets_root


def resolve(address: str) -> list[str]:
    """The IP addresses to bind for one --listen value (an IP address, or a name resolved here)."""
    try:
        return [str(ipaddress.ip_address(address))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError(f"--listen {address}: cannot resolve it ({e.strerror})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def do_broker(args: argparse.Namespace) -> int:
    folder = secrets_root() / "broker"
    settings = BrokerSettings.load(folder)
    if settings is None:
        print(f"oxilink broker: no broker configuration in {folder}: provision a device first "
              "(oxilink provision <id> --board <board> --broker HOST:PORT)", file=sys.stderr)
        return 2
    listen: list[str] = []
    try:
        for value in args.listen:
            addresses = resolve(value)
            listen += addresses
            if value not in addresses and value not in settings.names:
                settings.names.append(value)  # a name boards may use: it goes into the certificate
    except ValueError as e:
        print(f"oxilink broker: {e}", file=sys.stderr)
        return 2
    for address in listen:
        if ipaddress.ip_address(address).is_unspecified:
            print(f"oxilink broker: WARNING: listening on {address}, every interface of this machine",
                  file=sys.stderr)
    settings.listen = list(dict.fromkeys(listen))
    settings.save(folder)
    try:
        identity_plugin()
        mosquitto = mosquitto_binary()
    except (FileNotFoundError, RuntimeError) as e:
        print(f"oxilink broker: {e}", file=sys.stderr)
        return 2
    broker = settings.broker(folder, project_ca(), log_stdout=True)
    print(f"oxilink broker: listening on {', '.join(f'{a} port {broker.port}' for a in broker.listen)}; "
          f"certificate names {', '.join(broker.names)}" + (" (reissued)" if broker.reissued else "")
          + f"; config {broker.conf}", file=sys.stderr, flush=True)
    if args.print_config:
        print(broker.conf.read_text(), end="")
        return 0
    os.execv(mosquitto, [mosquitto, "-c", str(broker.conf)])
    return 1  # not reached


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run Mosquitto for real boards in the foreground (docs/broker.md)")
    p.add_argument("--listen", action="append", required=True, metavar="ADDR",
                   help="an address (or a name, resolved here) to listen on; repeat for more. 0.0.0.0 only if "
                        "you mean every interface")
    p.add_argument("--print-config", action="store_true", help="write the configuration and print it; do not run")
    p.set_defaults(func=do_broker)
