# COSE_Encrypt0 (RFC 9052) with AES-CCM-16-128-128 (COSE alg 30), as specified in docs/format.md.
#
#   16([ h'A101181E' ({1: 30}), {4: kid, 6: partial_iv}, ciphertext || tag ])
#
# nonce = base_iv XOR partial_iv left-padded with zeros to 13 bytes (RFC 9052 section 3.1); partial_iv is
# the message counter, big-endian, shortest form (1..8 bytes). The AAD given to AES-CCM is the
# Enc_structure ["Encrypt0", protected, external_aad], where external_aad is the MQTT topic.
#
# Encrypt0.seal() writes into scratch allocated once for max_payload: per message it allocates the CBC
# cipher object inside AesCcm, a few memoryview slices, and the topic's UTF-8 bytes if it is given as str.

from micropython import const

import cbor
from aesccm import AesCcm, AuthError

ALG_AES_CCM_16_128_128 = const(30)
KEY_LEN = const(16)
NONCE_LEN = const(13)
TAG_LEN = const(16)
MAX_KID_LEN = const(16)
MAX_PARTIAL_IV_LEN = const(8)

_TAG_ENCRYPT0 = const(16)
_HDR_ALG = const(1)
_HDR_CRIT = const(2)
_HDR_KID = const(4)
_HDR_PARTIAL_IV = const(6)
_PROTECTED = b"\xa1\x01\x18\x1e"  # {1: 30}, the protected header bucket, byte for byte
_CONTEXT = b"Encrypt0"
# Tag + array head + protected bstr + map head + kid label and bstr + partial IV label and bstr +
# ciphertext bstr head.
_ENVELOPE_MAX = const(2 + 1 + 5 + 1 + 1 + 2 + MAX_KID_LEN + 1 + 1 + MAX_PARTIAL_IV_LEN + 5)


class SealError(ValueError):
    """A message that cannot be opened; str() is a short reason."""


def check_key_material(key, base_iv, kid):
    if len(key) != KEY_LEN:
        raise ValueError("COSE key must be %d bytes, got %d" % (KEY_LEN, len(key)))
    if len(base_iv) != NONCE_LEN:
        raise ValueError("COSE base_iv must be %d bytes, got %d" % (NONCE_LEN, len(base_iv)))
    if not 1 <= len(kid) <= MAX_KID_LEN:
        raise ValueError("COSE kid must be 1..%d bytes, got %d" % (MAX_KID_LEN, len(kid)))


def partial_iv_len(counter):
    n = 1
    while counter >> (8 * n):
        n += 1
    return n


def _put_be(buf, pos, value, n):
    for i in range(n):
        buf[pos + n - 1 - i] = value & 0xFF
        value >>= 8


def _nonce_into(nonce, base_iv, counter):
    for i in range(NONCE_LEN):
        nonce[i] = base_iv[i]
    p = NONCE_LEN - 1
    while counter:
        nonce[p] ^= counter & 0xFF
        counter >>= 8
        p -= 1


def _enc_structure(w, protected, external_aad):
    w.reset()
    w.array(3)
    w.text(_CONTEXT)
    w.bytes(protected)
    w.bytes(external_aad)
    return w.pos


def _as_bytes(external_aad):
    return external_aad.encode() if isinstance(external_aad, str) else external_aad


class Encrypt0:
    """Seals payloads of up to max_payload bytes with one key; external AAD (the topic) up to max_aad."""

    def __init__(self, key, base_iv, kid, max_payload=1024, max_aad=96):
        check_key_material(key, base_iv, kid)
        self.kid = bytes(kid)
        self.max_payload = max_payload
        self.max_aad = max_aad
        self._base_iv = bytes(base_iv)
        aad_size = 1 + 9 + 5 + 3 + max_aad
        self._ccm = AesCcm(key, TAG_LEN, NONCE_LEN, max_payload, aad_size)
        self._aad = bytearray(aad_size)
        self._aad_mv = memoryview(self._aad)
        self._aad_w = cbor.Writer(self._aad)
        self._msg = bytearray(_ENVELOPE_MAX + max_payload + TAG_LEN)
        self._msg_mv = memoryview(self._msg)
        self._msg_w = cbor.Writer(self._msg)
        self._nonce = bytearray(NONCE_LEN)

    def seal(self, counter, external_aad, plaintext):
        """The COSE_Encrypt0 message as a memoryview into scratch, valid until the next seal()."""
        if counter < 0 or partial_iv_len(counter) > MAX_PARTIAL_IV_LEN:
            raise ValueError("COSE counter must be 0..2**64-1")
        n = len(plaintext)
        if n > self.max_payload:
            raise ValueError("COSE payload is %d bytes, max_payload is %d" % (n, self.max_payload))
        external_aad = _as_bytes(external_aad)
        if len(external_aad) > self.max_aad:
            raise ValueError("COSE external_aad (topic) is %d bytes, max_aad is %d" % (len(external_aad), self.max_aad))
        aad_len = _enc_structure(self._aad_w, _PROTECTED, external_aad)
        w = self._msg_w
        w.reset()
        w.tag(_TAG_ENCRYPT0)
        w.array(3)
        w.bytes(_PROTECTED)
        w.map(2)
        w.int(_HDR_KID)
        w.bytes(self.kid)
        w.int(_HDR_PARTIAL_IV)
        piv_len = partial_iv_len(counter)
        w.head(2, piv_len)
        _put_be(self._msg, w.pos, counter, piv_len)
        w.pos += piv_len
        w.head(2, n + TAG_LEN)
        p = w.pos
        _nonce_into(self._nonce, self._base_iv, counter)
        self._ccm.encrypt_into(self._nonce, plaintext, self._aad_mv[:aad_len], self._msg_mv[p:p + n + TAG_LEN])
        return self._msg_mv[:p + n + TAG_LEN]


