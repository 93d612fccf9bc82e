"""One step of the receiver, without the network: verify a group of messages, store the accepted ones in one
transaction, audit the rest, count everything. When process() returns, all of it is durable (store commit
and audit fsync), so the caller may acknowledge those messages to the broker.

No message can stop ingest (a poison message). Verification range-checks every field against the format's
limits, so a value no database can hold is refused there. Should the database still refuse an accepted
message (store.data_errors: a constraint, a value it cannot bind), the group is split in halves until the
message is alone, and it goes to the quarantine table instead: raw sealed bytes, reason and error, audited,
counted, and acknowledged like any other, while the rest of the group is stored. A message whose
verification itself failed unexpectedly ("internal error") is quarantined too. Errors of the database itself
(disk, connection) are not the message's fault: they propagate, nothing is acknowledged, the broker keeps
the messages.

Each accepted batch is stored with the device version it was sent under (deviceinfo.py).
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
from .model import Accepted, Quarantined, Rejected
from .store import QuarantineEntry, Store
from .verify import Verifier

log = logging.getLogger("oxilink.receiver")


@dataclass
class Stats:
    received: int = 0
    stored: int = 0  # new messages stored
    readings_stored: int = 0
    duplicates: int = 0  # accepted but already stored: re-delivery or a replay inside the window
    rejected: int = 0
    quarantined: int = 0  # kept aside: the database refused it, or its verification failed unexpectedly
    alerts: int = 0
    subscribed: bool = False  # set by the network side: the receiver is live
    by_reason: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return {"received": self.received, "stored": self.stored, "readings_stored": self.readings_stored,
                "duplicates": self.duplicates, "rejected": self.rejected, "quarantined": self.quarantined,
                "alerts": self.alerts,
                "subscribed": self.subscribed,
                "rejected_by_reason": dict(sorted(self.by_reason.items())), "started": self.started,
                "updated": time.time()}

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=1) + "\n")
        os.replace(tmp, path)


def _quarantined(result: Accepted | Rejected, error: BaseException | None) -> Quarantined:
    if isinstance(result, Accepted):
        detail = {"device": result.device, "kid": result.kid.hex(), "counter": result.counter,
                  "error": f"{type(error).__name__}: {error}"[:300]}
        return Quarantined(result.topic, "database refused", result.received_at, result.size, detail)
    return Quarantined(result.topic, "internal error", result.received_at, result.size, dict(result.detail))


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

    def process(self, messages: Sequence[tuple[str, bytes]],
                now: float | None = None) -> list[Accepted | Rejected | Quarantined]:
        now = time.time() if now is None else now
        results: list[Accepted | Rejected | Quarantined] = [self.verifier.check(topic, payload, now)
                                                             for topic, payload in messages]
        for r in results:
            if isinstance(r, Accepted) and r.batch is not None:
                r.device_version = self.facts.version(r.device, r.batch["fw"], r.batch["cfg"])
        fresh: dict[int, bool] = {}
        refused: dict[int, BaseException] = {}
        self._write([i for i, r in enumerate(results) if isinstance(r, Accepted)], results, fresh, refused)
        kept: list[QuarantineEntry] = []
        for i, result in enumerate(results):
            if i in refused or (isinstance(result, Rejected) and result.reason == "internal error"):
                results[i] = q = _quarantined(result, refused.get(i))
                kept.append(QuarantineEntry(now, q.topic, q.reason, q.detail, messages[i][1]))
        if kept:
            self.store.quarantine(kept)
        events: list[tuple[str, dict]] = []
        for i, ((_, payload), result) in enumerate(zip(messages, results, strict=True)):
            if isinstance(result, Rejected):
                events.append(_rejection_event(result, payload))
                self.stats.rejected += 1
                self.stats.by_reason[result.reason] += 1
                alert = self.alerts.failure(now, result.reason)
                if alert:
                    self.stats.alerts += 1
                    events.append(("alert", alert))
            elif isinstance(result, Quarantined):
                log.warning("quarantined a message on %s: %s", result.topic, result.detail.get("error"))
                events.append(("quarantined", {"topic": result.topic, "reason": result.reason, "size": result.size,
                                               **result.detail,
                                               "sha256_16": hashlib.sha256(payload).hexdigest()[:16]}))
                self.stats.quarantined += 1
                self.stats.by_reason[result.reason] += 1
            else:
                events += self._device_events(result)
                if fresh[i]:
                    self.stats.stored += 1
                    self.stats.readings_stored += len(result.batch["readings"]) if result.batch else 0
                else:
                    self.stats.duplicates += 1
        self.stats.received += len(messages)
        self.audit.extend(events, now=now)
        return results

    def _write(self, indexes: list[int], results: list, fresh: dict[int, bool],
               refused: dict[int, BaseException]) -> None:
        """Stores results[indexes] in one transaction; if the database refuses the data, in halves, down to the
        single messages it refuses (into `refused`). Any other error propagates."""
        if not indexes:
            return
        try:
            written = self.store.write([results[i] for i in indexes])
        except self.store.data_errors as e:
            if len(indexes) == 1:
                refused[indexes[0]] = e
                return
            half = len(indexes) // 2
            self._write(indexes[:half], results, fresh, refused)
            self._write(indexes[half:], results, fresh, refused)
            return
        fresh.update(zip(indexes, written, strict=True))

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
