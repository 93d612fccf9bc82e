"""Everything a message must pass before it is stored: topic shape, registry key, COSE tag with the topic as
external AAD, device binding, the per-device replay window, payload structure and physiological sanity.

check() never raises: every failure becomes a Rejected with a short reason (the label counters, alerts and
the audit log group by) and details. Reasons: unexpected topic, too large, bad CBOR, wrong tag, bad structure,
bad protected header, missing header ..., unknown alg, unexpected header, ciphertext shorter than tag,
unknown kid, key revoked, key expired, key not yet valid, device revoked, authentication failure,
wrong topic, counter out of range, replay, bad batch structure, bad status structure, device mismatch,
value out of range, internal error.

Replay window: per key (kid), the highest counter accepted so far (hi) is remembered (and re-read from the
store after a restart). A counter at or below hi - window is a replay: rejected. Anything above that is
let through to the store, whose (device, kid, counter) primary key tells a duplicate (seen before: stored
once, counted) from a late but new message. Counters are per key: every deploy brings a fresh key whose
counter starts at 0 (docs/format.md), so a board restarted under its new key is never taken for a replay of
the old one. The window is wide by default because a device drains a flash queue of old batches after an
outage; exact duplicate detection does not depend on it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .. import sealed
from .model import Accepted, Rejected
from .registry import DeviceRegistry

TOPIC_ROOT = "oxilink"
KINDS = ("vitals", "status")
MAX_MESSAGE = 64 * 1024
MAX_COUNTER = (1 << 63) - 1  # stored as a signed 64-bit integer
DEFAULT_WINDOW = 1 << 16

# Physiologically possible ranges; a value outside is a sensor or firmware fault, not a patient.
LIMITS = {"hr_bpm": (20.0, 300.0), "spo2_pct": (50.0, 100.0), "pi_pct": (0.0, 100.0)}
EARLIEST_T = 946684800.0  # 2000-01-01: a device clock before this was never set
FUTURE_SLACK_S = 24 * 3600.0
MAX_READINGS = sealed.MAX_READINGS
MAX_QUALITY = sealed.QUALITY_RANGE[1]


def parse_topic(topic: str) -> tuple[str, str] | None:
    """(device id, kind) of oxilink/<device>/<vitals|status>, or None."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != TOPIC_ROOT or not parts[1] or parts[2] not in KINDS:
        return None
    return parts[1], parts[2]


def sanity_problem(batch: dict, now: float) -> str | None:
    """The first absurd thing in a decoded batch, described, or None. Column-wise min/max: this runs for
    every reading the receiver stores."""
    readings = batch["readings"]
    if len(readings) > MAX_READINGS:
        return f"{len(readings)} readings (max {MAX_READINGS})"
    if not readings:
        return None
    checks = [("t", EARLIEST_T, now + FUTURE_SLACK_S), *((n, lo, hi) for n, (lo, hi) in LIMITS.items()),
              ("quality", 0, MAX_QUALITY)]
    for name, low, high in checks:
        values = [v for r in readings if (v := r[name]) is not None]
        if not values or (low <= min(values) and max(values) <= high and all(map(math.isfinite, values))):
            continue
        for i, r in enumerate(readings):
            v = r[name]
            if v is not None and not (math.isfinite(v) and low <= v <= high):
                return f"readings[{i}].{name}={v} outside {low:g}..{high:g}"
    return None


