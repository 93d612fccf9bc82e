# Plaintext payloads, before sealing: the vitals batch and the status report. docs/format.md has their CDDL;
# keep the two in step.
#
# A batch is one CBOR map: header fields, then one column per measure. hr/spo2/pi columns are delta-coded
# (first valid value absolute, each later valid value minus the previous valid one; null = no valid value)
# so a steady signal costs one byte per value. quality is a column of absolute bitmasks.
#
# BatchBuilder.add() stores integers into preallocated arrays and allocates nothing; encode_into() writes
# into a caller's buffer and allocates nothing either (the header strings are encoded once in __init__).

from array import array
from micropython import const

from cbor import Writer

FORMAT_VERSION = const(1)

# Batch map keys.
_B_VERSION = const(0)
_B_DEVICE = const(1)
_B_START = const(2)
_B_PERIOD_MS = const(3)
_B_FW = const(4)
_B_CFG = const(5)
_B_HR = const(6)
_B_SPO2 = const(7)
_B_PI = const(8)
_B_QUALITY = const(9)

# Status map keys.
_S_VERSION = const(0)
_S_FW = const(1)
_S_BOARD = const(2)
_S_UPTIME_S = const(3)
_S_RESET_CAUSE = const(4)
_S_FREE_HEAP = const(5)
_S_QUEUE_DEPTH = const(6)
_S_DROPPED = const(7)
_S_FIFO_OVERFLOWS = const(8)
_S_RECONNECTS = const(9)
_S_TLS_FAILURES = const(10)
_S_RSSI = const(11)
_S_INSECURE = const(12)
_S_TIME = const(13)
_S_SENSOR_ERRORS = const(14)
_S_WIFI_FAILURES = const(15)
_S_DNS_FAILURES = const(16)

_NONE = const(-1)  # stored for "no valid value"
_MAX_VALUE = const(32767)  # hr_x10, spo2_x10 and pi_x100 are stored as int16
_MAX_QUALITY = const(0xFFFF)
_HEADER_MAX = const(96)  # map head, version, start, period, cfg and the column heads, generously


class BatchFull(Exception):
    pass


_BATCH_FULL = BatchFull("batch is full: encode and clear() it first")


def _check(name, v):
    if v is None:
        return _NONE
    if 0 <= v <= _MAX_VALUE:
        return v
    raise ValueError("%s must be None or 0..%d, got %r" % (name, _MAX_VALUE, v))


def _delta_column(w, col, n):
    w.array(n)
    prev = _NONE
    for i in range(n):
        v = col[i]
        if v == _NONE:
            w.null()
        elif prev == _NONE:
            w.int(v)
            prev = v
        else:
            w.int(v - prev)
            prev = v


class BatchBuilder:
    """Readings for one batch, one per period_ms, contiguous from start_s (unix seconds).

    Main loop: clear(start_s) at the first reading of a batch, add() every second, encode when full.
    A gap in time (a reading that was never produced) is either added as None values or ends the batch.
    """

    def __init__(self, capacity_seconds, device_id, fw, cfg=0, period_ms=1000):
        if capacity_seconds < 1 or capacity_seconds > 3600:
            raise ValueError("batch capacity_seconds must be 1..3600, got %r" % capacity_seconds)
        self.capacity = capacity_seconds
        self.period_ms = period_ms
        self.cfg = cfg
        self._device = device_id.encode()
        self._fw = fw.encode()
        self._hr = array("h", bytes(2 * capacity_seconds))
        self._spo2 = array("h", bytes(2 * capacity_seconds))
        self._pi = array("h", bytes(2 * capacity_seconds))
        self._quality = array("H", bytes(2 * capacity_seconds))
        # Worst case: every value a 3-byte integer, every column head 3 bytes.
        self.max_encoded_size = _HEADER_MAX + len(self._device) + len(self._fw) + 4 * (3 + 3 * capacity_seconds)
        self._writer = Writer(None)
        self.start_s = 0
        self.count = 0

    def clear(self, start_s):
        """Empties the batch; start_s is the unix time of the next reading added."""
        self.start_s = start_s
        self.count = 0

    @property
    def full(self):
        return self.count >= self.capacity

    def add(self, hr_x10, spo2_x10, pi_x100, quality):
        """hr in 0.1 bpm, SpO2 in 0.1 %, PI in 0.01 %, each an int or None; quality a bitmask int."""
        i = self.count
        if i >= self.capacity:
            raise _BATCH_FULL
        if not 0 <= quality <= _MAX_QUALITY:
            raise ValueError("quality must be a bitmask 0..%d, got %r" % (_MAX_QUALITY, quality))
        self._hr[i] = _check("hr_x10", hr_x10)
        self._spo2[i] = _check("spo2_x10", spo2_x10)
        self._pi[i] = _check("pi_x100", pi_x100)
        self._quality[i] = quality
        self.count = i + 1

    def encode_into(self, buf):
        """Writes the batch as CBOR into buf (at least max_encoded_size bytes); returns its length."""
        n = self.count
        w = self._writer
        w.buf = buf
        w.pos = 0
        w.map(10)
        w.int(_B_VERSION)
        w.int(FORMAT_VERSION)
        w.int(_B_DEVICE)
        w.text(self._device)
        w.int(_B_START)
        w.int(self.start_s)
        w.int(_B_PERIOD_MS)
        w.int(self.period_ms)
        w.int(_B_FW)
        w.text(self._fw)
        w.int(_B_CFG)
        w.int(self.cfg)
        w.int(_B_HR)
        _delta_column(w, self._hr, n)
        w.int(_B_SPO2)
        _delta_column(w, self._spo2, n)
        w.int(_B_PI)
        _delta_column(w, self._pi, n)
        w.int(_B_QUALITY)
        w.array(n)
        q = self._quality
        for i in range(n):
            w.int(q[i])
        w.buf = None
        return w.pos

    def encode(self):
        buf = bytearray(self.max_encoded_size)
        return bytes(buf[:self.encode_into(buf)])


