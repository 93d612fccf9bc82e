"""Simulated device identities and their sealed traffic, for tests and the ingest benchmark.

Keys come from os.urandom at run time (never stored in the repository). Messages are sealed with
oxilink.sealed exactly as the device seals them (docs/format.md); the receiver tests also check batches
sealed by the firmware itself on the unix port.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

from .. import sealed
from .registry import DeviceRegistry


@dataclass
class SimDevice:
    device_id: str
    kid: bytes
    key: bytes
    base_iv: bytes
    counter: int = 0

    @classmethod
    def new(cls, device_id: str) -> SimDevice:
        return cls(device_id, device_id.encode()[:16], os.urandom(16), os.urandom(13))

    def topic(self, kind: str = "vitals") -> str:
        return f"oxilink/{self.device_id}/{kind}"

    def register(self, registry: DeviceRegistry) -> None:
        registry.register_device(self.device_id, self.kid, self.key, self.base_iv)

    def batch_payload(self, start: int, n: int = 30, seed: int | None = None) -> bytes:
        rng = random.Random(seed if seed is not None else hash((self.device_id, start)))
        hr, spo2 = rng.randint(600, 900), rng.randint(950, 990)
        readings = []
        for i in range(n):
            hr = min(1800, max(400, hr + rng.randint(-15, 15)))
            spo2 = min(1000, max(900, spo2 + rng.randint(-3, 3)))
            if i % 17 == 16:
                readings.append((None, None, None, 4))  # motion: values withheld
            else:
                readings.append((hr, spo2, rng.randint(50, 800), 0))
        return sealed.encode_batch(self.device_id, start, 1000, "sim-1.0", 0, readings)

    def batch_payload_with(self, start: int, *, at: int = 5, n: int = 30, hr: int | None = None,
                           spo2: int | None = None, pi: int | None = None) -> bytes:
        """A batch whose reading `at` carries the given raw values (hr_x10, spo2_x10, pi_x100)."""
        readings = [(700, 970, 150, 0)] * n
        readings[at] = (700 if hr is None else hr, 970 if spo2 is None else spo2, 150 if pi is None else pi, 0)
        return sealed.encode_batch(self.device_id, start, 1000, "sim-1.0", 0, readings)

    def seal(self, payload: bytes, kind: str = "vitals", counter: int | None = None) -> bytes:
        if counter is None:
            self.counter += 1
            counter = self.counter
        return sealed.seal_encrypt0(self.key, self.base_iv, self.kid, counter, self.topic(kind), payload)

    def sealed_batch(self, start: int, n: int = 30) -> bytes:
        return self.seal(self.batch_payload(start, n))

    def sealed_status(self, **overrides) -> bytes:
        fields = dict(fw="sim-1.0", board="sim", uptime_s=60, reset_cause="power-on", free_heap=90000,
                      queue_depth=0, dropped=0, fifo_overflows=0, reconnects=0, tls_failures=0)
        fields.update(overrides)
        return self.seal(sealed.encode_status(**fields), kind="status")