class Verifier:
    def __init__(self, registry: DeviceRegistry, high_counter: Callable[[str, bytes], int | None],
                 window: int = DEFAULT_WINDOW, clock: Callable[[], float] = time.time):
        if window < 1:
            raise ValueError(f"replay window must be >= 1, got {window}")
        self.registry = registry
        self.window = window
        self.clock = clock
        self._load_high = high_counter
        self._high: dict[tuple[str, bytes], int | None] = {}

    def high(self, device: str, kid: bytes) -> int | None:
        """The highest counter accepted under this key (None: none yet)."""
        if (device, kid) not in self._high:
            self._high[device, kid] = self._load_high(device, kid)
        return self._high[device, kid]

    def check(self, topic: str, payload: bytes, received_at: float | None = None) -> Accepted | Rejected:
        now = self.clock() if received_at is None else received_at
        try:
            return self._check(topic, payload, now)
        except Exception as e:  # noqa: BLE001 - one bad message must never take the receiver down
            return Rejected(topic, "internal error", now, len(payload), {"error": f"{type(e).__name__}: {e}"})

    def _check(self, topic: str, payload: bytes, now: float) -> Accepted | Rejected:
        def reject(reason: str, **detail) -> Rejected:
            return Rejected(topic, reason, now, len(payload), detail)

        where = parse_topic(topic)
        if where is None:
            return reject("unexpected topic")
        topic_device, kind = where
        if len(payload) > MAX_MESSAGE:
            return reject("too large")
        asked: list[bytes] = []

        def keys(kid: bytes) -> list[tuple[bytes, bytes]]:
            asked.append(kid)
            if not self.registry.entries(kid):
                # A key registered a moment ago (a deploy, then the board's first message): look again now
                # rather than at the next periodic check. Unknown kids cost one stat() each.
                self.registry.refresh(min_interval_s=0)
            return [(e.key, e.base_iv) for e in self.registry.valid_keys(kid, now)]

        try:
            opened = sealed.open_encrypt0(payload, topic, keys)
        except sealed.SealError as e:
            reason = str(e)
            kid = asked[0] if asked else None
            if kid is not None:
                reason = self._explain(reason, kid, topic, topic_device, payload, now)
            return reject(reason, **({"kid": kid.hex()} if kid is not None else {}))

        kid, counter = opened.kid, opened.counter
        device = self.registry.device_of(kid)
        if device != topic_device:
            return reject("wrong topic", kid=kid.hex(), key_device=device)
        if counter > MAX_COUNTER:
            return reject("counter out of range", kid=kid.hex(), counter=counter)
        hi = self.high(device, kid)
        if hi is not None and counter <= hi - self.window:
            return reject("replay", device=device, kid=kid.hex(), counter=counter, high=hi, window=self.window)

        accepted = Accepted(topic, kind, device, kid, counter, now, size=len(payload))
        try:
            if kind == "vitals":
                accepted.batch = sealed.decode_batch(opened.payload)
                if accepted.batch["device"] != device:
                    return reject("device mismatch", device=device, payload_device=accepted.batch["device"],
                                  counter=counter)
                problem = sanity_problem(accepted.batch, now)
                if problem:
                    return reject("value out of range", device=device, counter=counter, problem=problem)
            else:
                accepted.status = sealed.decode_status(opened.payload)
        except sealed.SealError as e:
            problem = getattr(e, "detail", None)
            return reject(str(e), device=device, kid=kid.hex(), counter=counter, **({"problem": problem} if problem
                                                                                     else {}))
        self._high[device, kid] = counter if hi is None else max(hi, counter)
        return accepted

    def _explain(self, reason: str, kid: bytes, topic: str, topic_device: str, payload: bytes, now: float) -> str:
        """Turns the opener's generic reason into the operator's: why no key, or which topic it was for."""
        entries = self.registry.entries(kid)
        if reason == "unknown kid" and entries:
            if self.registry.is_revoked(entries[0].device):
                return "device revoked"
            states = {e.state(now) for e in entries}
            for state in ("revoked", "expired", "not yet valid"):
                if state in states:
                    return f"key {state}"
        if reason == "authentication failure" and entries:
            device = entries[0].device
            if device != topic_device:
                return "wrong topic"
            for other in (f"{TOPIC_ROOT}/{device}/{k}" for k in KINDS):
                if other != topic and self._opens(payload, other, kid, now):
                    return "wrong topic"
        return reason

    def _opens(self, payload: bytes, topic: str, kid: bytes, now: float) -> bool:
        try:
            sealed.open_encrypt0(payload, topic, lambda k: [(e.key, e.base_iv) for e in
                                                            self.registry.valid_keys(kid, now)])
        except sealed.SealError:
            return False
        return True
