# A small CBOR (RFC 8949) encoder and decoder for what oxilink emits: unsigned and negative integers,
# byte and text strings, arrays, maps, tags, false/true/null. Lengths are always definite and integers
# always take their shortest form and map keys are sorted by their encoded bytes, so the encoding of a
# value is the deterministic one of RFC 8949 section 4.2.1.
#
# Writer appends into a caller-owned bytearray with no allocation per item (text is encoded to UTF-8 on
# the way, which allocates; pass bytes to text() to avoid that). dumps()/loads() allocate freely and
# are meant for status reports, tests and tools.

import struct

from micropython import const

_UINT = const(0)
_NEGINT = const(1)
_BYTES = const(2)
_TEXT = const(3)
_ARRAY = const(4)
_MAP = const(5)
_TAG = const(6)
_SIMPLE = const(7)

_MAX_DEPTH = const(16)


class Tag:
    """A decoded tagged item: Tag(16, [...]) for a COSE_Encrypt0."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


class Writer:
    """Appends CBOR items to buf from position 0. Full buffer: ValueError, or growth when growable=True."""

    def __init__(self, buf, growable=False):
        self.buf = buf
        self.pos = 0
        self.growable = growable

    def reset(self):
        self.pos = 0

    def _room(self, n):
        need = self.pos + n
        if need > len(self.buf):
            if not self.growable:
                raise ValueError("CBOR buffer full (%d bytes)" % len(self.buf))
            bigger = bytearray(max(need, 2 * len(self.buf)))
            bigger[:self.pos] = self.buf[:self.pos]
            self.buf = bigger

    def head(self, major, n):
        # Shortest form of the initial byte + argument.
        if n < 24:
            size = 0
        elif n < 0x100:
            size = 1
        elif n < 0x10000:
            size = 2
        elif n < 0x100000000:
            size = 4
        elif n < 0x10000000000000000:
            size = 8
        else:
            raise ValueError("CBOR integer out of range")
        self._room(1 + size)
        buf = self.buf
        p = self.pos
        if size == 0:
            buf[p] = (major << 5) | n
        elif size == 1:
            buf[p] = (major << 5) | 24
            buf[p + 1] = n
        else:
            # pack_into writes big ints (a unix time is one on a 32-bit port) without arithmetic on them, so
            # nothing is allocated; shifting one would allocate a new big int per byte.
            buf[p] = (major << 5) | (25 if size == 2 else 26 if size == 4 else 27)
            struct.pack_into(">H" if size == 2 else ">I" if size == 4 else ">Q", buf, p + 1, n)
        self.pos = p + 1 + size

    def int(self, n):
        if n >= 0:
            self.head(_UINT, n)
        else:
            self.head(_NEGINT, -1 - n)

    def _raw(self, major, data):
        n = len(data)
        self.head(major, n)
        self._room(n)
        self.buf[self.pos:self.pos + n] = data
        self.pos += n

    def bytes(self, data):
        self._raw(_BYTES, data)

    def text(self, s):
        """s: str, or bytes already UTF-8 encoded (no allocation)."""
        self._raw(_TEXT, s.encode() if isinstance(s, str) else s)

    def array(self, n):
        self.head(_ARRAY, n)

    def map(self, n):
        self.head(_MAP, n)

    def tag(self, n):
        self.head(_TAG, n)

    def null(self):
        self._room(1)
        self.buf[self.pos] = 0xF6
        self.pos += 1

    def bool(self, v):
        self._room(1)
        self.buf[self.pos] = 0xF5 if v else 0xF4
        self.pos += 1

    def value(self, obj, depth=0):
        """Any of None, bool, int, bytes, bytearray, str, list, tuple, dict, Tag."""
        if depth > _MAX_DEPTH:
            raise ValueError("CBOR nesting deeper than %d" % _MAX_DEPTH)
        if obj is None:
            self.null()
        elif obj is True or obj is False:
            self.bool(obj)
        elif isinstance(obj, int):
            self.int(obj)
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            self.bytes(obj)
        elif isinstance(obj, str):
            self.text(obj)
        elif isinstance(obj, (list, tuple)):
            self.array(len(obj))
            for item in obj:
                self.value(item, depth + 1)
        elif isinstance(obj, dict):
            # Keys sorted by their encoding (RFC 8949 section 4.2.1): MicroPython dicts have no order.
            self.map(len(obj))
            for enc, k in sorted((dumps(k), k) for k in obj):
                self._room(len(enc))
                self.buf[self.pos:self.pos + len(enc)] = enc
                self.pos += len(enc)
                self.value(obj[k], depth + 1)
        elif isinstance(obj, Tag):
            self.tag(obj.tag)
            self.value(obj.value, depth + 1)
        else:
            raise TypeError("CBOR cannot encode %s" % type(obj).__name__)

    def getvalue(self):
        return bytes(self.buf[:self.pos])


def dumps(obj):
    w = Writer(bytearray(64), growable=True)
    w.value(obj)
    return w.getvalue()


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, n):
        p = self.pos
        if n > len(self.data) - p:
            raise ValueError("CBOR truncated")
        self.pos = p + n
        return p

    def _argument(self, info):
        if info < 24:
            return info
        if info > 27:
            raise ValueError("CBOR indefinite length or reserved value not supported")
        size = 1 << (info - 24)
        p = self._take(size)
        n = 0
        for i in range(size):
            n = (n << 8) | self.data[p + i]
        return n

    def item(self, depth=0):
        if depth > _MAX_DEPTH:
            raise ValueError("CBOR nesting deeper than %d" % _MAX_DEPTH)
        p = self._take(1)
        ib = self.data[p]
        major = ib >> 5
        info = ib & 0x1F
        if major == _SIMPLE:
            return self._simple(info)
        n = self._argument(info)
        if major == _UINT:
            return n
        if major == _NEGINT:
            return -1 - n
        if major == _BYTES or major == _TEXT:
            p = self._take(n)
            raw = bytes(self.data[p:p + n])
            return raw if major == _BYTES else raw.decode()
        if major == _ARRAY:
            if n > len(self.data) - self.pos:
                raise ValueError("CBOR truncated")
            return [self.item(depth + 1) for _ in range(n)]
        if major == _MAP:
            if 2 * n > len(self.data) - self.pos:
                raise ValueError("CBOR truncated")
            out = {}
            for _ in range(n):
                k = self.item(depth + 1)
                if isinstance(k, (list, dict)):
                    raise ValueError("CBOR map key must be a scalar")
                if k in out:
                    raise ValueError("CBOR duplicate map key")
                out[k] = self.item(depth + 1)
            return out
        return Tag(n, self.item(depth + 1))  # _TAG

    def _simple(self, info):
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22 or info == 23:  # null, undefined
            return None
        if info == 25:
            return _half(self._argument(25))
        if info == 26 or info == 27:
            import struct

            size = 4 if info == 26 else 8
            p = self._take(size)
            return struct.unpack(">f" if size == 4 else ">d", bytes(self.data[p:p + size]))[0]
        raise ValueError("CBOR simple value %d not supported" % info)


def _half(h):
    exp = (h >> 10) & 0x1F
    frac = h & 0x3FF
    if exp == 0:
        v = frac * 2.0 ** -24
    elif exp == 31:
        v = float("inf") if frac == 0 else float("nan")
    else:
        v = (1024 + frac) * 2.0 ** (exp - 25)
    return -v if h & 0x8000 else v


def loads(data):
    """Decodes exactly one item; trailing bytes are an error. Raises ValueError on malformed input."""
    r = _Reader(data)
    obj = r.item()
    if r.pos != len(data):
        raise ValueError("CBOR trailing bytes after item")
    return obj