class Sealer:
    """Encrypt0 + the device's keys + its persisted message counter: every call uses a fresh counter.

    keys: an object with .key, .base_iv, .kid (devicekeys.DeviceKeys); counter: an object whose next()
    returns a never-used counter (msgcounter.MessageCounter). The counter is spent before sealing, so a
    failure after it only burns a number, never reuses one.
    """

    def __init__(self, keys, counter, max_payload=1024, max_aad=96):
        self._enc = Encrypt0(keys.key, keys.base_iv, keys.kid, max_payload, max_aad)
        self.counter = counter
        self.kid = self._enc.kid
        self.last_counter = -1

    def seal(self, topic, plaintext):
        """Returns a memoryview valid until the next seal(); copy it (or store it) before sealing again."""
        c = self.counter.next()
        self.last_counter = c
        return self._enc.seal(c, topic, plaintext)


def seal(key, base_iv, kid, counter, external_aad, plaintext):
    """One-off sealing (allocates its own scratch); returns bytes."""
    external_aad = _as_bytes(external_aad)
    enc = Encrypt0(key, base_iv, kid, max(len(plaintext), 1), len(external_aad))
    return bytes(enc.seal(counter, external_aad, plaintext))


def open_encrypt0(msg, external_aad, key, base_iv):
    """Opens a COSE_Encrypt0 sealed with alg 30; returns (kid, counter, plaintext). Raises SealError."""
    try:
        obj = cbor.loads(msg)
    except (ValueError, TypeError):
        raise SealError("bad CBOR")
    if not isinstance(obj, cbor.Tag) or obj.tag != _TAG_ENCRYPT0:
        raise SealError("wrong tag")
    parts = obj.value
    if not isinstance(parts, list) or len(parts) != 3:
        raise SealError("bad structure")
    protected, unprotected, ciphertext = parts
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict) or not isinstance(ciphertext, bytes):
        raise SealError("bad structure")
    try:
        prot = cbor.loads(protected) if protected else {}
    except ValueError:
        raise SealError("bad protected header")
    if not isinstance(prot, dict):
        raise SealError("bad protected header")
    if _HDR_ALG not in prot:
        raise SealError("missing header alg")
    if prot[_HDR_ALG] != ALG_AES_CCM_16_128_128:
        raise SealError("unknown alg")
    if _HDR_CRIT in prot:
        raise SealError("unknown critical header")
    for label in unprotected:
        if label not in (_HDR_KID, _HDR_PARTIAL_IV):
            raise SealError("unexpected header")
    kid = unprotected.get(_HDR_KID)
    piv = unprotected.get(_HDR_PARTIAL_IV)
    if not isinstance(kid, bytes) or not kid:
        raise SealError("missing header kid")
    if not isinstance(piv, bytes) or not 1 <= len(piv) <= MAX_PARTIAL_IV_LEN:
        raise SealError("missing header partial iv")
    if len(piv) > 1 and piv[0] == 0:
        raise SealError("partial iv not in shortest form")
    if len(ciphertext) < TAG_LEN:
        raise SealError("ciphertext shorter than tag")
    counter = 0
    for b in piv:
        counter = (counter << 8) | b
    external_aad = _as_bytes(external_aad)
    aad = bytearray(1 + 9 + 3 + len(protected) + 5 + len(external_aad))
    aad_len = _enc_structure(cbor.Writer(aad), protected, _as_bytes(external_aad))
    nonce = bytearray(NONCE_LEN)
    _nonce_into(nonce, base_iv, counter)
    ccm = AesCcm(key, TAG_LEN, NONCE_LEN, max(len(ciphertext) - TAG_LEN, 1), aad_len)
    try:
        plaintext = ccm.decrypt(nonce, ciphertext, memoryview(aad)[:aad_len])
    except AuthError:
        raise SealError("authentication failure")
    return kid, counter, plaintext
