# Reconnect delays: exponential, capped, with jitter so a fleet that lost its broker does not reconnect in
# lockstep ("decorrelated" enough for our purpose: uniform in [delay/2, delay]).
import random


class Backoff:
    def __init__(self, base_ms=1000, cap_ms=60000):
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.attempts = 0

    def next_ms(self):
        delay = self.base_ms << min(self.attempts, 16)
        if delay > self.cap_ms:
            delay = self.cap_ms
        self.attempts += 1
        half = delay >> 1
        return half + (random.getrandbits(16) * (delay - half) >> 16)

    def reset(self):
        self.attempts = 0
