"""The sealed-payload pipeline, device to receiver: batch/status payloads (firmware/batch.py), COSE_Encrypt0
(firmware/cose.py) on the unix port, secrets.json (firmware/devicekeys.py), and interoperability with the
host side (tools/oxilink/sealed.py: cryptography + cbor2) and with an independent COSE library (pycose)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cbor2
import pytest
from pycose.algorithms import AESCCM16128128
from pycose.headers import KID, Algorithm, PartialIV
from pycose.keys import SymmetricKey
from pycose.keys.keyparam import KpBaseIV
from pycose.messages import Enc0Message

from oxilink import sealed
from oxilink.sealed import SealError

TOPIC = "oxilink/dev-3f9a2c/vitals"


def key_material(seed: int, *, nonzero_iv_head: bool = True) -> tuple[bytes, bytes, bytes]:
    """(key, base_iv, kid) made up for a test. pycose 1.1 builds the nonce through an int and drops leading
    zero bytes, so Base IVs handed to it must not start with 0x00 (our own code has no such limit)."""
    rnd = __import__("random").Random(seed)
    key, base_iv, kid = rnd.randbytes(16), bytearray(rnd.randbytes(13)), rnd.randbytes(8)
    if nonzero_iv_head:
        base_iv[0] |= 0x80
    return key, bytes(base_iv), kid


def keys_for(*pairs: tuple[bytes, bytes, bytes]):
    table: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for key, base_iv, kid in pairs:
        table.setdefault(kid, []).append((key, base_iv))
    return lambda kid: table.get(kid, [])


def mp_seal(mp, key: bytes, base_iv: bytes, kid: bytes, cases: list[tuple[int, str, bytes]]) -> list[bytes]:
    """Seal (counter, topic, plaintext) cases on the unix port with cose.Encrypt0; returns the messages."""
    out = mp.json(f"""
import binascii, json
from cose import Encrypt0
h = binascii.unhexlify
enc = Encrypt0(h({key.hex()!r}), h({base_iv.hex()!r}), h({kid.hex()!r}), max_payload=512)
res = []
for counter, topic, pt in {[(c, t, p.hex()) for c, t, p in cases]!r}:
    res.append(binascii.hexlify(enc.seal(counter, topic, h(pt))).decode())
print(json.dumps(res))
""")
    return [bytes.fromhex(m) for m in out]


def mp_open(mp, key: bytes, base_iv: bytes, cases: list[tuple[bytes, str]]) -> list:
    """Open (message, topic) cases on the unix port; each result is [kid hex, counter, plaintext hex] or
    the SealError reason. Cases go in through a file and results come out one line each: holding hundreds
    of them in the script would fragment MicroPython's non-moving heap."""
    (mp.tmp / "open_cases.txt").write_text("".join(f"{m.hex()} {t}\n" for m, t in cases))
    out = mp(f"""
import binascii, json
from cose import open_encrypt0, SealError
h = binascii.unhexlify
with open("open_cases.txt") as f:
    for line in f:
        msg, topic = (line.rstrip("\\n").split(" ", 1) + [""])[:2]
        try:
            kid, counter, pt = open_encrypt0(h(msg), topic, h({key.hex()!r}), h({base_iv.hex()!r}))
            print(json.dumps([binascii.hexlify(kid).decode(), counter, binascii.hexlify(pt).decode()]))
        except SealError as e:
            print(json.dumps(str(e)))
""")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def pycose_key(key: bytes, base_iv: bytes) -> SymmetricKey:
    return SymmetricKey(k=key, optional_params={KpBaseIV: base_iv})


def pycose_decode(msg: bytes) -> Enc0Message:
    """CoseMessage.decode(msg), less its first step. pycose 1.1.0's decode() insists on a list inside the
    tag, but cbor2 6 returns a tuple (and a frozendict) there, so it rejects every message; the outer
    CBOR is decoded here and everything else (headers, nonce, AES-CCM) is left to pycose."""
    obj = cbor2.loads(msg)
    assert isinstance(obj, cbor2.CBORTag) and obj.tag == Enc0Message.cbor_tag
    protected, unprotected, ciphertext = obj.value
    return Enc0Message.from_cose_obj([protected, dict(unprotected), ciphertext], True)


