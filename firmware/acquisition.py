# Acquisition core: drains the sensor FIFO into red/IR rings, keeps the sample timeline, counts losses.
#
# Sample n (the running `index`) was taken at n / output_rate seconds after start(). Samples the chip lost
# (FIFO overflow, power cycle) still take their place on the timeline: the index jumps over them, their ring
# slots hold the last good value and windows overlapping them are reported as not clean. The index and the
# counters wrap at 2**29 so they stay small ints on the ESP32 (15.5 days at 400 Hz); compare indexes with
# index_diff(). Consumers:
#   - per sample: consumer.push(red, ir) for every sample read, in order; True means "a per-second reading
#     is ready", counted in `readings` and flagged in `reading_ready` (the reader clears it). An optional
#     consumer.gap(n) is told about n lost samples.
#   - per window: next_window() returns the start index of the next complete window of `window` samples
#     (windows start every `hop` samples) or -1; read it as ring[(start + i) & mask] before
#     ring_len - window more samples arrive.
# drain() and wait_and_drain() allocate nothing (host_tests/test_acquisition.py runs them under heap_lock).
from array import array
from micropython import const

_INDEX_MASK = const(0x1FFFFFFF)  # indexes and counters wrap at 2**29
_INDEX_HALF = const(0x10000000)
_OVF_SATURATED = const(31)
_MAX_GAP_MS = const(0x10000000)  # longer gaps than ~3 days are counted as this long (< half a ticks period)
_DC_SHIFT = const(4)  # DC estimate: first-order IIR over ~16 samples


def index_diff(a, b):
    """a - b for wrapped sample indexes (like time.ticks_diff)."""
    return ((a - b + _INDEX_HALF) & _INDEX_MASK) - _INDEX_HALF


