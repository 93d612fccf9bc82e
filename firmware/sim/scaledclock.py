# A clock that runs `speed` times faster than real time, with the interface of clock.Clock. The simulated
# chip fills its FIFO by this clock, so at speed 4 the firmware must drain four times as often as on a real
# board while network waits stay in real time: accelerated runs are a harsher test, not a gentler one.
# advance_us() (from SimTicks) jumps it forward on top of that: a stall, or a long stretch of uptime.
import time

from sim.simticks import SimTicks


class ScaledClock(SimTicks):
    def __init__(self, speed=1, start_ms=None):
        # start_ms: where the ticks start (e.g. just before the 2**30 wrap); default: the real ticks_ms.
        super().__init__(time.ticks_ms() if start_ms is None else start_ms)
        self.speed = speed
        self._t0 = time.ticks_us()

    def _update(self):
        # Fold the real time since the last reading in; read often (the device does), the step stays small.
        now = time.ticks_us()
        d = time.ticks_diff(now, self._t0)
        self._t0 = now
        if d > 0:
            self.advance_us(d * self.speed)

    def ticks_us(self):
        self._update()
        return self._us

    def ticks_ms(self):
        self._update()
        return self._ms

    def sleep_ms(self, ms):
        time.sleep_us(ms * 1000 // self.speed)

    def sleep_us(self, us):
        time.sleep_us(us // self.speed)

    def elapsed_s(self):
        self._update()
        return self._s
