# Time since boot that stays right however long the board runs.
#
# Ticks wrap (ticks_ms every 2**30 ms = 12.4 days on the ESP32) and ticks_diff() is only meaningful within
# half a period, so "ticks_diff(now, started_ms)" turns negative after 6.2 days. Uptime instead folds the
# ticks elapsed since its previous update() into whole seconds, which stay small ints for 34 years. update()
# must run at least once per half period: the main loop runs it every turn. Long-lived schedules (the status
# report) count in these seconds; ticks stamps are kept for short, bounded intervals only.


class Uptime:
    def __init__(self, clock):
        self._clock = clock
        self._last = clock.ticks_ms()
        self._ms = 0  # ms past the whole seconds
        self.s = 0

    def update(self):
        """Seconds since start."""
        now = self._clock.ticks_ms()
        d = self._clock.ticks_diff(now, self._last)
        if d > 0:
            ms = self._ms + d
            self.s += ms // 1000
            self._ms = ms % 1000
            self._last = now
        elif d < 0:
            self._last = now  # not updated for over half a period: that time cannot be told apart, skip it
        return self.s

    def stamp(self):
        """Now, as an int for since_s(): tenths of a second since start (fits a 32-bit array for 6.8 years)."""
        self.update()
        return self.s * 10 + self._ms // 100

    def since_s(self, stamp):
        """Seconds (rounded) from stamp to now, for any length of time."""
        return (self.stamp() - stamp + 5) // 10
