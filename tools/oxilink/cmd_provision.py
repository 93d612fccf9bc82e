"""`oxilink provision <device-id> --board <board>` and `oxilink revoke <device-id>`.

provision: creates (or reuses) the project CA, the device's EC P-256 key and certificate, its AES key, Base IV
and key id, and its secrets.json (Wi-Fi from OXILINK_WIFI_SSID / OXILINK_WIFI_PASSWORD or a prompt), registers
it with the receiver's registry (keys; board name and certificate serial for the FHIR Device), and regenerates
the broker's configuration (secrets/broker/): TLS listener, require_certificate, the identity plugin (client id =
certificate CN[/suffix]), CRL, and the ACL that lets a device publish only under oxilink/<device-id>/ and read
nothing. Private keys are written 0600 and never printed.

A new broker name (--broker HOST) is added to the server certificate's SANs (reissued; a running `oxilink
broker` reloads it). Names starting with "oxilink" are reserved for the project's own identities (the
receiver) and refused as device ids.

revoke: puts the device certificate on the CRL and revokes its keys in the registry (both audited); a running
`oxilink broker` reloads the CRL.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys

from cryptography import x509

from . import paths
from .broker import RECEIVER_CN, BrokerSettings, Mosquitto, running_pid
from .cmd_board import do_check
from .provision import check_device_id, device_folder, device_registry, project_ca, provision_device, secrets_root


def _registry():
    return device_registry()


def write_broker_config(port: int, hostname: str = "localhost") -> Mosquitto:
    """(Re)generate secrets/broker/ for a board that will reach the broker at hostname:port: broker.json, the
    server certificate (reissued when hostname is a new name), mosquitto.conf, acl; and the receiver's identity.
    A running `oxilink broker` is told to reload (SIGHUP) when its certificate changed."""
    ca = project_ca()
    issued = ca.folder / "issued"
    if not (issued / f"{RECEIVER_CN}.pem").exists():
        ca.issue(RECEIVER_CN)
    folder = secrets_root() / "broker"
    settings = BrokerSettings.load(folder) or BrokerSettings(port)
    if settings.port != port:
        raise ValueError(f"--broker port {port} differs from the broker's port {settings.port} "
                         f"({folder / BrokerSettings.FILE}): every board of this broker uses that one port")
    if hostname not in settings.names:
        settings.names.append(hostname)
    settings.save(folder)
    broker = settings.broker(folder, ca)
    if broker.reissued:
        reload_running_broker(broker, f"new server certificate for {', '.join(broker.names)}")
    return broker


def reload_running_broker(broker: Mosquitto, why: str) -> None:
    pid = running_pid(broker.pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
        print(f"  broker (pid {pid}) reloaded: {why}")


def _wifi(platform: str) -> tuple[str, str]:
    ssid = os.environ.get("OXILINK_WIFI_SSID", "")
    password = os.environ.get("OXILINK_WIFI_PASSWORD", "")
    if platform != "unix" and not ssid and sys.stdin.isatty():
        ssid = input("Wi-Fi SSID: ")
        password = getpass.getpass("Wi-Fi password: ")
    return ssid, password


def _host_port(text: str) -> None:
    host, sep, port = text.rpartition(":")
    if (sep and (not host or not port.isdigit() or not 0 < int(port) < 65536)) or not text:
        raise ValueError(f"{text!r} is not HOST or HOST:PORT")


def do_provision(args: argparse.Namespace) -> int:
    board_file = paths.BOARDS / f"{args.board}.json"
    if do_check(argparse.Namespace(files=[str(board_file)])) != 0:
        return 1
    board = json.loads(board_file.read_text())
    mqtt = board.get("mqtt", {})
    host, port = mqtt.get("host", "localhost"), int(mqtt.get("port", 8883))
    if args.broker:
        host, _, p = args.broker.rpartition(":")
        port = int(p)
    ssid, password = _wifi(board["platform"])
    if args.ntp:
        try:
            _host_port(args.ntp)
        except ValueError as e:
            print(f"oxilink provision: --ntp: {e}", file=sys.stderr)
            return 2
    try:
        check_device_id(args.device_id)
        write_broker_config(port, host)  # before the identity: a port that is not the broker's is refused
        ident = provision_device(args.device_id, wifi_ssid=ssid, wifi_password=password, broker=f"{host}:{port}",
                                 days=args.days, rotate_keys=args.rotate_keys, ntp=args.ntp or "")
    except ValueError as e:
        print(f"oxilink provision: {e}", file=sys.stderr)
        return 2
    registry = _registry()
    known = ident.device_id in registry.devices()
    if known and args.rotate_keys:
        registry.rotate_key(ident.device_id, ident.kid, ident.key, ident.base_iv)
    elif not known:
        registry.register_device(ident.device_id, ident.kid, ident.key, ident.base_iv)
    cert = x509.load_pem_x509_certificate((ident.folder / "device.pem").read_bytes())
    registry.describe_device(ident.device_id, board=args.board, certificate_serial=format(cert.serial_number, "x"))
    write_broker_config(port, host)
    print(f"device {ident.device_id}: secrets in {ident.folder} (private files 0600)")
    print(f"  key id {ident.kid.hex()}; certificate valid until {cert.not_valid_after_utc:%Y-%m-%d}")
    if not ssid and board["platform"] != "unix":
        print("  no Wi-Fi credentials: set OXILINK_WIFI_SSID / OXILINK_WIFI_PASSWORD and provision again")
    print(f"  broker config: {secrets_root() / 'broker' / 'mosquitto.conf'}")
    print(f"  next: make deploy BOARD={args.board} DEVICE={ident.device_id} PORT=/dev/ttyUSB0")
    return 0


def do_revoke(args: argparse.Namespace) -> int:
    folder = device_folder(args.device_id)
    if not (folder / "device.pem").exists():
        print(f"oxilink revoke: no device {args.device_id!r} in {folder.parent}", file=sys.stderr)
        return 2
    serial = project_ca().revoke(args.device_id, folder / "device.pem")
    registry = _registry()
    if args.device_id in registry.devices():
        registry.revoke(args.device_id)
    print(f"device {args.device_id}: certificate {serial:x} revoked (CRL {project_ca().crl_path}); keys revoked "
          "in the registry. A running `oxilink broker` reloads the CRL now; restart any other broker.")
    settings = BrokerSettings.load(secrets_root() / "broker")
    if settings is not None:
        reload_running_broker(settings.broker(secrets_root() / "broker", project_ca()), "CRL updated")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("provision", help="create a device identity: certificate, keys, secrets.json, registry")
    p.add_argument("device_id", help="the device's pseudonym (never a patient identifier)")
    p.add_argument("--board", required=True, help="board name (boards/<board>.json)")
    p.add_argument("--broker", help="HOST:PORT the device connects to (default: the board file's mqtt section)")
    p.add_argument("--ntp", help="SNTP server HOST[:PORT] the device sets its clock from (default: the board "
                   "file's time.ntp_server)")
    p.add_argument("--days", type=int, default=365, help="certificate validity in days (default 365)")
    p.add_argument("--rotate-keys", action="store_true", help="issue a new AES key, Base IV and key id")
    p.set_defaults(func=do_provision)
    r = sub.add_parser("revoke", help="revoke a device: CRL + registry (audited)")
    r.add_argument("device_id")
    r.set_defaults(func=do_revoke)
