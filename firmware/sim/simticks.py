# Tick counters for the simulated clocks, with the ESP32's arithmetic: ms and us ticks wrap at 2**30, and every
# intermediate stays a 31-bit small int, so advancing, reading and comparing them allocates nothing on an
# ESP32 (or the esp32like unix build). Allocation-free tests of code that reads the clock can then still fail.
from micropython import const

_MASK = const(0x3FFFFFFF)  # 2**30 - 1, the largest small int on a 32-bit port
_HALF = const(0x20000000)


def ticks_diff(a, b):
    d = a - b
    if d >= _HALF:
        return d - _MASK - 1
    if d < -_HALF:
        return d + _MASK + 1
    return d


def ticks_add(t, delta):
    """t + delta modulo 2**30, for |delta| < 2**29."""
    if delta >= 0:
        room = _MASK - t
        return delta - room - 1 if delta > room else t + delta
    t += delta
    return t + _MASK + 1 if t < 0 else t


class SimTicks:
    """Wrapping ms/us ticks plus the unwrapped time since start (whole seconds + us), advanced in us."""

    def __init__(self, start_ms):
        self._ms = start_ms & _MASK
        self._us = (start_ms * 1000) & _MASK
        self._sub_ms = 0  # us past the current ms tick
        self._s = 0  # whole seconds since start
        self._sub_s = 0  # us past them

    def advance_us(self, us):
        while us > _HALF:
            self.advance_us(_HALF)
            us -= _HALF
        self._us = ticks_add(self._us, us)
        f = self._sub_ms + us
        self._ms = ticks_add(self._ms, f // 1000)
        self._sub_ms = f % 1000
        f = self._sub_s + us
        self._s += f // 1000000
        self._sub_s = f % 1000000

    def ticks_ms(self):
        return self._ms

    def ticks_us(self):
        return self._us

    def ticks_diff(self, a, b):
        return ticks_diff(a, b)

    def ticks_add(self, t, delta):
        return ticks_add(t, delta)

    def elapsed_s(self):
        return self._s

    @property
    def elapsed_us(self):
        """Time since start in us (grows past a small int: for test bookkeeping, not hot paths)."""
        return self._s * 1000000 + self._sub_s
