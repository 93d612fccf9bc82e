"""Device identities: everything a device needs, generated into an ignored folder.

secrets/                      (git-ignored)
  pki/ca.pem ca.key crl.pem   the project CA (EC P-256), created on first use
  devices.json                the receiver's device registry (keys by kid)                         0600
  devices/<id>/
    secrets.json              device_id, kid, key, base_iv (hex), wifi_ssid, wifi_password, broker, ntp  0600
    counter.fresh             the kid (hex) of a key never used: lets a board start its counter at 0, once
    device.pem device.key     the device certificate and key (PEM)                                  key 0600
    certs/device.key.der device.crt.der ca.der   the same, DER, as deployed to the board            key 0600

Every deploy brings a fresh kid, AES key and Base IV (deploy_keys; docs/format.md, "Key material"), so a
message counter that restarts at 0 (an erased board, a redeploy, one device id on two boards) never
restarts under a key that was used before. Private material is written 0600 and never printed.
"""

from __future__ import annotations

import json
import os
import secrets as rand
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .broker import RESERVED_PREFIX
from .pki import DEVICE_DAYS, CertificateAuthority, Issued, write_private

KID_BYTES = 8
FRESH_MARKER = "counter.fresh"  # beside the board's counter records (firmware/msgcounter.py)


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: str
    folder: Path
    kid: bytes
    key: bytes
    base_iv: bytes


def secrets_root() -> Path:
    return Path(os.environ.get("OXILINK_SECRETS", paths.ROOT / "secrets"))


def project_ca(root: Path | None = None) -> CertificateAuthority:
    return CertificateAuthority((root or secrets_root()) / "pki")


def device_folder(device_id: str, root: Path | None = None) -> Path:
    return (root or secrets_root()) / "devices" / device_id


def load_identity(device_id: str, root: Path | None = None) -> DeviceIdentity:
    folder = device_folder(device_id, root)
    s = json.loads((folder / "secrets.json").read_text())
    return DeviceIdentity(device_id, folder, bytes.fromhex(s["kid"]), bytes.fromhex(s["key"]),
                          bytes.fromhex(s["base_iv"]))


def check_device_id(device_id: str) -> None:
    """A device id is its certificate's CN and its MQTT identity: 1..32 of [A-Za-z0-9._-], and never one of the
    names reserved for the project's own identities (the receiver's CN, oxilink-receiver, among them)."""
    if not device_id or any(c not in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_." for c in
                            device_id) or len(device_id) > 32:
        raise ValueError(f"device id {device_id!r}: use 1..32 characters of A-Z a-z 0-9 - _ . (a pseudonym, "
                         "never a patient identifier)")
    if device_id.lower().startswith(RESERVED_PREFIX):
        raise ValueError(f"device id {device_id!r}: names starting with {RESERVED_PREFIX!r} are reserved for the "
                         "project's own identities (the receiver is oxilink-receiver); choose another pseudonym")


def provision_device(device_id: str, *, root: Path | None = None, wifi_ssid: str = "", wifi_password: str = "",
                     broker: str = "", days: int = DEVICE_DAYS, rotate_keys: bool = False,
                     ntp: str = "") -> DeviceIdentity:
    """Create the device's identity, or reuse it (a new certificate is issued only when missing);
    rotate_keys=True issues a fresh AES key, Base IV and kid (the receiver keeps the old one for a window)."""
    check_device_id(device_id)
    ca = project_ca(root)
    folder = device_folder(device_id, root)
    secrets_file = folder / "secrets.json"
    old = json.loads(secrets_file.read_text()) if secrets_file.exists() else {}
    if old and not rotate_keys:
        kid, key, base_iv = (bytes.fromhex(old[k]) for k in ("kid", "key", "base_iv"))
    else:
        kid, key, base_iv = rand.token_bytes(KID_BYTES), rand.token_bytes(16), rand.token_bytes(13)
    record = {
        "device_id": device_id,
        "kid": kid.hex(),
        "key": key.hex(),
        "base_iv": base_iv.hex(),
        "wifi_ssid": wifi_ssid or old.get("wifi_ssid", ""),
        "wifi_password": wifi_password or old.get("wifi_password", ""),
        "broker": broker or old.get("broker", ""),
        "ntp": ntp or old.get("ntp", ""),
    }
    write_private(secrets_file, (json.dumps(record, indent=1) + "\n").encode())
    if not old or rotate_keys:  # a key never used: a board may start its counter for it at 0, once
        (folder / FRESH_MARKER).write_text(kid.hex() + "\n")
    if not (folder / "device.pem").exists():
        issued = ca.issue(device_id, folder=folder, days=days)
        issued.cert.rename(folder / "device.pem")
        issued.key.rename(folder / "device.key")
    certs = folder / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    issued = Issued(folder / "device.pem", folder / "device.key")
    write_private(certs / "device.key.der", issued.key_der())
    (certs / "device.crt.der").write_bytes(issued.cert_der())
    (certs / "ca.der").write_bytes(ca.ca_der())
    return DeviceIdentity(device_id, folder, kid, key, base_iv)


def device_registry(root: Path | None = None):
    """The receiver's registry (secrets/devices.json), auditing into var/receiver/audit.log."""
    from .receiver.audit import AuditLog, default_actor
    from .receiver.registry import DeviceRegistry

    return DeviceRegistry((root or secrets_root()) / "devices.json",
                          AuditLog(paths.VAR / "receiver" / "audit.log", default_actor("provision")))


def deploy_keys(device_id: str, *, root: Path | None = None, registry=None,
                dry_run: bool = False) -> list[tuple[Path, str]]:
    """The deploy's key step: a fresh kid, AES key and Base IV for this deploy, written to the device's
    secrets.json and counter.fresh and registered with the receiver (the previous keys stay valid for the
    rotation overlap, so records the board still holds under them are delivered). Returns the (local file,
    board path) pairs that carry them to the board. dry_run: the same pairs, nothing changed. registry: default
    the project's (secrets/devices.json)."""
    folder = device_folder(device_id, root)
    if not dry_run:
        ident = provision_device(device_id, root=root, rotate_keys=True)
        registry = registry or device_registry(root)
        if device_id in registry.devices():
            registry.rotate_key(device_id, ident.kid, ident.key, ident.base_iv)
        else:
            registry.register_device(device_id, ident.kid, ident.key, ident.base_iv)
    return [(folder / "secrets.json", "secrets.json"), (folder / FRESH_MARKER, FRESH_MARKER)]
