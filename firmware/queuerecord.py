# On-flash record format of the flash queue: a 16-byte header in front of each payload.
#
#   0  u8   magic 0xA7
#   1  u8   format version (1)
#   2  u16  payload length
#   4  u32  queue sequence number
#   8  u32  CRC-32 of the payload
#   12 u32  CRC-32 of header bytes 0..11
#
# Little-endian. CRC-32 is the zlib/binascii one, computed in viper so that no 32-bit integer object is
# ever created: on the ESP32 (31-bit small ints) binascii.crc32() allocates for half of all values.

import micropython
from micropython import const
from array import array
import struct

HEADER_SIZE = const(16)
MAX_PAYLOAD = const(65535)
MAGIC = const(0xA7)
_VERSION = const(1)
_POLY_HI = const(0xEDB8)
_POLY_LO = const(0x8320)


def _make_table():
    poly = (_POLY_HI << 16) | _POLY_LO
    table = array("I", bytes(1024))
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


@micropython.viper
def _crc_into(table: ptr32, data: ptr8, n: int, out: ptr8):
    # out[0:4] = CRC-32 of data[0:n], little-endian
    ones = (uint(0xFFFF) << 16) | uint(0xFFFF)
    c = ones
    for i in range(n):
        c = uint(table[(c ^ uint(data[i])) & 0xFF]) ^ (c >> 8)
    c = c ^ ones
    out[0] = c & 0xFF
    out[1] = (c >> 8) & 0xFF
    out[2] = (c >> 16) & 0xFF
    out[3] = (c >> 24) & 0xFF


@micropython.viper
def _crc_equal(a: ptr8, b: ptr8, at: int) -> int:
    # a[0:4] == b[at:at + 4]
    if a[0] == b[at] and a[1] == b[at + 1] and a[2] == b[at + 2] and a[3] == b[at + 3]:
        return 1
    return 0


class RecordCodec:
    """Builds and checks record headers in one preallocated 16-byte buffer."""

    def __init__(self):
        self.table = _make_table()
        self.header = bytearray(HEADER_SIZE)
        mv = memoryview(self.header)
        self._body_crc = mv[8:12]
        self._head_crc = mv[12:16]
        self._scratch = bytearray(4)

    def seal(self, seq, payload):
        """Fill self.header for payload with sequence number seq; allocates nothing."""
        hdr = self.header
        struct.pack_into("<BBHI", hdr, 0, MAGIC, _VERSION, len(payload), seq)
        _crc_into(self.table, payload, len(payload), self._body_crc)
        _crc_into(self.table, hdr, 12, self._head_crc)
        return hdr

    def check_header(self, hdr):
        """Payload length if hdr (16 bytes) is an intact header, else -1."""
        if hdr[0] != MAGIC or hdr[1] != _VERSION:
            return -1
        _crc_into(self.table, hdr, 12, self._scratch)
        if not _crc_equal(self._scratch, hdr, 12):
            return -1
        return hdr[2] | (hdr[3] << 8)

    @staticmethod
    def seq_of(hdr):
        return hdr[4] | (hdr[5] << 8) | (hdr[6] << 16) | (hdr[7] << 24)

    def check_payload(self, hdr, payload):
        _crc_into(self.table, payload, len(payload), self._scratch)
        return bool(_crc_equal(self._scratch, hdr, 8))

    def crc_into(self, data, n, out):
        """out[0:4] = CRC-32 of data[0:n], little-endian; allocates nothing."""
        _crc_into(self.table, data, n, out)

    def crc_matches(self, data, n, at):
        """True if data[at:at + 4] holds the CRC-32 of data[0:n]."""
        _crc_into(self.table, data, n, self._scratch)
        return bool(_crc_equal(self._scratch, data, at))

    def crc32(self, data):
        """CRC-32 of data as an int (for tests and non-hot paths)."""
        _crc_into(self.table, data, len(data), self._scratch)
        return struct.unpack("<I", self._scratch)[0]
