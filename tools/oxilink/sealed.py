"""The host side of docs/format.md: open and verify sealed messages with `cryptography`'s AESCCM and
`cbor2` (an implementation independent of the firmware's), decode batch and status payloads, and build
them (seal_encrypt0, encode_batch, encode_status) for tests and load generators.

Every way a message can be wrong raises SealError (a ValueError) with a short reason; the receiver counts
them by reason. Wrong key material handed in by the caller raises a plain ValueError instead.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

ALG_AES_CCM_16_128_128 = 30
KEY_LEN = 16
NONCE_LEN = 13
TAG_LEN = 16
MAX_PARTIAL_IV_LEN = 8
COSE_ENCRYPT0_TAG = 16
FORMAT_VERSION = 1

HDR_ALG = 1
HDR_CRIT = 2
HDR_KID = 4
HDR_PARTIAL_IV = 6
PROTECTED = cbor2.dumps({HDR_ALG: ALG_AES_CCM_16_128_128})  # h'A101181E'

# Payload map keys (docs/format.md).
BATCH_KEYS = {"v": 0, "device": 1, "start": 2, "period_ms": 3, "fw": 4, "cfg": 5, "hr": 6, "spo2": 7,
              "pi": 8, "quality": 9}
STATUS_KEYS = {"v": 0, "fw": 1, "board": 2, "uptime_s": 3, "reset_cause": 4, "free_heap": 5,
               "queue_depth": 6, "dropped": 7, "fifo_overflows": 8, "reconnects": 9, "tls_failures": 10,
               "rssi": 11, "insecure": 12, "time": 13, "sensor_errors": 14,
               "wifi_failures": 15, "dns_failures": 16}
STATUS_REQUIRED = ("fw", "board", "uptime_s", "reset_cause", "free_heap", "queue_depth", "dropped",
                   "fifo_overflows", "reconnects", "tls_failures")
MAX_COLUMN_VALUE = 32767  # hr_x10, spo2_x10, pi_x100 are int16 on the device

KeyLookup = Callable[[bytes], Sequence[tuple[bytes, bytes]]]
Reading = tuple[int | None, int | None, int | None, int]  # hr_x10, spo2_x10, pi_x100, quality


class SealError(ValueError):
    """A message or payload that cannot be accepted; str(e) is a short reason."""


@dataclass(frozen=True)
class Opened:
    kid: bytes
    counter: int  # the Partial IV as an integer
    payload: Any  # the decoded CBOR plaintext
    plaintext: bytes


def nonce(base_iv: bytes, counter: int) -> bytes:
    """RFC 9052 section 3.1: the Partial IV left-padded to the nonce length, XORed with the Base IV."""
    return bytes(a ^ b for a, b in zip(base_iv, counter.to_bytes(NONCE_LEN, "big"), strict=True))


def partial_iv(counter: int) -> bytes:
    """The counter big-endian in its shortest form (one byte for 0)."""
    return counter.to_bytes(max(1, (counter.bit_length() + 7) // 8), "big")


def enc_structure(protected: bytes, external_aad: bytes) -> bytes:
    return cbor2.dumps(["Encrypt0", protected, external_aad])


def _check_key_material(key: bytes, base_iv: bytes) -> None:
    if len(key) != KEY_LEN or len(base_iv) != NONCE_LEN:
        raise ValueError(f"key must be {KEY_LEN} bytes and base_iv {NONCE_LEN}, got {len(key)} and {len(base_iv)}")


def _loads_exact(data: bytes) -> Any:
    fp = io.BytesIO(data)
    try:
        # Strict like the firmware's decoder: definite lengths, no duplicate map keys, nothing after the item.
        obj = cbor2.CBORDecoder(fp, allow_duplicate_keys=False, allow_indefinite=False, max_depth=16).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as e:
        raise SealError("bad CBOR") from e
    if fp.tell() != len(data):
        raise SealError("bad CBOR")
    return obj


def seal_encrypt0(key: bytes, base_iv: bytes, kid: bytes, counter: int, topic: str | bytes,
                  plaintext: bytes) -> bytes:
    """A COSE_Encrypt0 exactly as the device builds it."""
    _check_key_material(key, base_iv)
    if not 0 <= counter < 1 << (8 * MAX_PARTIAL_IV_LEN):
        raise ValueError("counter must fit in 8 bytes")
    aad = topic.encode() if isinstance(topic, str) else topic
    ct = AESCCM(key, tag_length=TAG_LEN).encrypt(nonce(base_iv, counter), plaintext, enc_structure(PROTECTED, aad))
    return cbor2.dumps(cbor2.CBORTag(COSE_ENCRYPT0_TAG,
                                     [PROTECTED, {HDR_KID: kid, HDR_PARTIAL_IV: partial_iv(counter)}, ct]))


def _headers(msg: bytes) -> tuple[bytes, bytes, bytes, int]:
    """Checks the envelope; returns (protected bytes, kid, ciphertext, counter)."""
    obj = _loads_exact(msg)
    if not isinstance(obj, cbor2.CBORTag) or obj.tag != COSE_ENCRYPT0_TAG:
        raise SealError("wrong tag")
    parts = obj.value
    # cbor2 decodes the contents of a tag as tuples and frozen mappings.
    if not isinstance(parts, (list, tuple)) or len(parts) != 3:
        raise SealError("bad structure")
    protected, unprotected, ciphertext = parts
    if not isinstance(protected, bytes) or not isinstance(unprotected, Mapping) or not isinstance(ciphertext, bytes):
        raise SealError("bad structure")
    try:
        prot = _loads_exact(protected) if protected else {}
    except SealError:
        raise SealError("bad protected header") from None
    if not isinstance(prot, Mapping):
        raise SealError("bad protected header")
    if HDR_ALG not in prot:
        raise SealError("missing header alg")
    if prot[HDR_ALG] != ALG_AES_CCM_16_128_128:
        raise SealError("unknown alg")
    if HDR_CRIT in prot:
        raise SealError("unknown critical header")
    if set(unprotected) - {HDR_KID, HDR_PARTIAL_IV}:
        raise SealError("unexpected header")
    kid = unprotected.get(HDR_KID)
    piv = unprotected.get(HDR_PARTIAL_IV)
    if not isinstance(kid, bytes) or not kid:
        raise SealError("missing header kid")
    if not isinstance(piv, bytes) or not 1 <= len(piv) <= MAX_PARTIAL_IV_LEN:
        raise SealError("missing header partial iv")
    if len(piv) > 1 and piv[0] == 0:
        raise SealError("partial iv not in shortest form")
    if len(ciphertext) < TAG_LEN:
        raise SealError("ciphertext shorter than tag")
    return protected, kid, ciphertext, int.from_bytes(piv, "big")


def open_encrypt0(msg: bytes, topic: str | bytes, keys: KeyLookup) -> Opened:
    """Verify and decrypt one message published on `topic`; keys(kid) gives the candidate
    (key, base_iv) pairs for that key id (more than one while a key is being rotated)."""
    protected, kid, ciphertext, counter = _headers(msg)
    candidates = list(keys(kid))
    if not candidates:
        raise SealError("unknown kid")
    aad = enc_structure(protected, topic.encode() if isinstance(topic, str) else topic)
    for key, base_iv in candidates:
        _check_key_material(key, base_iv)
        try:
            plaintext = AESCCM(key, tag_length=TAG_LEN).decrypt(nonce(base_iv, counter), ciphertext, aad)
        except InvalidTag:
            continue
        return Opened(kid=kid, counter=counter, payload=_loads_exact(plaintext), plaintext=plaintext)
    raise SealError("authentication failure")


# Limits of every payload field, as docs/format.md's CDDL writes them (test_format_cddl.py checks that the two
# agree). A value outside them is refused at verification, before anything reaches a database.
UINT32_MAX = 0xFFFFFFFF
PERIOD_MS_RANGE = (1, 3_600_000)  # 1 ms .. 1 h between readings
MAX_READINGS = 3600  # readings per batch (the device's batch capacity is at most 3600)
DELTA_RANGE = (-MAX_COLUMN_VALUE, MAX_COLUMN_VALUE)
QUALITY_RANGE = (0, 0xFFFF)
RSSI_RANGE = (-128, 127)
DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")
SHORT_TEXT = re.compile(r"[ -~]{1,32}")  # printable ASCII: fw, board
RESET_CAUSE = re.compile(r"[a-z-]{1,16}")
STATUS_COUNTERS = ("uptime_s", "free_heap", "queue_depth", "dropped", "fifo_overflows", "reconnects",
                   "tls_failures")


def _bad(what: str, problem: str) -> SealError:
    e = SealError(f"bad {what} structure")
    e.detail = problem  # type: ignore[attr-defined]
    return e


def _show(value: Any) -> str:
    """A value for a problem report: never huge (str() of a 2**20000 refuses, and an audit entry stays short)."""
    if type(value) is int and value.bit_length() > 64:
        return f"a {value.bit_length()}-bit integer"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int(m: Mapping, keys: dict[str, int], name: str, what: str, low: int, high: int) -> int:
    if keys[name] not in m:
        raise _bad(what, f"{name} missing")
    v = m[keys[name]]
    if type(v) is not int:  # bool is an int subclass: refused too
        raise _bad(what, f"{name} = {_show(v)} is not an integer")
    if not low <= v <= high:
        raise _bad(what, f"{name} = {_show(v)} outside {low}..{high}")
    return v


def _text(m: Mapping, keys: dict[str, int], name: str, what: str, pattern: re.Pattern) -> str:
    if keys[name] not in m:
        raise _bad(what, f"{name} missing")
    v = m[keys[name]]
    if type(v) is not str or not pattern.fullmatch(v):
        raise _bad(what, f"{name} = {_show(v)} does not match {pattern.pattern}")
    return v


def _payload_map(payload: Any, keys: dict[str, int], what: str) -> Mapping:
    if isinstance(payload, bytes):
        payload = _loads_exact(payload)
    if not isinstance(payload, Mapping):
        raise _bad(what, f"not a map but {type(payload).__name__}")
    unknown = set(payload) - set(keys.values())
    if unknown:
        raise _bad(what, f"unknown key {_show(sorted(unknown, key=repr)[0])}")
    if payload.get(keys["v"]) != FORMAT_VERSION or type(payload.get(keys["v"])) is not int:
        raise _bad(what, f"v = {_show(payload.get(keys['v']))}, not {FORMAT_VERSION}")
    return payload


def _array(column: Any, name: str) -> Sequence:
    if not isinstance(column, (list, tuple)):
        raise _bad("batch", f"{name} is {_show(column)}, not an array")
    if len(column) > MAX_READINGS:
        raise _bad("batch", f"{name} has {len(column)} items (max {MAX_READINGS})")
    return column


def _undelta(column: Any, name: str) -> list[int | None]:
    out: list[int | None] = []
    prev = None
    for i, item in enumerate(_array(column, name)):
        if item is None:
            out.append(None)
            continue
        if type(item) is not int or not DELTA_RANGE[0] <= item <= DELTA_RANGE[1]:
            raise _bad("batch", f"{name}[{i}] = {_show(item)} outside {DELTA_RANGE[0]}..{DELTA_RANGE[1]} or null")
        value = item if prev is None else prev + item
        if not 0 <= value <= MAX_COLUMN_VALUE:
            raise _bad("batch", f"{name}[{i}] decodes to {value}, outside 0..{MAX_COLUMN_VALUE}")
        out.append(value)
        prev = value
    return out


def _scaled(value: int | None, scale: int) -> float | None:
    return None if value is None else value / scale


def decode_batch(payload: Any) -> dict:
    """{device, start, period_ms, fw, cfg, readings}; readings[i] = {t, hr_bpm, spo2_pct, pi_pct, quality}
    with t = start + i * period_ms / 1000 in unix seconds (an int when that is whole). Every field is checked
    against the CDDL's limits; a problem raises SealError("bad batch structure") with .detail naming it."""
    m = _payload_map(payload, BATCH_KEYS, "batch")
    k = BATCH_KEYS
    device = _text(m, k, "device", "batch", DEVICE_ID)
    start = _int(m, k, "start", "batch", 0, UINT32_MAX)
    period_ms = _int(m, k, "period_ms", "batch", *PERIOD_MS_RANGE)
    fw = _text(m, k, "fw", "batch", SHORT_TEXT)
    cfg = _int(m, k, "cfg", "batch", 0, UINT32_MAX)
    for name in ("hr", "spo2", "pi", "quality"):
        if k[name] not in m:
            raise _bad("batch", f"{name} missing")
    hr = _undelta(m[k["hr"]], "hr")
    spo2 = _undelta(m[k["spo2"]], "spo2")
    pi = _undelta(m[k["pi"]], "pi")
    quality = _array(m[k["quality"]], "quality")
    for i, q in enumerate(quality):
        if type(q) is not int or not QUALITY_RANGE[0] <= q <= QUALITY_RANGE[1]:
            raise _bad("batch", f"quality[{i}] = {_show(q)} outside {QUALITY_RANGE[0]}..{QUALITY_RANGE[1]}")
    if not len(hr) == len(spo2) == len(pi) == len(quality):
        raise _bad("batch", f"columns of different lengths: hr {len(hr)}, spo2 {len(spo2)}, pi {len(pi)}, "
                            f"quality {len(quality)}")
    readings = []
    for i, (h, s, p, q) in enumerate(zip(hr, spo2, pi, quality, strict=True)):
        ms = start * 1000 + i * period_ms
        t: int | float = ms // 1000 if ms % 1000 == 0 else ms / 1000
        readings.append({"t": t, "hr_bpm": _scaled(h, 10), "spo2_pct": _scaled(s, 10), "pi_pct": _scaled(p, 100),
                         "quality": q})
    return {"device": device, "start": start, "period_ms": period_ms, "fw": fw, "cfg": cfg, "readings": readings}


