# AES-CCM (RFC 3610, NIST SP 800-38C) built on the two modes stock ESP32 firmware has: cryptolib ECB and CBC.
#
# Two native AES calls per message, whatever its length:
#   CBC-MAC  one CBC encryption (zero IV) over B0 | encoded AAD length | AAD | pad | data | pad; the tag is
#            the first tag_len bytes of the last output block.
#   CTR      one ECB encryption over all counter blocks at once; the data and the tag are XORed with that
#            keystream by a viper loop.
# Counter blocks are laid out A1..Ak then A0, so the data's keystream starts at offset 0 of the output.
#
# Scratch (two bytearrays sized for max_data and max_aad) is allocated once in __init__. Per message the
# only allocations are the CBC cipher object (its IV is chaining state, so it cannot be reused) and two
# memoryview slices handed to cryptolib. Copies and XORs are viper loops with explicit lengths.

import cryptolib
import micropython
from micropython import const

_MODE_ECB = const(1)
_MODE_CBC = const(2)
_ZERO_IV = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"


class AuthError(ValueError):
    """The tag did not match: wrong key, nonce or AAD, or the message was altered."""


@micropython.viper
def _xor(dst: ptr8, doff: int, a: ptr8, aoff: int, b: ptr8, boff: int, n: int):
    for i in range(n):
        dst[doff + i] = a[aoff + i] ^ b[boff + i]


@micropython.viper
def _copy(dst: ptr8, doff: int, src: ptr8, soff: int, n: int):
    for i in range(n):
        dst[doff + i] = src[soff + i]


@micropython.viper
def _differ(a: ptr8, aoff: int, b: ptr8, boff: int, n: int) -> int:
    # Constant time: looks at every byte whatever the first mismatch.
    acc = 0
    for i in range(n):
        acc |= a[aoff + i] ^ b[boff + i]
    return acc


@micropython.viper
def _zero(buf: ptr8, start: int, end: int):
    for i in range(start, end):
        buf[i] = 0


@micropython.viper
def _counter_blocks(buf: ptr8, nonce: ptr8, nonce_len: int, k: int):
    # Blocks 0..k-1 hold A1..Ak, block k holds A0. A_i = flags(L-1) | nonce | i as an L-byte big-endian int.
    for j in range(k + 1):
        base = j * 16
        buf[base] = 14 - nonce_len  # L - 1, with L = 15 - nonce_len
        for i in range(nonce_len):
            buf[base + 1 + i] = nonce[i]
        c = j + 1 if j < k else 0
        p = 15
        while p > nonce_len:
            buf[base + p] = c & 0xFF
            c = c >> 8
            p -= 1


def _round16(n):
    return (n + 15) & ~15


