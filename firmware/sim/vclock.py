# Virtual clock with the interface of clock.Clock: time passes only when a test (or a sleep) advances it,
# so ten simulated minutes run in seconds. Ticks wrap at 2**30 like the ESP32's, and by default start a few
# seconds before the ms wrap, so code that forgets ticks_diff fails on the host too.
from sim.simticks import SimTicks

_START_MS = 0x3FFFFFFF - 4999  # 5 s before the ms ticks wrap


class VirtualClock(SimTicks):
    def __init__(self, start_ms=_START_MS):
        super().__init__(start_ms)

    def sleep_ms(self, ms):
        self.advance_us(ms * 1000)

    def sleep_us(self, us):
        self.advance_us(us)

    def advance_ms(self, ms):
        self.advance_us(ms * 1000)
