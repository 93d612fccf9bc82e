"""firmware/cbor.py on the unix port: byte-identical to cbor2 for what we emit, RFC 8949 examples, strict
decoding of malformed input, and an allocation-free Writer."""

from __future__ import annotations

import random
import struct

import cbor2
import pytest

# RFC 8949 appendix A: value (as MicroPython source) -> encoding.
RFC8949_INTS = [
    ("0", "00"), ("1", "01"), ("23", "17"), ("24", "1818"), ("100", "1864"), ("1000", "1903e8"),
    ("1000000", "1a000f4240"), ("1000000000000", "1b000000e8d4a51000"),
    ("18446744073709551615", "1bffffffffffffffff"), ("-1", "20"), ("-10", "29"), ("-100", "3863"),
    ("-1000", "3903e7"), ("-18446744073709551616", "3bffffffffffffffff"),
]
RFC8949_OTHERS = [
    ("False", "f4"), ("True", "f5"), ("None", "f6"), ("b''", "40"), ("b'\\x01\\x02\\x03\\x04'", "4401020304"),
    ("''", "60"), ("'a'", "6161"), ("'IETF'", "6449455446"), ("'\\u00fc'", "62c3bc"),
    ("[]", "80"), ("[1, [2, 3], [4, 5]]", "8301820203820405"), ("{}", "a0"), ("{1: 2, 3: 4}", "a201020304"),
    ("{'a': 1, 'b': [2, 3]}", "a26161016162820203"), ("Tag(1, 1363896240)", "c11a514b67b0"),
    ("list(range(1, 26))", "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
]
RFC8949_FLOATS = [
    ("f93c00", 1.0), ("f97bff", 65504.0), ("fa47c35000", 100000.0), ("fb3ff199999999999a", 1.1),
    ("f90001", 5.960464477539063e-08), ("f9c400", -4.0), ("f97c00", float("inf")), ("f93e00", 1.5),
]


def test_rfc8949_examples_encode(mp) -> None:
    cases = RFC8949_INTS + RFC8949_OTHERS
    out = mp.json("from cbor import dumps, Tag\nimport binascii, json\nprint(json.dumps([\n"
                  + "".join(f"    binascii.hexlify(dumps({src})).decode(),\n" for src, _ in cases) + "]))\n")
    assert out == [enc for _, enc in cases]


def test_rfc8949_examples_decode(mp) -> None:
    cases = RFC8949_INTS + RFC8949_OTHERS
    out = mp.json("from cbor import loads, Tag\nimport binascii, json\nprint(json.dumps([\n"
                  + "".join(f"    loads(binascii.unhexlify('{enc}')) == {src},\n" for src, enc in cases) + "]))\n")
    assert out == [True] * len(cases)


def _float32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


def test_floats_decode(mp, mpbuild) -> None:
    out = mp.json("from cbor import loads\nimport binascii, json\nprint(json.dumps([\n"
                  + "".join(f"    repr(loads(binascii.unhexlify('{enc}'))),\n" for enc, _ in RFC8949_FLOATS)
                  + "]))\n")
    want = [v for _, v in RFC8949_FLOATS]
    if mpbuild == "esp32like":  # single-precision floats, as on the ESP32: the value rounded to float32
        assert [_float32(float(s)) for s in out] == [_float32(v) for v in want]
    else:
        assert [float(s) for s in out] == want


def _random_value(rng: random.Random, depth: int = 0):
    kinds = ["int", "neg", "big", "bytes", "text", "none", "bool"] + (["list", "map"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, rng.randint(0, 10**6)])
    if kind == "neg":
        return -rng.choice([1, 24, 25, 256, 257, 65536, 65537, 2**32, rng.randint(1, 10**6)])
    if kind == "big":
        return rng.choice([2**64 - 1, -(2**64), rng.randint(2**32, 2**63)])
    if kind == "bytes":
        return rng.randbytes(rng.choice([0, 1, 23, 24, 255, 256, 300]))
    if kind == "text":
        return "".join(rng.choice("aZ09-/_ ü€😀") for _ in range(rng.choice([0, 1, 23, 30])))
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 5, 24]))]
    keys = {rng.choice([rng.randint(-30, 30), f"k{rng.randint(0, 99)}"]) for _ in range(rng.randint(0, 8))}
    return {k: _random_value(rng, depth + 1) for k in keys}