class BatchWait:
    """Full batches that wait for the clock (docs/time.md): their columns and start ticks in arrays allocated
    once (8 bytes a reading). put() into a full wait drops the oldest batch and counts it in `dropped`."""

    def __init__(self, slots, capacity_seconds):
        self.slots = slots
        self.capacity = capacity_seconds
        n = slots * capacity_seconds
        self._hr = array("h", bytes(2 * n))
        self._spo2 = array("h", bytes(2 * n))
        self._pi = array("h", bytes(2 * n))
        self._quality = array("H", bytes(2 * n))
        self._ticks = array("i", bytes(4 * slots))  # start stamps (app: Uptime.stamp(), below 2**31)
        self._count = array("H", bytes(2 * slots))
        self._first = 0
        self.len = 0
        self.dropped = 0

    def put(self, batch, start_ms):
        """Keep a copy of `batch` (a BatchBuilder) that began at stamp start_ms; True if one was dropped."""
        dropped = self.len == self.slots
        if dropped:
            self._first = (self._first + 1) % self.slots
            self.len -= 1
            self.dropped += 1
        slot = (self._first + self.len) % self.slots
        base = slot * self.capacity
        for i in range(batch.count):
            self._hr[base + i] = batch._hr[i]
            self._spo2[base + i] = batch._spo2[i]
            self._pi[base + i] = batch._pi[i]
            self._quality[base + i] = batch._quality[i]
        self._ticks[slot] = start_ms
        self._count[slot] = batch.count
        self.len += 1
        return dropped

    def take(self, batch):
        """Load the oldest waiting batch into `batch` (a BatchBuilder); its start stamp, or None when empty."""
        if not self.len:
            return None
        slot = self._first
        base = slot * self.capacity
        n = self._count[slot]
        for i in range(n):
            batch._hr[i] = self._hr[base + i]
            batch._spo2[i] = self._spo2[base + i]
            batch._pi[i] = self._pi[base + i]
            batch._quality[i] = self._quality[base + i]
        batch.count = n
        self._first = (slot + 1) % self.slots
        self.len -= 1
        return self._ticks[slot]


def encode_status(fw, board, uptime_s, reset_cause, free_heap, queue_depth, dropped, fifo_overflows,
                  reconnects, tls_failures, rssi=None, insecure=False, time_s=None, sensor_errors=0,
                  wifi_failures=0, dns_failures=0):
    """The status report payload. rssi (dBm) and time_s (unix s) are left out when None; the insecure
    flag is only present, as true, when the link is not using TLS. Allocates (once per report)."""
    w = Writer(bytearray(128), growable=True)
    w.map(11 + (rssi is not None) + bool(insecure) + (time_s is not None) + (sensor_errors > 0) + (wifi_failures > 0)
          + (dns_failures > 0))
    w.int(_S_VERSION)
    w.int(FORMAT_VERSION)
    w.int(_S_FW)
    w.text(fw)
    w.int(_S_BOARD)
    w.text(board)
    w.int(_S_UPTIME_S)
    w.int(uptime_s)
    w.int(_S_RESET_CAUSE)
    w.text(reset_cause)
    w.int(_S_FREE_HEAP)
    w.int(free_heap)
    w.int(_S_QUEUE_DEPTH)
    w.int(queue_depth)
    w.int(_S_DROPPED)
    w.int(dropped)
    w.int(_S_FIFO_OVERFLOWS)
    w.int(fifo_overflows)
    w.int(_S_RECONNECTS)
    w.int(reconnects)
    w.int(_S_TLS_FAILURES)
    w.int(tls_failures)
    if rssi is not None:
        w.int(_S_RSSI)
        w.int(rssi)
    if insecure:
        w.int(_S_INSECURE)
        w.bool(True)
    if time_s is not None:
        w.int(_S_TIME)
        w.int(time_s)
    if sensor_errors > 0:
        w.int(_S_SENSOR_ERRORS)
        w.int(sensor_errors)
    if wifi_failures > 0:
        w.int(_S_WIFI_FAILURES)
        w.int(wifi_failures)
    if dns_failures > 0:
        w.int(_S_DNS_FAILURES)
        w.int(dns_failures)
    return w.getvalue()