# --- COSE_Encrypt0 ------------------------------------------------------------------------------------


COUNTERS = [0, 1, 255, 256, 65535, 2**24, 2**31 - 1, 2**32 + 5, 2**64 - 1]


def test_device_messages_equal_host_messages_byte_for_byte(mp) -> None:
    key, base_iv, kid = key_material(1, nonzero_iv_head=False)
    cases = [(c, TOPIC, os.urandom(n)) for c, n in zip(COUNTERS, [0, 1, 15, 16, 17, 100, 300, 7, 64], strict=True)]
    device = mp_seal(mp, key, base_iv, kid, cases)
    for (counter, topic, pt), msg in zip(cases, device, strict=True):
        assert msg == sealed.seal_encrypt0(key, base_iv, kid, counter, topic, pt)


def test_device_messages_open_with_cryptography_and_pycose(mp) -> None:
    key, base_iv, kid = key_material(2)
    pts = [cbor2.dumps({"n": i, "data": os.urandom(i * 7)}) for i in range(len(COUNTERS))]
    device = mp_seal(mp, key, base_iv, kid, [(c, TOPIC, p) for c, p in zip(COUNTERS, pts, strict=True)])
    for counter, pt, msg in zip(COUNTERS, pts, device, strict=True):
        opened = sealed.open_encrypt0(msg, TOPIC, keys_for((key, base_iv, kid)))
        assert (opened.kid, opened.counter, opened.plaintext) == (kid, counter, pt)
        assert opened.payload == cbor2.loads(pt)

        cose = pycose_decode(msg)
        assert cose.get_attr(KID) == kid
        assert int.from_bytes(cose.get_attr(PartialIV), "big") == counter
        cose.key = pycose_key(key, base_iv)
        cose.external_aad = TOPIC.encode()
        assert cose.decrypt() == pt


def test_host_and_pycose_messages_open_on_the_device(mp) -> None:
    key, base_iv, kid = key_material(3)
    cases = []
    for i, counter in enumerate(COUNTERS):
        pt = os.urandom(i * 11)
        ours = sealed.seal_encrypt0(key, base_iv, kid, counter, TOPIC, pt)
        theirs = Enc0Message(phdr={Algorithm: AESCCM16128128}, uhdr={KID: kid, PartialIV: sealed.partial_iv(counter)},
                             payload=pt, external_aad=TOPIC.encode(), key=pycose_key(key, base_iv)).encode()
        cases += [(ours, pt, counter), (theirs, pt, counter)]
    results = mp_open(mp, key, base_iv, [(m, TOPIC) for m, _, _ in cases])
    assert results == [[kid.hex(), c, pt.hex()] for _, pt, c in cases]


def test_base_iv_with_leading_zero_byte(mp) -> None:
    """Nonce = Base IV XOR padded Partial IV keeps all 13 bytes, even when the first is zero."""
    key, base_iv, kid = key_material(4, nonzero_iv_head=False)
    base_iv = b"\x00\x00" + base_iv[2:]
    payload = cbor2.dumps("payload")
    msg = mp_seal(mp, key, base_iv, kid, [(7, TOPIC, payload)])[0]
    assert msg == sealed.seal_encrypt0(key, base_iv, kid, 7, TOPIC, payload)
    assert sealed.nonce(base_iv, 7)[:2] == b"\x00\x00"
    assert sealed.open_encrypt0(msg, TOPIC, keys_for((key, base_iv, kid))).payload == "payload"


