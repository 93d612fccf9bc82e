# Clock adapter: the one object the firmware asks for time, so tests can swap in sim.vclock.VirtualClock.
#
# Either pass a Clock() or this module itself (`import clock`): both have ticks_ms, ticks_us, ticks_diff,
# ticks_add, sleep_ms, sleep_us. Ticks wrap (on the ESP32 after 2**30 ms / 2**30 us): compare them only with
# ticks_diff, never with `-` or `<`.
import time
from time import sleep_ms, sleep_us, ticks_add, ticks_diff, ticks_ms, ticks_us  # noqa: F401


class Clock:
    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_us(self):
        return time.ticks_us()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def ticks_add(self, t, delta):
        return time.ticks_add(t, delta)

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def sleep_us(self, us):
        time.sleep_us(us)
