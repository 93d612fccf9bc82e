"""The receiver's own verification (tools/oxilink/receiver/verify.py) for what a test device published: every
message must be accepted exactly as `oxilink receive` would accept it."""

from __future__ import annotations

from pathlib import Path

from oxilink.receiver.audit import AuditLog
from oxilink.receiver.model import Accepted
from oxilink.receiver.registry import DeviceRegistry
from oxilink.receiver.verify import Verifier


def verifier_for(folder: Path, *identities) -> Verifier:
    folder.mkdir(parents=True, exist_ok=True)
    registry = DeviceRegistry(folder / "devices.json", AuditLog(folder / "audit.log", "test"))
    for ident in identities:
        registry.register_device(ident.device_id, ident.kid, ident.key, ident.base_iv, not_before=0)
    return Verifier(registry, lambda device, kid: None)


def verify_all(verifier: Verifier, messages) -> tuple[list[Accepted], list]:
    """(accepted, rejected) for (topic, payload, retain) messages, in order."""
    accepted, rejected = [], []
    for topic, payload, _retain in messages:
        result = verifier.check(topic, payload)
        (accepted if isinstance(result, Accepted) else rejected).append(result)
    return accepted, rejected