def _keys_in_deterministic_order(v):
    """The same value with every map's keys in RFC 8949 section 4.2.1 order (bytewise by encoding)."""
    if isinstance(v, list):
        return [_keys_in_deterministic_order(x) for x in v]
    if isinstance(v, dict):
        return {k: _keys_in_deterministic_order(v[k]) for k in sorted(v, key=cbor2.dumps)}
    return v


def test_matches_cbor2_both_ways(mp) -> None:
    """For random nested values: MicroPython's encoding equals cbor2's (maps in deterministic key order),
    and it decodes cbor2's output to the same value."""
    rng = random.Random(8949)
    values = [_random_value(rng) for _ in range(150)]
    encoded = [cbor2.dumps(_keys_in_deterministic_order(v)).hex() for v in values]
    out = mp.json("from cbor import dumps, loads\nimport binascii, json\nVALUES = [\n"
                  + "".join(f"    {v!r},\n" for v in values)
                  + f"]\nENCODED = {encoded!r}\n" + """
mine = [binascii.hexlify(dumps(v)).decode() for v in VALUES]
back = [binascii.hexlify(dumps(loads(binascii.unhexlify(e)))).decode() for e in ENCODED]
same = [loads(binascii.unhexlify(e)) == v for e, v in zip(ENCODED, VALUES)]
print(json.dumps({"mine": mine, "back": back, "same": same}))
""")
    assert out["mine"] == encoded
    assert out["back"] == encoded
    assert all(out["same"])


@pytest.mark.parametrize(
    "hexdata, reason",
    [
        ("", "truncated"),
        ("19 01", "truncated"),
        ("43 0102", "truncated"),
        ("83 01 02", "truncated"),
        ("9a ffffffff", "truncated"),
        ("a1 01", "truncated"),
        ("01 02", "trailing"),
        ("5f 41 00 ff", "indefinite"),
        ("9f ff", "indefinite"),
        ("1c", "indefinite"),
        ("a2 01 02 01 03", "duplicate"),
        ("a1 80 01", "scalar"),
        ("f8 20", "simple"),
        ("81" * 40 + "00", "nesting"),
    ],
)
def test_malformed_input_is_rejected(mp, hexdata: str, reason: str) -> None:
    out = mp.json(f"""
from cbor import loads
from mptest import report
try:
    loads(bytes.fromhex({hexdata.replace(' ', '')!r}))
    report(err=None)
except ValueError as e:
    report(err=str(e))
""")
    assert out["err"] is not None and reason in out["err"]


def test_invalid_utf8_text_is_rejected(mp) -> None:
    out = mp.json("""
from cbor import loads
from mptest import report
try:
    loads(b"\\x62\\xc3\\x28")
    report(ok=False)
except ValueError:
    report(ok=True)
""")
    assert out == {"ok": True}


def test_writer_fills_a_fixed_buffer_without_allocating(mp) -> None:
    out = mp.json("""
import binascii
from cbor import Writer
import micropython
from mptest import report
buf = bytearray(32)
w = Writer(buf)
payload = b"\\x01\\x02\\x03"
def fill():
    w.reset()
    w.map(2)
    w.int(1)
    w.array(3)
    w.int(-500)
    w.null()
    w.bool(True)
    w.int(2)
    w.bytes(payload)
    w.tag(16)
    w.int(100000)
    w.int(1767225600)  # unix seconds: above 2**30, a big int on the ESP32 (93e28bd shifted it: allocated)
    return w.pos
# Not mptest.check_no_alloc: its fn(*args) call allocates on this port. n exists before the lock
# because creating a new global allocates.
n = 0
micropython.heap_lock()
try:
    n = fill()
finally:
    micropython.heap_unlock()
overflow = None
try:
    w.bytes(bytes(40))
except ValueError as e:
    overflow = str(e)
report(hex=binascii.hexlify(buf[:n]).decode(), overflow=overflow)
""")
    want = (cbor2.dumps({1: [-500, None, True], 2: b"\x01\x02\x03"}) + cbor2.dumps(cbor2.CBORTag(16, 100000))
            + cbor2.dumps(1767225600))
    assert out["hex"] == want.hex()
    assert out["overflow"] and "full" in out["overflow"]