def test_every_single_bit_flip_fails_to_open(mp) -> None:
    key, base_iv, kid = key_material(5)
    payload = sealed.encode_batch("dev-3f9a2c", 1767225600, 1000, "0.1.0", 3, [(720, 975, 250, 0)] * 5)
    msg = mp_seal(mp, key, base_iv, kid, [(4242, TOPIC, payload)])[0]
    keys = keys_for((key, base_iv, kid))
    assert sealed.open_encrypt0(msg, TOPIC, keys).payload == cbor2.loads(payload)
    reasons: dict[str, int] = {}
    flipped = []
    for bit in range(len(msg) * 8):
        bad = bytearray(msg)
        bad[bit // 8] ^= 1 << (bit % 8)
        flipped.append(bytes(bad))
        with pytest.raises(SealError) as err:
            sealed.open_encrypt0(bytes(bad), TOPIC, keys)
        reasons[str(err.value)] = reasons.get(str(err.value), 0) + 1
    assert reasons["authentication failure"] > len(payload) * 8  # ciphertext and tag bits at least
    assert "wrong tag" in reasons and "unknown kid" in reasons
    # The firmware's own opener, given the key directly, rejects every flip outside the kid (the kid only
    # selects the key, and the receiver's lookup is what rejects a changed one).
    device = mp_open(mp, key, base_iv, [(m, TOPIC) for m in flipped])
    kid_at = msg.index(kid)
    accepted = [bit for bit, r in enumerate(device) if not isinstance(r, str)]
    assert accepted == list(range(kid_at * 8, (kid_at + len(kid)) * 8))


def test_changed_topic_or_key_fails(mp) -> None:
    key, base_iv, kid = key_material(6)
    msg = mp_seal(mp, key, base_iv, kid, [(9, TOPIC, b"\xa0")])[0]
    keys = keys_for((key, base_iv, kid))
    for topic in ("oxilink/dev-000000/vitals", "oxilink/dev-3f9a2c/status", TOPIC + " ", ""):
        with pytest.raises(SealError, match="authentication failure"):
            sealed.open_encrypt0(msg, topic, keys)
    other_key, other_iv, _ = key_material(7)
    with pytest.raises(SealError, match="authentication failure"):
        sealed.open_encrypt0(msg, TOPIC, keys_for((other_key, base_iv, kid)))
    with pytest.raises(SealError, match="authentication failure"):
        sealed.open_encrypt0(msg, TOPIC, keys_for((key, other_iv, kid)))
    with pytest.raises(SealError, match="unknown kid"):
        sealed.open_encrypt0(msg, TOPIC, keys_for((key, base_iv, b"other")))
    assert mp_open(mp, key, base_iv, [(msg, "oxilink/dev-000000/vitals")]) == ["authentication failure"]


def test_key_rotation_tries_every_candidate() -> None:
    old, new = key_material(8), key_material(9)
    kid = old[2]
    keys = keys_for((old[0], old[1], kid), (new[0], new[1], kid))
    for key, base_iv, _ in (old, new):
        msg = sealed.seal_encrypt0(key, base_iv, kid, 1, TOPIC, b"\x01")
        assert sealed.open_encrypt0(msg, TOPIC, keys).payload == 1


def _envelope(protected: bytes = sealed.PROTECTED, unprotected: dict | None = None, ciphertext: bytes = bytes(17),
              tag: int = 16) -> bytes:
    if unprotected is None:
        unprotected = {4: b"k", 6: b"\x01"}
    return cbor2.dumps(cbor2.CBORTag(tag, [protected, unprotected, ciphertext]))


@pytest.mark.parametrize(
    "msg, reason",
    [
        (b"\xd0\x83", "bad CBOR"),
        (b"", "bad CBOR"),
        (_envelope() + b"\x00", "bad CBOR"),
        (_envelope(tag=17), "wrong tag"),
        (cbor2.dumps([sealed.PROTECTED, {}, b""]), "wrong tag"),
        (cbor2.dumps(cbor2.CBORTag(16, [sealed.PROTECTED, {}])), "bad structure"),
        (_envelope(protected=b""), "missing header alg"),
        (_envelope(protected=cbor2.dumps({1: 10})), "unknown alg"),
        (_envelope(protected=cbor2.dumps({1: 30, 2: [99]})), "unknown critical header"),
        (_envelope(protected=b"\xa1\x01"), "bad protected header"),
        (_envelope(unprotected={6: b"\x01"}), "missing header kid"),
        (_envelope(unprotected={4: b"k"}), "missing header partial iv"),
        (_envelope(unprotected={4: b"k", 6: bytes(9)}), "missing header partial iv"),
        (_envelope(unprotected={4: b"k", 6: b"\x00\x01"}), "shortest form"),
        (_envelope(unprotected={4: b"k", 6: b"\x01", 5: bytes(13)}), "unexpected header"),
        (_envelope(ciphertext=bytes(15)), "shorter than tag"),
        (_envelope(), "unknown kid"),
    ],
)
def test_failure_reasons(mp, msg: bytes, reason: str) -> None:
    with pytest.raises(SealError, match=reason):
        sealed.open_encrypt0(msg, TOPIC, keys_for())
    device = mp_open(mp, bytes(16), bytes(13), [(msg, TOPIC)])[0]
    assert isinstance(device, str)
    if reason != "unknown kid":  # the device opener is given its key directly
        assert reason in device


def test_sealer_spends_a_fresh_counter_per_message(mp) -> None:
    """Sealer = Encrypt0 + devicekeys + msgcounter on LittleFS: counters continue across a reboot."""
    key, base_iv, kid = key_material(10)
    secrets = {"device_id": "dev-3f9a2c", "kid": kid.hex(), "key": key.hex(), "base_iv": base_iv.hex()}
    out = mp.json(f"""
import binascii, json, vfs
from sim.ramblock import RamBlockDev
from cose import Sealer
from devicekeys import from_dict
from msgcounter import MessageCounter
keys = from_dict({secrets!r})
dev = RamBlockDev(block_size=256, block_count=32)
vfs.VfsLfs2.mkfs(dev)
msgs = []
for boot in range(2):
    vfs.mount(vfs.VfsLfs2(dev), "/c")
    if boot == 0:  # deployed with a fresh key: the marker lets its counter start at 0, once
        with open("/c/ctr.fresh", "w") as f:
            f.write(binascii.hexlify(keys.kid).decode())
    s = Sealer(keys, MessageCounter("/c/ctr", keys.kid, reserve=4), max_payload=64)
    for i in range(3):
        msgs.append(binascii.hexlify(s.seal(keys.topic("vitals"), bytes([i]))).decode())
    vfs.umount("/c")
    dev = dev.survivor()
print(json.dumps(msgs))
""")
    keys = keys_for((key, base_iv, kid))
    opened = [sealed.open_encrypt0(bytes.fromhex(m), TOPIC, keys) for m in out]
    assert [o.counter for o in opened] == [0, 1, 2, 4, 5, 6]
    assert [o.payload for o in opened] == [0, 1, 2, 0, 1, 2]


def test_sealing_reuses_its_scratch(mp) -> None:
    """Encrypt0.seal allocates a bounded, small amount per message, independent of the payload size."""
    out = mp.json("""
import gc
from cose import Encrypt0
from mptest import report
enc = Encrypt0(bytes(16), bytes(13), b"kid", max_payload=1024)
topic = b"oxilink/dev-3f9a2c/vitals"
sizes = []
for n in (10, 1000):
    pt = bytes(n)
    enc.seal(0, topic, pt)
    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    for c in range(10):
        enc.seal(c, topic, pt)
    sizes.append((gc.mem_alloc() - before) // 10)
    gc.enable()
report(per_seal=sizes)
""")
    small, large = out["per_seal"]
    assert large <= small + 64
    assert large < 1024


def test_batch_pipeline_fits_an_esp32_heap(mp) -> None:
    """Builder, counter on LittleFS and Sealer for 1-minute batches, 50 times over, in a 100 KB heap."""
    key, base_iv, kid = key_material(12)
    secrets = {"device_id": "dev-3f9a2c", "kid": kid.hex(), "key": key.hex(), "base_iv": base_iv.hex()}
    out = mp(f"""
import binascii, gc, vfs
from sim.ramblock import RamBlockDev
from batch import BatchBuilder
from cose import Sealer
from devicekeys import from_dict
from msgcounter import MessageCounter
keys = from_dict({secrets!r})
dev = RamBlockDev(block_size=512, block_count=16)
vfs.VfsLfs2.mkfs(dev)
vfs.mount(vfs.VfsLfs2(dev), "/c")
b = BatchBuilder(60, keys.device_id, "0.1.0")
buf = bytearray(b.max_encoded_size)
with open("/c/ctr.fresh", "w") as f:
    f.write(binascii.hexlify(keys.kid).decode())
s = Sealer(keys, MessageCounter("/c/ctr", keys.kid), max_payload=len(buf))
topic = keys.topic("vitals")
for batch in range(50):
    b.clear(1767225600 + 60 * batch)
    for i in range(60):
        b.add(700 + (i * 7) % 40, 970 + i % 5, 250 + i % 9, 0 if i % 50 else 4)
    msg = s.seal(topic, memoryview(buf)[:b.encode_into(buf)])
msg = bytes(msg)
gc.collect()
print(binascii.hexlify(msg).decode())
""", heapsize="100K")
    opened = sealed.open_encrypt0(bytes.fromhex(out.strip().splitlines()[-1]), TOPIC, keys_for((key, base_iv, kid)))
    assert opened.counter == 49
    readings = sealed.decode_batch(opened.payload)["readings"]
    assert len(readings) == 60 and readings[0]["t"] == 1767225600 + 60 * 49


def test_bench_seal_reports_the_batch_it_really_sealed(tmp_path: Path, mpbuild) -> None:
    """The figures come from the message the firmware sealed: it opens under the key, holds the bench's
    readings, and its size against JSON lines of the same readings (built here) meets the format's target."""
    from oxilink import bench_seal

    key, base_iv, kid = key_material(5)
    report = bench_seal.run(3, keys=(key, base_iv, kid))
    message = bytes.fromhex(report["message_hex"])
    opened = sealed.open_encrypt0(message, TOPIC, keys_for((key, base_iv, kid)))
    rows = bench_seal.readings()
    batch = sealed.decode_batch(opened.payload)
    assert batch["device"] == "dev-3f9a2c" and batch["start"] == bench_seal.START
    assert [(r["hr_bpm"], r["spo2_pct"], r["pi_pct"], r["quality"]) for r in batch["readings"]] == [
        (None if h is None else h / 10, None if s is None else s / 10, None if p is None else p / 100, q)
        for h, s, p, q in rows]
    lines = "".join(json.dumps({"t": bench_seal.START + i, "hr": None if h is None else h / 10,
                                "spo2": None if s is None else s / 10, "pi": None if p is None else p / 100, "q": q},
                               separators=(",", ":")) + "\n" for i, (h, s, p, q) in enumerate(rows))
    assert report["sealed_bytes"] == len(message) and report["json_bytes"] == len(lines)
    assert report["size_ratio"] == round(len(message) / len(lines), 4) <= 0.25
    assert report["payload_bytes"] == len(opened.plaintext)
    assert report["seal_us_per_batch"] > 0 and report["iterations"] == 3

    out = tmp_path / "seal.json"  # and the command writes its report where it says
    assert bench_seal.main(["--iterations", "3", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["readings"] == 30 and written["sealed_bytes"] == len(bytes.fromhex(written["message_hex"]))


# --- payloads ------------------------------------------------------------------------------------------

READINGS = [(720, 975, 250, 0), (731, 976, 248, 0), (None, None, None, 1), (745, None, 260, 4), (702, 981, 255, 0),
            (0, 0, 0, 32 | 8), (32767, 1000, 32767, 127), (None, 990, None, 2)]


def test_batch_encodes_like_the_host_and_decodes_to_units(mp) -> None:
    out = mp.json(f"""
import binascii
from batch import BatchBuilder
from mptest import report
b = BatchBuilder(30, "dev-3f9a2c", "0.4.1", cfg=7)
b.clear(1767225600)
for r in {READINGS!r}:
    b.add(*r)
report(hex=binascii.hexlify(b.encode()).decode(), count=b.count, full=b.full, max=b.max_encoded_size)
""")
    payload = bytes.fromhex(out["hex"])
    assert payload == sealed.encode_batch("dev-3f9a2c", 1767225600, 1000, "0.4.1", 7, READINGS)
    assert (out["count"], out["full"]) == (len(READINGS), False)
    decoded = sealed.decode_batch(cbor2.loads(payload))
    assert {k: decoded[k] for k in ("device", "start", "period_ms", "fw", "cfg")} == {
        "device": "dev-3f9a2c", "start": 1767225600, "period_ms": 1000, "fw": "0.4.1", "cfg": 7}
    assert decoded["readings"] == [
        {"t": 1767225600 + i, "hr_bpm": None if h is None else h / 10, "spo2_pct": None if s is None else s / 10,
         "pi_pct": None if p is None else p / 100, "quality": q}
        for i, (h, s, p, q) in enumerate(READINGS)]
    assert sealed.decode_batch(payload) == decoded  # bytes are accepted too


def test_batch_fills_without_allocating_and_rejects_bad_readings(mp) -> None:
    out = mp.json("""
import micropython
from batch import BatchBuilder, BatchFull
from mptest import report
b = BatchBuilder(4, "dev-1", "0.1.0")
buf = bytearray(b.max_encoded_size)
b.clear(1767225600)
n = 0
def fill():
    b.add(720, 975, 250, 0)
    b.add(None, 976, None, 4)
    b.add(731, None, 251, 0)
    b.add(None, None, None, 1)
    return b.encode_into(buf)
# Not mptest.check_no_alloc: its fn(*args) call allocates on this port.
micropython.heap_lock()
try:
    n = fill()
finally:
    micropython.heap_unlock()
full = None
try:
    b.add(1, 1, 1, 0)
except BatchFull:
    full = True
errors = []
b.clear(0)
for r in ((-1, 0, 0, 0), (0, 40000, 0, 0), (0, 0, 0, -1), (0, 0, 0, 70000)):
    try:
        b.add(*r)
        errors.append(None)
    except ValueError as e:
        errors.append(str(e))
report(n=n, full=full, errors=errors, count=b.count)
""")
    assert out["n"] > 0 and out["full"]
    assert [e.split(" ")[0] for e in out["errors"]] == ["hr_x10", "spo2_x10", "quality", "quality"]
    assert out["count"] == 0


def test_batch_size_meets_the_json_target() -> None:
    """A steady 30 s batch, sealed, is well under a quarter of the same readings as JSON lines."""
    readings = [(720 + (i % 5) - 2, 975 + (i % 3), 250 - (i % 4), 0) for i in range(30)]
    key, base_iv, kid = key_material(11)
    msg = sealed.seal_encrypt0(key, base_iv, kid, 123456,
                               TOPIC, sealed.encode_batch("dev-3f9a2c", 1767225600, 1000, "0.1.0", 1, readings))
    lines = "".join(json.dumps({"t": 1767225600 + i, "hr": h / 10, "spo2": s / 10, "pi": p / 100, "q": q},
                               separators=(",", ":")) + "\n" for i, (h, s, p, q) in enumerate(readings))
    assert len(msg) <= 0.25 * len(lines)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.pop(1),
        lambda m: m.update({0: 2}),
        lambda m: m.update({99: 1}),
        lambda m: m.update({6: [720, 1]}),
        lambda m: m.update({6: [720, -721, None, None, None, None, None, None]}),
        lambda m: m.update({9: [0, 0, 0, -1, 0, 0, 0, 0]}),
        lambda m: m.update({2: "yesterday"}),
        lambda m: m.update({3: 0}),
        lambda m: m.update({6: [True] * 8}),
    ],
)
def test_bad_batch_structure(mutate) -> None:
    m = cbor2.loads(sealed.encode_batch("dev-3f9a2c", 1767225600, 1000, "0.1.0", 1, READINGS))
    mutate(m)
    with pytest.raises(SealError, match="bad batch structure"):
        sealed.decode_batch(m)


def test_batch_period_gives_fractional_times() -> None:
    decoded = sealed.decode_batch(sealed.encode_batch("d", 100, 250, "f", 0, [(1, 1, 1, 0)] * 5))
    assert [r["t"] for r in decoded["readings"]] == [100, 100.25, 100.5, 100.75, 101]


STATUS = dict(fw="0.4.1", board="devkitc", uptime_s=86400, reset_cause="watchdog", free_heap=41234, queue_depth=12,
              dropped=3, fifo_overflows=1, reconnects=5, tls_failures=2)


@pytest.mark.parametrize(
    "extra",
    [{}, {"rssi": -67}, {"insecure": True}, {"rssi": -90, "insecure": True, "time": 1767225600},
     {"sensor_errors": 7}, {"wifi_failures": 4, "dns_failures": 2}],
)
def test_status_encodes_like_the_host_and_decodes(mp, extra: dict) -> None:
    fw_args = dict(STATUS, **{("time_s" if k == "time" else k): v for k, v in extra.items()})
    out = mp.json(f"""
import binascii
from batch import encode_status
from mptest import report
report(hex=binascii.hexlify(encode_status(**{fw_args!r})).decode())
""")
    payload = bytes.fromhex(out["hex"])
    assert payload == sealed.encode_status(**STATUS, **extra)
    want = dict(STATUS, rssi=None, insecure=False, time=None, sensor_errors=0, wifi_failures=0, dns_failures=0)
    want.update(extra)
    assert sealed.decode_status(cbor2.loads(payload)) == want


def test_bad_status_structure() -> None:
    m = cbor2.loads(sealed.encode_status(**STATUS))
    for mutate in (lambda d: d.pop(5), lambda d: d.update({12: False}), lambda d: d.update({3: -1}),
                   lambda d: d.update({1: 4}), lambda d: d.update({50: 0})):
        bad = dict(m)
        mutate(bad)
        with pytest.raises(SealError, match="bad status structure"):
            sealed.decode_status(bad)


# --- secrets.json ------------------------------------------------------------------------------------


GOOD_SECRETS = {"device_id": "dev-3f9a2c", "kid": "0102030405060708", "key": "00" * 16, "base_iv": "ab" * 13,
                "wifi": {"ssid": "x"}}


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "secrets.json: missing file"),
        ("{not json", "secrets.json: not valid JSON"),
        ("[]", "secrets.json: must hold a JSON object"),
        ({k: v for k, v in GOOD_SECRETS.items() if k != "key"}, "secrets.json: missing field 'key'"),
        ({**GOOD_SECRETS, "base_iv": "ab" * 12}, "secrets.json: field 'base_iv' must be 13 bytes"),
        ({**GOOD_SECRETS, "key": "zz" * 16}, "secrets.json: field 'key' is not hex"),
        ({**GOOD_SECRETS, "key": "0" * 31}, "secrets.json: field 'key' is not hex"),
        ({**GOOD_SECRETS, "kid": 12}, "secrets.json: field 'kid' must be a hex string"),
        ({**GOOD_SECRETS, "kid": ""}, "secrets.json: field 'kid' must be 1..16 bytes"),
        ({**GOOD_SECRETS, "device_id": "dev/3f"}, "secrets.json: field 'device_id' must be"),
    ],
)
def test_secrets_errors_name_file_and_field(mp, tmp_path: Path, content, message: str) -> None:
    if content is not None:
        (tmp_path / "secrets.json").write_text(content if isinstance(content, str) else json.dumps(content))
    out = mp.json("""
from devicekeys import load, SecretsError
from mptest import report
try:
    load("secrets.json")
    report(err=None)
except SecretsError as e:
    report(err=str(e), field=e.field)
""")
    assert out["err"] is not None and out["err"].startswith(message), out["err"]


