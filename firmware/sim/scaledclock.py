# A clock that runs `speed` times faster than real time, with the interface of clock.Clock. The simulated
# chip fills its FIFO by this clock, so at speed 4 the firmware must drain four times as often as on a real
# board while network waits stay in real time: accelerated runs are a harsher test, not a gentler one.
# advance_us() (from SimTicks) jumps it forward on top of that: a stall, or a long stretch of uptime.
#
# A board owns its CPU; a test host does not. Time this process spent ready to run while the host's scheduler
# ran something else (its run-queue wait, /proc/self/schedstat) is therefore not the device's time and is left
# out (`withheld_us` counts it), so a loaded machine cannot overflow the simulated FIFO. Everything the
# firmware does itself still counts in full: computing, and blocking in a socket, sleep or file call.
import time

from sim.simticks import SimTicks

_SCHEDSTAT = "/proc/self/schedstat"  # "<cpu ns> <run-queue wait ns> <timeslices>"
_LOOK_US = 5000  # read the run-queue wait at most this often (real time): a /proc read costs ~20 us


def _run_queue_wait_ns():
    try:
        with open(_SCHEDSTAT) as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None  # no scheduler statistics on this host: real time counts in full


class ScaledClock(SimTicks):
    def __init__(self, speed=1, start_ms=None):
        # start_ms: where the ticks start (e.g. just before the 2**30 wrap); default: the real ticks_ms.
        super().__init__(time.ticks_ms() if start_ms is None else start_ms)
        self.speed = speed
        self._t0 = time.ticks_us()
        self._waited_ns = _run_queue_wait_ns()
        self._looked = self._t0
        self._owed_us = 0  # run-queue wait seen but not yet taken out of the device's time
        self.withheld_us = 0

    def _update(self):
        # Fold the real time since the last reading in; read often (the device does), the step stays small.
        now = time.ticks_us()
        d = time.ticks_diff(now, self._t0)
        self._t0 = now
        if self._waited_ns is not None and time.ticks_diff(now, self._looked) >= _LOOK_US:
            self._looked = now
            waited = _run_queue_wait_ns()
            if waited is not None:
                self._owed_us += (waited - self._waited_ns) // 1000
                self._waited_ns = waited
        if self._owed_us:  # waits shorter than a look apart were folded in already: take them out of what follows
            w = min(d, self._owed_us)
            self._owed_us -= w
            self.withheld_us += w
            d -= w
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
