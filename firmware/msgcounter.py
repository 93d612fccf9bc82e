# The message counter (COSE Partial IV) that makes every nonce unique, kept on flash with reservation.
#
# Flash holds a limit L: counters below L may have been used. next() only hands out counters below the
# limit it has itself written, so before using the first counter of a block it writes L + reserve to flash.
# After a reset the counter resumes at the stored limit: the unused rest of the last block is skipped,
# never reused. A power cut during the write leaves either the old limit (nothing of the new block was
# used yet) or the new one.
#
# The limit is stored twice, in <path>.a and <path>.b, written alternately, each record checked by a magic
# and the limit's complement; loading takes the highest valid record. A torn write therefore damages at
# most the older copy, on any filesystem, not only on LittleFS (whose file writes are atomic already).
#
# If both files exist and neither is valid, the counter is lost and resuming at 0 would reuse nonces:
# CounterLost is raised and the device needs a new key (docs/format.md, "Key material").

import struct

from micropython import const

_MAGIC = b"OXC1"
_RECORD = ">4sII"
_RECORD_LEN = const(12)
MAX_COUNTER = 0xFFFFFFFF  # the 4-byte record; at one message a second that lasts 136 years
_ENOENT = 2


class CounterLost(OSError):
    pass


class CounterExhausted(OSError):
    pass


def _read_record(path):
    """The stored limit, None for a damaged record; raises OSError(ENOENT) for a missing file."""
    with open(path, "rb") as f:
        raw = f.read(_RECORD_LEN + 1)
    if len(raw) != _RECORD_LEN:
        return None
    magic, limit, check = struct.unpack(_RECORD, raw)
    if magic != _MAGIC or limit ^ check != 0xFFFFFFFF:
        return None
    return limit


class MessageCounter:
    """next() returns a counter never returned before on this flash, across resets and power cuts."""

    def __init__(self, path, reserve=64):
        if reserve < 1:
            raise ValueError("msgcounter reserve must be >= 1, got %r" % reserve)
        self.reserve = reserve
        self._paths = (path + ".a", path + ".b")
        self.reservations = 0  # flash writes made by this instance, for the status report
        limits = []
        exists = []
        for p in self._paths:
            try:
                limits.append(_read_record(p))
                exists.append(True)
            except OSError as e:
                if e.errno != _ENOENT:
                    raise
                limits.append(None)
                exists.append(False)
        a, b = limits
        if a is None and b is None:
            # .b is written second: it exists only after .a once held a valid record.
            if exists[1]:
                raise CounterLost("message counter records %s are damaged: re-provision the key" % path)
            self._next = 0
            self._slot = 1  # the next write goes to .a
        elif b is None or (a is not None and a >= b):
            self._next = a
            self._slot = 0
        else:
            self._next = b
            self._slot = 1
        self._limit = self._next  # nothing reserved by this boot yet
        self.resumed_at = self._next

    @property
    def value(self):
        """The counter next() will return."""
        return self._next

    def _write_limit(self, limit):
        slot = 1 - self._slot
        with open(self._paths[slot], "wb") as f:
            f.write(struct.pack(_RECORD, _MAGIC, limit, limit ^ 0xFFFFFFFF))
        self._slot = slot
        self.reservations += 1

    def next(self):
        c = self._next
        if c >= self._limit:
            if c >= MAX_COUNTER:
                raise CounterExhausted("message counter exhausted: re-provision the key")
            limit = min(c + self.reserve, MAX_COUNTER)
            self._write_limit(limit)  # raises on a failed write: nothing handed out
            self._limit = limit
        self._next = c + 1
        return c
