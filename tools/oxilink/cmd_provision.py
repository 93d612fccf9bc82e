"""`oxilink provision <device-id> --board <board>` and `oxilink revoke <device-id>`.

provision: creates (or reuses) the project CA, the device's EC P-256 key and certificate, its AES key, Base IV
and key id, and its secrets.json (Wi-Fi from OXILINK_WIFI_SSID / OXILINK_WIFI_PASSWORD or a prompt), registers
it with the receiver's registry (keys; board name and certificate serial for the FHIR Device), and regenerates
the broker's configuration (secrets/broker/): TLS listener, require_certificate, use_identity_as_username, CRL,
and the ACL that lets a device publish only under oxilink/<device-id>/ and read nothing. Private keys are
written 0600 and never printed.

revoke: puts the device certificate on the CRL and revokes its keys in the registry (both audited); restart
(or SIGHUP) the broker to apply it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from cryptography import x509

from . import paths
from .broker import RECEIVER_CN, Mosquitto
from .cmd_board import do_check
from .provision import device_folder, project_ca, provision_device, secrets_root


def _registry():
    from .receiver.audit import AuditLog, default_actor
    from .receiver.registry import DeviceRegistry

    root = secrets_root()
    return DeviceRegistry(root / "devices.json", AuditLog(paths.VAR / "receiver" / "audit.log",
                                                          default_actor("provision")))


def write_broker_config(port: int, hostname: str = "localhost") -> Mosquitto:
    """(Re)generate secrets/broker/: mosquitto.conf, acl, server certificate; and the receiver's identity."""
    ca = project_ca()
    issued = ca.folder / "issued"
    if not (issued / f"{RECEIVER_CN}.pem").exists():
        ca.issue(RECEIVER_CN)
    return Mosquitto(secrets_root() / "broker", ca, port=port, hostname=hostname)


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
          "in the registry. Restart the broker (or send it SIGHUP) to apply.")
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
