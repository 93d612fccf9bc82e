"""One step of the receiver, without the network: verify a group of messages, store the accepted ones in one
transaction, audit the rest, count everything. When process() returns, all of it is durable (store commit
and audit fsync), so the caller may acknowledge those messages to the broker. Each accepted batch is stored
with the device version it was sent under (deviceinfo.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .alerts import BurstDetector
from .audit import AuditLog
from .deviceinfo import DeviceFacts
from .model import Accepted, Rejected
from .store import Store
from .verify import Verifier

log = logging.getLogger("oxilink.receiver")


@dataclass
class Stats:
    received: int = 0
    stored: int = 0  # new messages stored
    readings_stored: int = 0
    duplicates: int = 0  # accepted but already stored: re-delivery or a replay inside the window
    rejected: int = 0
    alerts: int = 0
    subscribed: bool = False  # set by the network side: the receiver is live
    by_reason: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return {"received": self.received, "stored": self.stored, "readings_stored": self.readings_stored,
                "duplicates": self.duplicates, "rejected": self.rejected, "alerts": self.alerts,
                "subscribed": self.subscribed,
                "rejected_by_reason": dict(sorted(self.by_reason.items())), "started": self.started,
                "updated": time.time()}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        os.replace(tmp, path)


def _rejection_event(r: Rejected, payload: bytes) -> tuple[str, dict]:
    """The audit entry: reason and details, and a short hash of the bytes to match it with broker captures."""
    detail = {"topic": r.topic, "reason": r.reason, "size": r.size, **r.detail,
              "sha256_16": hashlib.sha256(payload).hexdigest()[:16]}
    return ("replay" if r.is_replay else "verification_failed"), detail


class Pipeline:
    def __init__(self, verifier: Verifier, store: Store, audit: AuditLog, alerts: BurstDetector | None = None,
                 stats: Stats | None = None, facts: DeviceFacts | None = None):
        self.verifier = verifier
        self.store = store
        self.audit = audit
        self.alerts = alerts or BurstDetector()
        self.stats = stats or Stats()
        self.facts = facts or DeviceFacts(verifier.registry)
        self._seen_kid: dict[str, bytes] = {}

    def process(self, messages: Sequence[tuple[str, bytes]], now: float | None = None) -> list[Accepted | Rejected]:
        now = time.time() if now is None else now
        results = [self.verifier.check(topic, payload, now) for topic, payload in messages]
        accepted = [r for r in results if isinstance(r, Accepted)]
        for m in accepted:
            if m.batch is not None:
                m.device_version = self.facts.version(m.device, m.batch["fw"], m.batch["cfg"])
        fresh = self.store.write(accepted) if accepted else []
        events: list[tuple[str, dict]] = []
        for (_, payload), result in zip(messages, results, strict=True):
            if isinstance(result, Rejected):
                events.append(_rejection_event(result, payload))
                self.stats.rejected += 1
                self.stats.by_reason[result.reason] += 1
                alert = self.alerts.failure(now, result.reason)
                if alert:
                    self.stats.alerts += 1
                    events.append(("alert", alert))
        for m, new in zip(accepted, fresh, strict=True):
            events += self._device_events(m)
            if new:
                self.stats.stored += 1
                self.stats.readings_stored += len(m.batch["readings"]) if m.batch else 0
            else:
                self.stats.duplicates += 1
        self.stats.received += len(messages)
        self.audit.extend(events, now=now)
        return results

    def _device_events(self, m: Accepted) -> list[tuple[str, dict]]:
        events = []
        last = self._seen_kid.get(m.device)
        if last is None:
            events.append(("device_seen", {"device": m.device, "kid": m.kid.hex(), "counter": m.counter,
                                            "topic": m.topic}))
        elif last != m.kid:
            events.append(("device_key_changed", {"device": m.device, "old_kid": last.hex(), "kid": m.kid.hex(),
                                                   "counter": m.counter}))
        self._seen_kid[m.device] = m.kid
        if m.status and m.status.get("insecure"):
            events.append(("device_insecure_link", {"device": m.device, "counter": m.counter}))
        return events
