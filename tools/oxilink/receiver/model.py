"""What verification decides about one message: Accepted (to store) or Rejected (to audit); and Quarantined,
for a message that could not be stored (or whose verification failed unexpectedly): kept aside, audited,
acknowledged."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .deviceinfo import DeviceVersion


@dataclass
class Accepted:
    topic: str
    kind: str  # "vitals" or "status"
    device: str
    kid: bytes
    counter: int
    received_at: float
    batch: dict | None = None  # sealed.decode_batch() for vitals
    status: dict | None = None  # sealed.decode_status() for status
    device_version: DeviceVersion | None = None  # for vitals: what the device was (deviceinfo.py)
    size: int = 0  # bytes of the sealed message

    def status_json(self) -> str | None:
        return None if self.status is None else json.dumps(self.status, sort_keys=True)


@dataclass
class Rejected:
    topic: str
    reason: str  # short and stable: the label alerts and counters group by
    received_at: float
    size: int
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def is_replay(self) -> bool:
        return self.reason == "replay"


@dataclass
class Quarantined:
    topic: str
    reason: str  # "database refused" or "internal error"
    received_at: float
    size: int
    detail: dict[str, Any] = field(default_factory=dict)
