"""Breach-detection signal: a burst of verification failures raises an alert (log line + counter + audit).

A few failures are noise (a device with a stale key, a bit flipped in transit). Many in a short window are
someone probing with forged messages or a fleet-wide key problem: either way a person should look.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field

log = logging.getLogger("oxilink.receiver")


@dataclass
class BurstDetector:
    threshold: int = 20  # failures within window_s that make a burst
    window_s: float = 10.0
    alerts: int = 0
    _times: deque = field(default_factory=deque)
    _reasons: deque = field(default_factory=deque)
    _quiet_until: float = 0.0

    def failure(self, now: float, reason: str) -> dict | None:
        """Records one failure; returns the alert (a dict for the audit log) when this one completes a burst.

        At most one alert per window: a sustained attack gives one alert every window_s, not one per message.
        """
        self._times.append(now)
        self._reasons.append(reason)
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()
            self._reasons.popleft()
        if len(self._times) < self.threshold or now < self._quiet_until:
            return None
        self.alerts += 1
        self._quiet_until = now + self.window_s
        top = Counter(self._reasons).most_common(3)
        alert = {"failures": len(self._times), "window_s": self.window_s,
                 "top_reasons": {r: n for r, n in top}, "alert_no": self.alerts}
        log.warning("ALERT verification failure burst: %d failures in %.0f s (%s)", len(self._times),
                    self.window_s, ", ".join(f"{r}: {n}" for r, n in top))
        return alert