def test_secrets_load(mp, tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text(json.dumps(GOOD_SECRETS))
    out = mp.json("""
import binascii
from devicekeys import load
from mptest import report
k = load()
h = lambda b: binascii.hexlify(b).decode()
report(device=k.device_id, kid=h(k.kid), key=h(k.key), iv=h(k.base_iv), topic=k.topic("status").decode())
""")
    assert out == {"device": "dev-3f9a2c", "kid": GOOD_SECRETS["kid"], "key": GOOD_SECRETS["key"],
                   "iv": GOOD_SECRETS["base_iv"], "topic": "oxilink/dev-3f9a2c/status"}


# --- docs/format.md -----------------------------------------------------------------------------------


def test_docs_example_opens(repo: Path) -> None:
    """The worked example in docs/format.md is real: it opens with the key printed beside it."""
    text = (repo / "docs" / "format.md").read_text()
    block = text.split("<!-- example:begin -->", 1)[1].split("<!-- example:end -->", 1)[0]
    field = {m[0]: m[1] for m in re.findall(r"^(\w+)\s*=\s*(.+?)\s*$", block, re.M)}
    msg = bytes.fromhex(field["message"])
    key, base_iv, kid = bytes.fromhex(field["key"]), bytes.fromhex(field["base_iv"]), bytes.fromhex(field["kid"])
    opened = sealed.open_encrypt0(msg, field["topic"], keys_for((key, base_iv, kid)))
    assert opened.counter == int(field["counter"])
    assert opened.plaintext.hex() == field["plaintext"]
    assert sealed.decode_batch(opened.payload)["device"] == field["device_id"]
