# Hardware adapter for the MicroPython unix port (board platform "unix"): the simulated MAX30102 on a fake
# I2C bus, a watchdog that records what it would have done, and the host's network.
import gc
import sys


class Watchdog:
    """Stands in for machine.WDT: if the main loop stops feeding it for timeout_ms, expired() says so."""

    def __init__(self, timeout_ms, clock):
        self.timeout_ms = timeout_ms
        self._clock = clock
        self._last = clock.ticks_ms()
        self.feeds = 0
        self.longest_gap_ms = 0

    def feed(self):
        now = self._clock.ticks_ms()
        gap = self._clock.ticks_diff(now, self._last)
        if gap > self.longest_gap_ms:
            self.longest_gap_ms = gap
        self._last = now
        self.feeds += 1

    def expired(self):
        return self._clock.ticks_diff(self._clock.ticks_ms(), self._last) > self.timeout_ms


class Network:
    """The host network; a test sets .available = False to simulate Wi-Fi loss, .rssi_dbm to report a signal."""

    def __init__(self, rssi=None):
        self.available = True
        self.rssi_dbm = rssi  # None: this "radio" reports no signal strength

    def up(self):
        return self.available

    def rssi(self):
        return self.rssi_dbm if self.available else None


_UNIQUE_ID = []


def unique_id():
    """Stands in for machine.unique_id() (the ESP32's MAC): random, fixed for this process (one simulated board)."""
    if not _UNIQUE_ID:
        import os

        _UNIQUE_ID.append(os.urandom(6))
    return _UNIQUE_ID[0]


def reset_cause():
    return "power-on"


def free_heap():
    gc.collect()
    return gc.mem_free()


def reset():
    sys.exit(3)