def decode_status(payload: Any) -> dict:
    """The status report with field names from STATUS_KEYS; rssi and time are None when absent, insecure
    is True only when the device said its link is not using TLS; sensor_errors, wifi_failures and dns_failures
    are 0 when absent. Every field is checked against the CDDL's limits, as in decode_batch."""
    m = _payload_map(payload, STATUS_KEYS, "status")
    k = STATUS_KEYS
    out: dict[str, Any] = {"fw": _text(m, k, "fw", "status", SHORT_TEXT),
                           "board": _text(m, k, "board", "status", SHORT_TEXT)}
    out["reset_cause"] = _text(m, k, "reset_cause", "status", RESET_CAUSE)
    for name in STATUS_COUNTERS:
        out[name] = _int(m, k, name, "status", 0, UINT32_MAX)
    out["rssi"] = _int(m, k, "rssi", "status", *RSSI_RANGE) if k["rssi"] in m else None
    out["time"] = _int(m, k, "time", "status", 0, UINT32_MAX) if k["time"] in m else None
    for name in ("sensor_errors", "wifi_failures", "dns_failures"):
        out[name] = _int(m, k, name, "status", 0, UINT32_MAX) if k[name] in m else 0
    if k["insecure"] in m and m[k["insecure"]] is not True:
        raise _bad("status", f"insecure = {_show(m[k['insecure']])}, only true may be sent")
    out["insecure"] = k["insecure"] in m
    order = (*STATUS_REQUIRED, "rssi", "time", "sensor_errors", "wifi_failures", "dns_failures", "insecure")
    return {name: out[name] for name in order}


