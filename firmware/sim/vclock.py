# Virtual clock with the interface of clock.Clock: time passes only when a test (or a sleep) advances it,
# so ten simulated minutes run in seconds. Ticks wrap at 2**30 like the ESP32's, and by default start a few
# seconds before the ms wrap, so code that forgets ticks_diff fails on the host too.

_PERIOD = 1 << 30
_MASK = _PERIOD - 1
_HALF = _PERIOD >> 1


class VirtualClock:
    def __init__(self, start_us=(_PERIOD - 5000) * 1000):
        self.now_us = start_us  # unwrapped; the unix port's 63-bit small ints hold it without allocating

    def ticks_ms(self):
        return (self.now_us // 1000) & _MASK

    def ticks_us(self):
        return self.now_us & _MASK

    def ticks_diff(self, a, b):
        return ((a - b + _HALF) & _MASK) - _HALF

    def ticks_add(self, t, delta):
        return (t + delta) & _MASK

    def sleep_ms(self, ms):
        self.now_us += ms * 1000

    def sleep_us(self, us):
        self.now_us += us

    def advance_ms(self, ms):
        self.now_us += ms * 1000

    def advance_us(self, us):
        self.now_us += us