class Acquisition:
    def __init__(self, sensor, clock, ring_len=512, window=None, hop=None, pin=None, consumer=None,
                 finger_threshold=30000, ppg_irq=False):
        if ring_len < 32 or ring_len & (ring_len - 1) or ring_len > _INDEX_HALF:
            raise ValueError("acquisition.ring_len: %r must be a power of two, 32..2**28" % (ring_len,))
        window = window or ring_len // 2
        hop = hop or window
        if not 0 < window <= ring_len or not 0 < hop:
            raise ValueError("acquisition.window: %r must be 1..ring_len (%d); hop %r must be > 0"
                             % (window, ring_len, hop))
        self.sensor = sensor
        self._clock = clock
        self.ring_len = ring_len
        self.mask = ring_len - 1
        self.red = array("i", bytearray(4 * ring_len))
        self.ir = array("i", bytearray(4 * ring_len))
        self.window = window
        self.hop = hop
        self.finger_threshold = finger_threshold
        self._pin = pin
        self._ppg_irq = ppg_irq
        self._int_flag = False
        self._on_int = self._irq  # bound once: pin.irq must not allocate per edge
        self.consumer = consumer
        self._consumer_gap = getattr(consumer, "gap", None) if consumer is not None else None
        self.reset()

    def reset(self):
        self.index = 0  # next sample's index = samples on the timeline so far
        self.received = 0  # samples read from the chip
        self.lost = 0  # samples the chip lost (counted by OVF_COUNTER, or from the clock when it saturated)
        self.gaps = 0  # drains that found samples lost
        self.bus_errors = 0
        self.int_misses = 0  # waits where the INT pin stayed high past the almost-full time (drained anyway)
        self.drains = 0
        self.windows_dropped = 0
        self.saturated_samples = 0
        self.saturated = False  # the last drain read a sample at full scale
        self.finger_on = False
        self.dc = 0
        self._dc_acc = -1
        self.readings = 0
        self.reading_ready = False
        self.clean_from = 0  # windows starting here or later contain no lost samples
        self._next_window = 0
        self.drain_ms = self._clock.ticks_ms()
        self._held_ms = 0  # time without a drain folded in by hold(), not yet accounted

    def start(self):
        """Begin timing from now; with an INT pin, arm it (A_FULL, plus PPG_RDY if ppg_irq)."""
        if self._pin is not None:
            self.sensor.enable_interrupts(a_full=True, ppg_rdy=self._ppg_irq)
            self._pin.irq(handler=self._on_int, trigger=self._pin.IRQ_FALLING)
        self.reset()

    def _irq(self, pin):
        self._int_flag = True

    @property
    def poll_ms(self):
        """Polling period without an INT pin: the time the FIFO takes to reach its almost-full level."""
        s = self.sensor
        return max(1, s.almost_full * 1000 // s.output_rate)

    def _samples_in(self, ms):
        if ms > _MAX_GAP_MS:
            ms = _MAX_GAP_MS
        rate = self.sensor.output_rate
        if ms < 0x40000:
            return ms * rate // 1000
        return (ms // 1000) * rate

    def _since_drain(self, now):
        """ms since the last drain (plus what hold() folded in), saturating at _MAX_GAP_MS."""
        d = self._clock.ticks_diff(now, self.drain_ms)
        if d < 0:
            d = _MAX_GAP_MS  # the stamp is over half a ticks period old
        d += self._held_ms
        return d if d < _MAX_GAP_MS else _MAX_GAP_MS

    def hold(self):
        """The chip cannot be drained now (bus fault, recovery): fold the time since the last drain into the
        gap the next drain measures, so an outage of any length (up to _MAX_GAP_MS) is measured, not wrapped.
        Call it at least once per half ticks period during an outage; a failed drain() calls it."""
        now = self._clock.ticks_ms()
        self._held_ms = self._since_drain(now)
        self.drain_ms = now

    def drain(self):
        """Read everything in the FIFO; return the number of samples read. Bus errors raise OSError."""
        s = self.sensor
        try:
            n = s.read_fifo()
        except OSError:
            self.bus_errors += 1
            self.hold()
            raise
        now = self._clock.ticks_ms()
        lost = s.overflow
        if s.restarted or lost >= _OVF_SATURATED:
            # The chip's counter cannot tell: count what the clock says arrived since the last drain.
            lost = max(lost, self._samples_in(self._since_drain(now)) - n)
        self.drain_ms = now
        self._held_ms = 0
        self.drains = (self.drains + 1) & _INDEX_MASK
        if n:
            self._store(n)
        if lost > 0:
            self._skip(lost)
        return n

    def _store(self, n):
        s = self.sensor
        src_red, src_ir = s.red, s.ir
        red, ir, mask = self.red, self.ir, self.mask
        full = s.full_scale
        consumer = self.consumer
        idx = self.index
        acc = self._dc_acc
        saturated = False
        for i in range(n):
            r = src_red[i]
            x = src_ir[i]
            pos = idx & mask
            red[pos] = r
            ir[pos] = x
            idx = (idx + 1) & _INDEX_MASK
            if r >= full or x >= full:
                saturated = True
                self.saturated_samples = (self.saturated_samples + 1) & _INDEX_MASK
            dc_in = x if x else r  # HR mode samples one LED only
            if acc < 0:
                acc = dc_in << _DC_SHIFT
            else:
                acc += dc_in - (acc >> _DC_SHIFT)
            if consumer is not None and consumer.push(r, x):
                self.readings = (self.readings + 1) & _INDEX_MASK
                self.reading_ready = True
        self.index = idx
        self._dc_acc = acc
        self.dc = acc >> _DC_SHIFT
        self.finger_on = self.dc >= self.finger_threshold
        self.saturated = saturated
        self.received = (self.received + n) & _INDEX_MASK

    def _skip(self, lost):
        if lost > _INDEX_HALF:
            lost = _INDEX_HALF  # keeps index + lost a small int; such a gap is days long anyway
        red, ir, mask = self.red, self.ir, self.mask
        idx = self.index
        last = (idx - 1) & mask
        r, x = red[last], ir[last]
        for i in range(min(lost, self.ring_len)):
            pos = (idx + i) & mask
            red[pos] = r
            ir[pos] = x
        self.index = (idx + lost) & _INDEX_MASK
        self.clean_from = self.index
        self.lost = (self.lost + lost) & _INDEX_MASK
        self.gaps += 1
        if self._consumer_gap is not None:
            self._consumer_gap(lost)

    def wait_and_drain(self, timeout_ms):
        """Wait for the INT pin (or, without one, for the polling period), then drain.

        Returns the samples read, 0 on timeout. If the pin stays high well past the time the FIFO takes to
        reach almost-full (a broken INT line), it drains anyway and counts int_misses."""
        clock = self._clock
        t0 = clock.ticks_ms()
        pin = self._pin
        period = self.poll_ms
        if pin is None:
            while True:
                waited = clock.ticks_diff(clock.ticks_ms(), self.drain_ms)
                if waited >= period or waited < 0:  # < 0: the last drain is over half a ticks period ago
                    return self.drain()
                left = timeout_ms - clock.ticks_diff(clock.ticks_ms(), t0)
                if left <= 0:
                    return 0
                clock.sleep_ms(min(period - waited, left))
        s = self.sensor
        overdue = period + (32 - s.almost_full) * 500 // s.output_rate  # half the FIFO's headroom
        while not self._int_flag and pin.value():
            now = clock.ticks_ms()
            since = clock.ticks_diff(now, self.drain_ms)
            if since >= overdue or since < 0:
                self.int_misses += 1
                break
            if clock.ticks_diff(now, t0) >= timeout_ms:
                return 0
            clock.sleep_ms(1)
        self._int_flag = False
        return self.drain()

    def next_window(self):
        """Start index of the next complete window, or -1. Windows the ring already overwrote are skipped
        (counted in windows_dropped)."""
        start = self._next_window
        have = index_diff(self.index, start)
        if have < self.window:
            return -1
        if have > self.ring_len:
            k = (have - self.ring_len + self.hop - 1) // self.hop
            self.windows_dropped += k
            start = (start + k * self.hop) & _INDEX_MASK
            if index_diff(self.index, start) < self.window:
                self._next_window = start
                return -1
        self._next_window = (start + self.hop) & _INDEX_MASK
        return start

    def window_clean(self, start):
        """True if the window starting at `start` holds no lost samples (conservative: only the latest
        gap is remembered)."""
        return index_diff(start, self.clean_from) >= 0