class AesCcm:
    """AES-CCM with a fixed key, tag length and nonce length (COSE alg 30: tag_len=16, nonce_len=13).

    encrypt/decrypt follow the argument order of `cryptography`'s AESCCM: (nonce, data, aad).
    """

    def __init__(self, key, tag_len=16, nonce_len=13, max_data=1024, max_aad=256):
        if len(key) not in (16, 32):
            raise ValueError("AES-CCM key must be 16 or 32 bytes, got %d" % len(key))
        if tag_len < 4 or tag_len > 16 or tag_len & 1:
            raise ValueError("AES-CCM tag_len must be 4, 6, ..., 16, got %d" % tag_len)
        if nonce_len < 7 or nonce_len > 13:
            raise ValueError("AES-CCM nonce_len must be 7..13, got %d" % nonce_len)
        length_bytes = 15 - nonce_len
        if length_bytes < 8 and max_data >= 1 << (8 * length_bytes):
            raise ValueError("AES-CCM max_data %d too long for a %d-byte nonce" % (max_data, nonce_len))
        self.tag_len = tag_len
        self.nonce_len = nonce_len
        self.max_data = max_data
        self.max_aad = max_aad
        self._key = bytes(key)
        self._ecb = cryptolib.aes(self._key, _MODE_ECB)
        # B0 + (AAD length field of up to 10 bytes + AAD, padded) + data padded; also fits the counter blocks.
        size = 16 + (_round16(10 + max_aad) if max_aad else 0) + _round16(max_data)
        self._in = bytearray(size)
        self._out = bytearray(size)
        self._in_mv = memoryview(self._in)
        self._tag = bytearray(16)
        self._expected = bytearray(16)

    def _check(self, nonce, data_len, aad_len):
        if len(nonce) != self.nonce_len:
            raise ValueError("AES-CCM nonce must be %d bytes, got %d" % (self.nonce_len, len(nonce)))
        if data_len > self.max_data:
            raise ValueError("AES-CCM data is %d bytes, max_data is %d" % (data_len, self.max_data))
        if aad_len > self.max_aad:
            raise ValueError("AES-CCM aad is %d bytes, max_aad is %d" % (aad_len, self.max_aad))

    def _cbc_mac(self, nonce, data, data_len, aad):
        # Formats B0 | AAD | data into _in, CBC-encrypts it into _out, leaves the full MAC block in _tag.
        buf = self._in
        aad_len = len(aad)
        flags = (0x40 if aad_len else 0) | ((self.tag_len - 2) >> 1) << 3 | (14 - self.nonce_len)
        buf[0] = flags
        _copy(buf, 1, nonce, 0, self.nonce_len)
        n = data_len
        for p in range(15, self.nonce_len, -1):
            buf[p] = n & 0xFF
            n >>= 8
        pos = 16
        if aad_len:
            if aad_len < 0xFF00:
                buf[16] = aad_len >> 8
                buf[17] = aad_len & 0xFF
                pos = 18
            else:  # 0xFF 0xFE + 32-bit length (AAD of 2**32 bytes or more cannot exist on a microcontroller)
                buf[16] = 0xFF
                buf[17] = 0xFE
                for i in range(4):
                    buf[18 + i] = (aad_len >> (24 - 8 * i)) & 0xFF
                pos = 22
            _copy(buf, pos, aad, 0, aad_len)
            pos += aad_len
            end = _round16(pos)
            _zero(buf, pos, end)
            pos = end
        _copy(buf, pos, data, 0, data_len)
        pos += data_len
        end = _round16(pos)
        _zero(buf, pos, end)
        cryptolib.aes(self._key, _MODE_CBC, _ZERO_IV).encrypt(self._in_mv[:end], self._out)
        _copy(self._tag, 0, self._out, end - 16, 16)

    def _keystream(self, nonce, data_len):
        # Returns k: the data's keystream is _out[0:data_len], S0 (for the tag) is _out[16k:16k+16].
        k = (data_len + 15) >> 4
        _counter_blocks(self._in, nonce, self.nonce_len, k)
        self._ecb.encrypt(self._in_mv[:16 * (k + 1)], self._out)
        return k

    def encrypt_into(self, nonce, data, aad, out):
        """Writes ciphertext || tag into out (len(data) + tag_len bytes) and returns that length.

        out may be data itself (in place), or any buffer of the right size that does not overlap aad.
        """
        data_len = len(data)
        self._check(nonce, data_len, len(aad))
        if len(out) < data_len + self.tag_len:
            raise ValueError("AES-CCM output buffer too small")
        self._cbc_mac(nonce, data, data_len, aad)
        k = self._keystream(nonce, data_len)
        _xor(out, 0, data, 0, self._out, 0, data_len)
        _xor(out, data_len, self._tag, 0, self._out, 16 * k, self.tag_len)
        return data_len + self.tag_len

    def decrypt_into(self, nonce, sealed, aad, out):
        """Writes the plaintext of ciphertext || tag into out and returns its length; raises AuthError.

        On failure out is zeroed: unauthenticated plaintext never leaves this function.
        """
        data_len = len(sealed) - self.tag_len
        if data_len < 0:
            raise AuthError("AES-CCM message shorter than its tag")
        self._check(nonce, data_len, len(aad))
        if len(out) < data_len:
            raise ValueError("AES-CCM output buffer too small")
        k = self._keystream(nonce, data_len)
        _xor(out, 0, sealed, 0, self._out, 0, data_len)
        expected = self._expected
        _xor(expected, 0, sealed, data_len, self._out, 16 * k, self.tag_len)
        self._cbc_mac(nonce, out, data_len, aad)
        if _differ(expected, 0, self._tag, 0, self.tag_len):
            _zero(out, 0, data_len)
            raise AuthError("AES-CCM authentication failed")
        return data_len

    def encrypt(self, nonce, data, aad):
        out = bytearray(len(data) + self.tag_len)
        self.encrypt_into(nonce, data, aad, out)
        return bytes(out)

    def decrypt(self, nonce, sealed, aad):
        out = bytearray(max(len(sealed) - self.tag_len, 0))
        self.decrypt_into(nonce, sealed, aad, out)
        return bytes(out)
