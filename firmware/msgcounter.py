# The message counter (COSE Partial IV) that makes every nonce unique, kept on flash with reservation and
# bound to the key it counts for.
#
# Flash holds a limit L for a key id: counters below L may have been used under that key. next() only hands
# out counters below the limit it has itself written, so before using the first counter of a block it writes
# L + reserve to flash. After a reset the counter resumes at the stored limit: the unused rest of the last
# block is skipped, never reused. A power cut during the write leaves either the old limit (nothing of the
# new block was used yet) or the new one.
#
# The record (kid, limit) is stored twice, in <path>.a and <path>.b, written alternately, each checked by a
# magic and a CRC-32; loading takes the highest valid record for the current kid. A torn write therefore
# damages at most the older copy, on any filesystem, not only on LittleFS (whose file writes are atomic).
#
# A key is fresh once (docs/format.md, "Key material"). With no record for the current kid (a new deploy,
# an erased flash, counter files lost or damaged), the counter may start at 0 only if the deploy left the
# marker <path>.fresh naming this kid: the board then binds a record (kid, 0) to flash first and deletes the
# marker after, so a second start from 0 under the same key is impossible. Without the marker the key may
# already have been used from 0 (the same secrets copied again, or to a second board): KeyNotFresh, and
# nothing is sealed.
import struct
from binascii import crc32, hexlify

from micropython import const

_MAGIC = b"OXC2"
_RECORD = ">4sB16sI"  # magic, kid length, kid (zero-padded), limit; then the CRC-32 of those 25 bytes
_BODY_LEN = const(25)
_RECORD_LEN = const(29)
MAX_COUNTER = 0xFFFFFFFF  # the 4-byte record; at one message a second that lasts 136 years
_ENOENT = 2


class CounterLost(OSError):
    pass


class KeyNotFresh(CounterLost):
    pass


class CounterExhausted(OSError):
    pass


def record(kid, limit):
    """The bytes of one counter record."""
    body = struct.pack(_RECORD, _MAGIC, len(kid), kid, limit)
    return body + struct.pack(">I", crc32(body) & 0xFFFFFFFF)


def _read_record(path):
    """(kid, limit), or None for a damaged record; raises OSError(ENOENT) for a missing file."""
    with open(path, "rb") as f:
        raw = f.read(_RECORD_LEN + 1)
    if len(raw) != _RECORD_LEN or raw[:4] != _MAGIC:
        return None
    if struct.unpack(">I", raw[_BODY_LEN:])[0] != crc32(raw[:_BODY_LEN]) & 0xFFFFFFFF:
        return None
    _, n, kid, limit = struct.unpack(_RECORD, raw[:_BODY_LEN])
    if not 1 <= n <= 16:
        return None
    return bytes(kid[:n]), limit


def _fresh_for(path, kid):
    """Whether the deploy marker at path names this kid (its hex, as `oxilink deploy` writes it)."""
    try:
        with open(path) as f:
            return f.read().strip() == hexlify(kid).decode()
    except OSError as e:
        if e.errno != _ENOENT:
            raise
    return False


class MessageCounter:
    """next() returns a counter never returned before under this kid, across resets, power cuts, erases and
    redeploys."""

    def __init__(self, path, kid, reserve=64, fresh_path=None):
        if reserve < 1:
            raise ValueError("msgcounter reserve must be >= 1, got %r" % reserve)
        if not 1 <= len(kid) <= 16:
            raise ValueError("msgcounter kid must be 1..16 bytes, got %d" % len(kid))
        self.kid = bytes(kid)
        self.reserve = reserve
        self._paths = (path + ".a", path + ".b")
        self.fresh_path = fresh_path or path + ".fresh"
        self.reservations = 0  # flash writes made by this instance, for the status report
        self._slot = 1  # the slot written last; the next write goes to the other one
        self._next = None
        for slot, p in enumerate(self._paths):
            try:
                rec = _read_record(p)
            except OSError as e:
                if e.errno != _ENOENT:
                    raise
                continue
            if rec is not None and rec[0] == self.kid and (self._next is None or rec[1] > self._next):
                self._next = rec[1]
                self._slot = slot
        fresh = _fresh_for(self.fresh_path, self.kid)
        if self._next is None:
            if not fresh:
                raise KeyNotFresh("message counter: no counter state for key %s on this flash and no deploy "
                                  "marker %s for it: the key may already have been used from counter 0; "
                                  "redeploy (`make deploy` issues a fresh key)"
                                  % (hexlify(self.kid).decode(), self.fresh_path))
            self._next = 0
            self._write_limit(0)  # the key is bound to this flash before the marker goes
        if fresh:
            import os

            os.remove(self.fresh_path)
        self._limit = self._next  # nothing reserved by this boot yet
        self.resumed_at = self._next

    @property
    def value(self):
        """The counter next() will return."""
        return self._next

    def _write_limit(self, limit):
        slot = 1 - self._slot
        with open(self._paths[slot], "wb") as f:
            f.write(record(self.kid, limit))
        self._slot = slot
        self.reservations += 1

    def next(self):
        c = self._next
        if c >= self._limit:
            if c >= MAX_COUNTER:
                raise CounterExhausted("message counter exhausted: redeploy (a fresh key)")
            limit = min(c + self.reserve, MAX_COUNTER)
            self._write_limit(limit)  # raises on a failed write: nothing handed out
            self._limit = limit
        self._next = c + 1
        return c
