"""The device registry: device id → keys (kid, AES key, base IV, validity window), in one JSON file.

Default place: secrets/devices.json (git-ignored, mode 0600). `oxilink provision` (and `oxilink registry`)
write it through register_device / rotate_key / revoke; the receiver only reads it and picks up changes
without a restart (it re-reads the file when its mtime changes).

    {"version": 1, "devices": {"dev-a": {"revoked_at": null, "keys": [
        {"kid": "6465762d61", "key": "<32 hex>", "base_iv": "<26 hex>",
         "not_before": 1795000000.0, "not_after": null, "revoked_at": null}],
        "board": "esp32-devkitc", "certificate_serial": "3f0c...e1"}}}

`board` and `certificate_serial` (hex) are what provisioning knows about the device besides its keys; the
receiver puts them on the device's FHIR Device. Files written before they existed simply lack them.

A kid belongs to exactly one device. Rotation adds the new key and gives the old ones a not_after of
now + overlap_s: during that window both open messages (the device may still be draining its flash queue
sealed under the old key); after it, only the new one. The new key may reuse the kid or bring a new one.
Every change is written atomically (temp file + rename) under an exclusive lock, and audited when an
AuditLog is given (kid and a key fingerprint only, never key material).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .audit import AuditLog

KEY_LEN = 16
BASE_IV_LEN = 13
MAX_KID_LEN = 16
DEFAULT_OVERLAP_S = 7 * 24 * 3600.0  # a device offline for a week can still drain its queue after a rotation
DESCRIPTION = ("board", "certificate_serial")


@dataclass(frozen=True)
class KeyEntry:
    device: str
    kid: bytes
    key: bytes
    base_iv: bytes
    not_before: float
    not_after: float | None
    revoked_at: float | None

    def state(self, now: float) -> str:
        """"valid", "revoked", "expired" or "not yet valid"."""
        if self.revoked_at is not None and now >= self.revoked_at:
            return "revoked"
        if now < self.not_before:
            return "not yet valid"
        if self.not_after is not None and now >= self.not_after:
            return "expired"
        return "valid"


def fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


def _check(device_id: str, kid: bytes, key: bytes, base_iv: bytes) -> None:
    if not device_id or "/" in device_id or "+" in device_id or "#" in device_id:
        raise ValueError(f"device id {device_id!r}: must be non-empty without '/', '+' or '#'")
    if not 1 <= len(kid) <= MAX_KID_LEN:
        raise ValueError(f"kid must be 1..{MAX_KID_LEN} bytes, got {len(kid)}")
    if len(key) != KEY_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes (AES-128), got {len(key)}")
    if len(base_iv) != BASE_IV_LEN:
        raise ValueError(f"base_iv must be {BASE_IV_LEN} bytes, got {len(base_iv)}")


class DeviceRegistry:
    def __init__(self, path: Path, audit: AuditLog | None = None, clock=time.time):
        self.path = Path(path)
        self.audit = audit
        self.clock = clock
        self._stamp: tuple[int, int] | None = None
        self._by_kid: dict[bytes, list[KeyEntry]] = {}
        self._revoked_devices: dict[str, float] = {}
        self._described: dict[str, dict[str, str]] = {}
        self._checked = 0.0

    # --- reading (the receiver) -----------------------------------------------------------------------

    def refresh(self, min_interval_s: float = 1.0) -> None:
        """Re-reads the file if it changed; checks its mtime at most every min_interval_s seconds."""
        now = time.monotonic()
        if self._stamp is not None and now - self._checked < min_interval_s:
            return
        self._checked = now
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._by_kid, self._revoked_devices, self._described = None, {}, {}, {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._index(self._load())
            self._stamp = stamp

    def _index(self, doc: dict) -> None:
        by_kid: dict[bytes, list[KeyEntry]] = {}
        revoked: dict[str, float] = {}
        described: dict[str, dict[str, str]] = {}
        for device, d in doc["devices"].items():
            if d.get("revoked_at") is not None:
                revoked[device] = d["revoked_at"]
            described[device] = {k: d[k] for k in DESCRIPTION if d.get(k) is not None}
            for k in d["keys"]:
                e = KeyEntry(device, bytes.fromhex(k["kid"]), bytes.fromhex(k["key"]), bytes.fromhex(k["base_iv"]),
                             k["not_before"], k.get("not_after"), k.get("revoked_at"))
                by_kid.setdefault(e.kid, []).append(e)
        self._by_kid, self._revoked_devices, self._described = by_kid, revoked, described

    def entries(self, kid: bytes) -> list[KeyEntry]:
        """Every key ever registered under kid, whatever its state (newest last)."""
        self.refresh()
        return self._by_kid.get(kid, [])

    def device_of(self, kid: bytes) -> str | None:
        entries = self.entries(kid)
        return entries[0].device if entries else None

    def is_revoked(self, device: str) -> bool:
        self.refresh()
        return device in self._revoked_devices

    def valid_keys(self, kid: bytes, now: float | None = None) -> list[KeyEntry]:
        """The keys that may open a message with this kid now (two during a rotation window), newest first."""
        now = self.clock() if now is None else now
        entries = self.entries(kid)
        if entries and entries[0].device in self._revoked_devices:
            return []
        return [e for e in reversed(entries) if e.state(now) == "valid"]

    def devices(self) -> dict[str, Any]:
        return self._load()["devices"]

    def description(self, device: str) -> dict[str, str]:
        """What provisioning recorded besides keys: {"board": ..., "certificate_serial": ...}, either may be absent."""
        self.refresh()
        return dict(self._described.get(device, {}))

    # --- writing (provisioning) -----------------------------------------------------------------------

    def register_device(self, device_id: str, kid: bytes, key: bytes, base_iv: bytes, *,
                        not_before: float | None = None, not_after: float | None = None) -> None:
        """Adds a device with its first key (or another key for an existing device, valid alongside)."""
        _check(device_id, kid, key, base_iv)
        now = self.clock()
        with self._editing() as doc:
            self._claim_kid(doc, device_id, kid)
            dev = doc["devices"].setdefault(device_id, {"revoked_at": None, "keys": []})
            if dev.get("revoked_at") is not None:
                raise ValueError(f"device {device_id} was revoked; register it under a new id")
            dev["keys"].append(self._key_doc(kid, key, base_iv, now if not_before is None else not_before,
                                             not_after))
        self._audit("key_registered", device=device_id, kid=kid.hex(), fingerprint=fingerprint(key))

    def register_devices(self, devices: list[tuple[str, bytes, bytes, bytes]]) -> None:
        """Bulk provisioning: (device_id, kid, key, base_iv) for each, in one write of the file."""
        now = self.clock()
        for device_id, kid, key, base_iv in devices:
            _check(device_id, kid, key, base_iv)
        with self._editing() as doc:
            for device_id, kid, key, base_iv in devices:
                self._claim_kid(doc, device_id, kid)
                dev = doc["devices"].setdefault(device_id, {"revoked_at": None, "keys": []})
                if dev.get("revoked_at") is not None:
                    raise ValueError(f"device {device_id} was revoked; register it under a new id")
                dev["keys"].append(self._key_doc(kid, key, base_iv, now, None))
        if self.audit is not None:
            self.audit.extend(("key_registered", {"device": d, "kid": kid.hex(), "fingerprint": fingerprint(key)})
                              for d, kid, key, _ in devices)

    def describe_device(self, device_id: str, *, board: str | None = None,
                        certificate_serial: str | None = None) -> None:
        """Records the device's board name and certificate serial (hex); None leaves a field as it is."""
        given = {k: v for k, v in (("board", board), ("certificate_serial", certificate_serial)) if v is not None}
        if "certificate_serial" in given:
            try:
                given["certificate_serial"] = format(int(given["certificate_serial"], 16), "x")
            except ValueError:
                raise ValueError(f"certificate serial {certificate_serial!r}: expected hex") from None
        with self._editing() as doc:
            dev = doc["devices"].get(device_id)
            if dev is None:
                raise KeyError(f"unknown device {device_id}")
            changed = {k: v for k, v in given.items() if dev.get(k) != v}
            dev.update(changed)
        if changed:
            self._audit("device_described", device=device_id, **changed)

    def rotate_key(self, device_id: str, kid: bytes, key: bytes, base_iv: bytes, *,
                   overlap_s: float = DEFAULT_OVERLAP_S) -> float:
        """Adds a new key valid from now; the device's current keys stay valid for overlap_s more seconds.
        Returns the time at which the old keys stop being accepted."""
        _check(device_id, kid, key, base_iv)
        now = self.clock()
        until = now + overlap_s
        retired = []
        with self._editing() as doc:
            dev = doc["devices"].get(device_id)
            if dev is None:
                raise KeyError(f"unknown device {device_id}")
            if dev.get("revoked_at") is not None:
                raise ValueError(f"device {device_id} is revoked")
            self._claim_kid(doc, device_id, kid)
            for k in dev["keys"]:
                if k.get("revoked_at") is None and (k.get("not_after") is None or k["not_after"] > until):
                    k["not_after"] = until
                    retired.append(k["kid"])
            dev["keys"].append(self._key_doc(kid, key, base_iv, now, None))
        self._audit("key_rotated", device=device_id, kid=kid.hex(), fingerprint=fingerprint(key),
                    old_kids=retired, old_valid_until=until)
        return until

    def revoke(self, device_id: str, kid: bytes | None = None) -> None:
        """Revokes one key (kid given) or the whole device; takes effect at once, no overlap."""
        now = self.clock()
        with self._editing() as doc:
            dev = doc["devices"].get(device_id)
            if dev is None:
                raise KeyError(f"unknown device {device_id}")
            hits = [k for k in dev["keys"] if kid is None or k["kid"] == kid.hex()]
            if kid is not None and not hits:
                raise KeyError(f"device {device_id} has no key {kid.hex()}")
            for k in hits:
                k["revoked_at"] = k.get("revoked_at") or now
            if kid is None:
                dev["revoked_at"] = now
        if kid is None:
            self._audit("device_revoked", device=device_id)
        else:
            self._audit("key_revoked", device=device_id, kid=kid.hex())

    # --- file handling ----------------------------------------------------------------------------------

    @staticmethod
    def _key_doc(kid: bytes, key: bytes, base_iv: bytes, not_before: float, not_after: float | None) -> dict:
        return {"kid": kid.hex(), "key": key.hex(), "base_iv": base_iv.hex(), "not_before": not_before,
                "not_after": not_after, "revoked_at": None}

    @staticmethod
    def _claim_kid(doc: dict, device_id: str, kid: bytes) -> None:
        for other, d in doc["devices"].items():
            if other != device_id and any(k["kid"] == kid.hex() for k in d["keys"]):
                raise ValueError(f"kid {kid.hex()} already belongs to device {other}")

    def _load(self) -> dict:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": 1, "devices": {}}
        if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("devices"), dict):
            raise ValueError(f"{self.path}: not an oxilink device registry (version 1)")
        return doc

    @contextmanager
    def _editing(self) -> Iterator[dict]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with open(lock, "a") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
            doc = self._load()
            yield doc
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        self._stamp = None  # re-read on next use

    def _audit(self, event: str, **detail: Any) -> None:
        if self.audit is not None:
            self.audit.append(event, **detail)