def _delta(values: Sequence[int | None]) -> list[int | None]:
    out: list[int | None] = []
    prev = None
    for v in values:
        if v is not None and not 0 <= v <= MAX_COLUMN_VALUE:
            raise ValueError(f"column value {v} outside 0..{MAX_COLUMN_VALUE}")
        out.append(None if v is None else v if prev is None else v - prev)
        prev = prev if v is None else v
    return out


def encode_batch(device: str, start: int, period_ms: int, fw: str, cfg: int, readings: Sequence[Reading]) -> bytes:
    """The batch payload, byte for byte what firmware/batch.py's BatchBuilder produces."""
    columns = list(zip(*readings, strict=True)) if readings else [(), (), (), ()]
    hr, spo2, pi, quality = columns
    k = BATCH_KEYS
    return cbor2.dumps({k["v"]: FORMAT_VERSION, k["device"]: device, k["start"]: start, k["period_ms"]: period_ms,
                        k["fw"]: fw, k["cfg"]: cfg, k["hr"]: _delta(hr), k["spo2"]: _delta(spo2),
                        k["pi"]: _delta(pi), k["quality"]: list(quality)})


def encode_status(*, fw: str, board: str, uptime_s: int, reset_cause: str, free_heap: int, queue_depth: int,
                  dropped: int, fifo_overflows: int, reconnects: int, tls_failures: int, rssi: int | None = None,
                  insecure: bool = False, time: int | None = None, sensor_errors: int = 0, wifi_failures: int = 0,
                  dns_failures: int = 0) -> bytes:
    """The status payload, byte for byte what firmware/batch.py's encode_status produces."""
    fields: dict[str, Any] = {"v": FORMAT_VERSION, "fw": fw, "board": board, "uptime_s": uptime_s,
                              "reset_cause": reset_cause, "free_heap": free_heap, "queue_depth": queue_depth,
                              "dropped": dropped, "fifo_overflows": fifo_overflows, "reconnects": reconnects,
                              "tls_failures": tls_failures}
    if rssi is not None:
        fields["rssi"] = rssi
    if insecure:
        fields["insecure"] = True
    if time is not None:
        fields["time"] = time
    if sensor_errors:
        fields["sensor_errors"] = sensor_errors
    if wifi_failures:
        fields["wifi_failures"] = wifi_failures
    if dns_failures:
        fields["dns_failures"] = dns_failures
    return cbor2.dumps({STATUS_KEYS[name]: value for name, value in fields.items()})
