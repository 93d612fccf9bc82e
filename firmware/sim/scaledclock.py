# A clock that runs `speed` times faster than real time, with the interface of clock.Clock. The simulated
# chip fills its FIFO by this clock, so at speed 4 the firmware must drain four times as often as on a real
# board while network waits stay in real time: accelerated runs are a harsher test, not a gentler one.
import time

_PERIOD = 1 << 30
_MASK = _PERIOD - 1
_HALF = _PERIOD >> 1


class ScaledClock:
    def __init__(self, speed=1):
        self.speed = speed
        self._t0 = time.ticks_us()
        self._base_us = 0

    def _now_us(self):
        return self._base_us + time.ticks_diff(time.ticks_us(), self._t0) * self.speed

    def _rebase(self):
        # Keep the real-time difference small so time.ticks_diff never sees a wrap (unix ticks_us wraps
        # at 2**30 us, about 18 minutes).
        now = time.ticks_us()
        self._base_us += time.ticks_diff(now, self._t0) * self.speed
        self._t0 = now

    def ticks_us(self):
        return self._now_us() & _MASK

    def ticks_ms(self):
        if time.ticks_diff(time.ticks_us(), self._t0) > 60_000_000:
            self._rebase()
        return (self._now_us() // 1000) & _MASK

    def ticks_diff(self, a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    def ticks_add(self, t, delta):
        return (t + delta) & _MASK

    def sleep_ms(self, ms):
        time.sleep_us(ms * 1000 // self.speed)

    def sleep_us(self, us):
        time.sleep_us(us // self.speed)

    def elapsed_s(self):
        return self._now_us() // 1000000
