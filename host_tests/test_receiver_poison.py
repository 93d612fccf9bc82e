"""No poison messages: every payload field is range-checked against docs/format.md's CDDL; what the database
still refuses is quarantined (raw bytes, reason, audit, ack); no single message stops ingest for the fleet.

The property test generates validly sealed but hostile plaintexts from the CDDL itself (host_tests/cddl.py
parses docs/format.md): values at and across every integer boundary, wrong types, oversized and deeply nested
items, missing and unknown keys. Each is processed beside a good batch from another device, on SQLite and on
a real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import cbor2
import cddl
import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from receiverrun import ReceiverProcess

from oxilink import sealed
from oxilink.receiver.audit import AuditLog, read_entries, verify
from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.model import Accepted, Quarantined, Rejected
from oxilink.receiver.pipeline import Pipeline
from oxilink.receiver.registry import DeviceRegistry
from oxilink.receiver.store import open_store
from oxilink.receiver.verify import Verifier

pytest_plugins = ["pgserver"]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "format.md"
RULES = cddl.load(DOCS)
NOW = 1_795_000_000
BOUNDARIES = [0, 1, -1, 2**7, 2**8, 2**15 - 1, 2**15, 2**16, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1,
              2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**2000, -2**15, -2**31, -2**32, -2**63, -2**63 - 1, -2**64,
              -2**64 - 1, -2**2000]


# ---- the CDDL and the code agree ----------------------------------------------------------------------------

def field(rule: str, key: int):
    entry = next(e for e in cddl.resolve(RULES, RULES[rule]).entries if e[0] == key)
    node = cddl.resolve(RULES, entry[2])
    if isinstance(node, cddl.Array):
        item = cddl.resolve(RULES, node.item)
        if isinstance(item, cddl.Choice):
            item = cddl.Choice(tuple(cddl.resolve(RULES, o) for o in item.options))
        node = cddl.Array(node.min, node.max, item)
    return entry[1], node


def test_sealed_limits_are_the_cddl_limits():
    u32 = cddl.Range(0, sealed.UINT32_MAX)
    column = cddl.Array(0, sealed.MAX_READINGS, cddl.Choice((cddl.Range(*sealed.DELTA_RANGE), cddl.Literal(None))))
    short = cddl.Regexp(sealed.SHORT_TEXT.pattern)
    b, s = sealed.BATCH_KEYS, sealed.STATUS_KEYS
    batch = {"v": cddl.Literal(1), "device": cddl.Regexp(sealed.DEVICE_ID.pattern), "start": u32,
             "period_ms": cddl.Range(*sealed.PERIOD_MS_RANGE), "fw": short, "cfg": u32, "hr": column,
             "spo2": column, "pi": column,
             "quality": cddl.Array(0, sealed.MAX_READINGS, cddl.Range(*sealed.QUALITY_RANGE))}
    assert {name: field("oxilink-batch", b[name]) for name in b} == {n: (False, t) for n, t in batch.items()}
    status = {"v": cddl.Literal(1), "fw": short, "board": short,
              "reset_cause": cddl.Regexp(sealed.RESET_CAUSE.pattern),
              **{n: u32 for n in sealed.STATUS_COUNTERS}, "rssi": cddl.Range(*sealed.RSSI_RANGE),
              "insecure": cddl.Literal(True), "time": u32, "sensor_errors": u32, "wifi_failures": u32,
              "dns_failures": u32}
    optional = {"rssi", "insecure", "time", "sensor_errors", "wifi_failures", "dns_failures"}
    assert set(sealed.STATUS_REQUIRED) | optional | {"v"} == set(s)
    assert {name: field("oxilink-status", s[name]) for name in s} == \
        {n: (n in optional, t) for n, t in status.items()}


# ---- generating from the CDDL ------------------------------------------------------------------------------

junk = st.recursive(st.none() | st.booleans() | st.integers() | st.sampled_from(BOUNDARIES) |
                    st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40) | st.binary(max_size=40),
                    lambda inner: st.lists(inner, max_size=5)
                    | st.dictionaries(st.integers(-2, 20) | st.text(max_size=3), inner, max_size=4),
                    max_leaves=20)
deep = st.integers(15, 40).map(lambda depth: eval("[" * depth + "1" + "]" * depth))  # nested past the decoder's limit
oversized = st.sampled_from([b"\x00" * 60_000, "x" * 60_000, list(range(3601)), [None] * 3601,
                             {i: 0 for i in range(5000)}])


def valid(node) -> st.SearchStrategy:
    node = cddl.resolve(RULES, node)
    if isinstance(node, cddl.Literal):
        return st.just(node.value)
    if isinstance(node, cddl.Range):
        edges = [v for v in (node.low, node.low + 1, node.high - 1, node.high, 0) if node.low <= v <= node.high]
        return st.sampled_from(edges) | st.integers(node.low, node.high)
    if isinstance(node, cddl.Regexp):
        return st.from_regex(node.pattern, fullmatch=True)
    if isinstance(node, cddl.Array):
        return st.lists(valid(node.item), min_size=node.min, max_size=min(node.max, 12))
    if isinstance(node, cddl.Choice):
        return st.one_of(*(valid(o) for o in node.options))
    raise TypeError(node)


def hostile(node) -> st.SearchStrategy:
    """Values that break node: across its boundaries, of the wrong type, too long, nested, oversized."""
    node = cddl.resolve(RULES, node)
    wrong = junk.filter(lambda v: not cddl.conforms(RULES, node, v)) | deep | oversized
    if isinstance(node, cddl.Range):
        outside = [node.low - 1, node.high + 1, *(b for b in BOUNDARIES if not node.low <= b <= node.high)]
        return st.sampled_from(outside) | st.sampled_from([True, False, 1.0, float("nan"), -0.0, "1"]) | wrong
    if isinstance(node, cddl.Regexp):
        return st.sampled_from(["", "\x00", "a\x00b", "x" * 33, "é", "\U0001F600", "line\nbreak", " " * 40]) | wrong
    if isinstance(node, cddl.Array):
        return (st.lists(valid(node.item), min_size=node.max + 1, max_size=node.max + 1)
                | st.lists(hostile(node.item), min_size=1, max_size=3) | wrong)
    return wrong


def message(rule: str, base: dict) -> st.SearchStrategy:
    """A plaintext: the base map with some fields replaced by other valid or hostile values, some keys removed,
    an unknown key added; or something that is no map at all."""
    entries = cddl.resolve(RULES, RULES[rule]).entries

    @st.composite
    def build(draw):
        m = dict(base)
        for key, _, node in draw(st.lists(st.sampled_from(entries), max_size=3, unique_by=lambda e: e[0])):
            m[key] = draw(hostile(node) if draw(st.booleans()) else valid(node))
        for key in draw(st.lists(st.sampled_from([k for k, _, _ in entries]), max_size=1)):
            m.pop(key, None)
        if draw(st.integers(0, 9)) == 0:
            m[draw(st.sampled_from([15, -1, 2**64, "v", 1.5]))] = 0
        return m

    return build() | st.sampled_from([[], "batch", 7, None]) | deep | junk


def good_batch(device: str) -> dict:
    return cbor2.loads(sealed.encode_batch(device, NOW - 120, 1000, "0.1.0", 1,
                                           [(700 + i, 970, 150, 0) for i in range(30)]))


def good_status() -> dict:
    return cbor2.loads(sealed.encode_status(fw="0.1.0", board="esp32-devkitc", uptime_s=60, reset_cause="power-on",
                                            free_heap=90000, queue_depth=0, dropped=0, fifo_overflows=0,
                                            reconnects=0, tls_failures=0, rssi=-60, time=NOW))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "r.sqlite")
    return request.getfixturevalue("postgres_url")


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")  # reprs of 60 kB examples
def test_hostile_sealed_plaintexts_are_stored_or_refused_and_ingest_goes_on(store_url, tmp_path):
    store = open_store(store_url)
    audit = AuditLog(tmp_path / "audit.log", "test")
    registry = DeviceRegistry(tmp_path / "devices.json", clock=lambda: NOW)
    hostile_dev, good_dev = SimDevice.new("dev-hostile"), SimDevice.new("dev-good")
    hostile_dev.register(registry)
    good_dev.register(registry)
    pipeline = Pipeline(Verifier(registry, store.high_counter, clock=lambda: NOW), store, audit)
    counts: Counter = Counter()
    postgres = store_url.startswith("postgresql")

    @settings(max_examples=120 if postgres else 400, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(["vitals", "status"]), data=st.data())
    def check(kind, data):
        rule, base = ("oxilink-batch", good_batch("dev-hostile")) if kind == "vitals" else \
            ("oxilink-status", good_status())
        plain = data.draw(message(rule, base))
        try:
            payload = cbor2.dumps(plain)
        except (ValueError, TypeError, OverflowError):
            return  # not encodable (e.g. NaN map keys): nothing a device could send
        if len(payload) > 65_535:
            return  # AES-CCM with a 13-byte nonce seals at most 65535 bytes: no device can send it
        good = good_dev.sealed_batch(NOW - 60)
        results = pipeline.process([(hostile_dev.topic(kind), hostile_dev.seal(payload, kind)),
                                    (good_dev.topic(), good)], now=NOW)
        verdict, other = results
        counts["examples"] += 1
        assert isinstance(other, Accepted), other  # the other device's batch went in, whatever came beside it
        counts["good_stored"] += 1
        assert not (isinstance(verdict, Rejected) and verdict.reason == "internal error"), verdict.detail
        if isinstance(verdict, Accepted):
            assert cddl.conforms(RULES, RULES[rule], plain), plain  # nothing outside the CDDL is ever stored
            counts["hostile_stored"] += 1
        else:
            counts["refused" if isinstance(verdict, Rejected) else "quarantined"] += 1
            counts[f"reason: {verdict.reason}"] += 1
            if isinstance(verdict, Rejected) and verdict.reason.startswith("bad "):
                assert verdict.detail.get("problem") or verdict.reason == "bad CBOR", verdict.detail

    check()
    stats = store.counts()
    print(json.dumps({"backend": "postgresql" if postgres else "sqlite", **counts, "store": stats}))
    assert counts["good_stored"] == counts["examples"] >= (100 if postgres else 300)
    assert counts["refused"] > counts["examples"] // 3 and counts["hostile_stored"] > 0
    # everything stored is the good device's batches plus the hostile messages that were valid after all
    assert stats["messages"] == counts["good_stored"] + counts["hostile_stored"]
    assert pipeline.process([(good_dev.topic(), good_dev.sealed_batch(NOW - 30))], now=NOW)[0].batch
    assert verify(audit.path)[1] == []
    store.close()


# ---- what used to crash the receiver, and the quarantine -----------------------------------------------------

def test_the_issues_poison_batches_are_refused_with_the_field_named(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    registry = DeviceRegistry(tmp_path / "devices.json", clock=lambda: NOW)
    dev = SimDevice.new("dev-p")
    dev.register(registry)
    pipeline = Pipeline(Verifier(registry, store.high_counter, clock=lambda: NOW), store,
                        AuditLog(tmp_path / "audit.log", "test"))
    readings = [(700, 970, 150, 0)] * 3
    poison = {"cfg = 18446744073709551615 outside 0..4294967295":
              sealed.encode_batch("dev-p", NOW - 60, 1000, "0.1.0", 2**64 - 1, readings),
              "period_ms = a 2001-bit integer outside 1..3600000":
              sealed.encode_batch("dev-p", NOW - 60, 2**2000, "0.1.0", 1, readings)}
    for problem, payload in poison.items():
        r = pipeline.process([(dev.topic(), dev.seal(payload))], now=NOW)[0]
        assert isinstance(r, Rejected) and r.reason == "bad batch structure" and r.detail["problem"] == problem
    assert store.counts() == {"messages": 0, "readings": 0}


REFUSE = {  # a constraint the database enforces and verification does not know: the quarantine's reason to exist
    "sqlite": "CREATE TRIGGER refuse_fw BEFORE INSERT ON messages WHEN NEW.fw = 'refused-fw' "
              "BEGIN SELECT RAISE(ABORT, 'fw refused by a site constraint'); END",
    "postgresql": "ALTER TABLE messages ADD CONSTRAINT refuse_fw CHECK (fw IS DISTINCT FROM 'refused-fw')",
}


def run_sql(url: str, statement: str) -> None:
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as db:
            db.execute(statement)
    else:
        import sqlite3

        with sqlite3.connect(url) as db:
            db.execute(statement)


def test_what_the_database_refuses_is_quarantined_and_the_rest_stored(store_url, tmp_path):
    open_store(store_url).close()  # create the schema, then add the site's constraint
    run_sql(store_url, REFUSE["postgresql" if store_url.startswith("postgresql") else "sqlite"])
    store = open_store(store_url)
    audit = AuditLog(tmp_path / "audit.log", "test")
    registry = DeviceRegistry(tmp_path / "devices.json", clock=lambda: NOW)
    a, b = SimDevice.new("dev-a"), SimDevice.new("dev-b")
    a.register(registry)
    b.register(registry)
    pipeline = Pipeline(Verifier(registry, store.high_counter, clock=lambda: NOW), store, audit)
    refused = a.seal(sealed.encode_batch("dev-a", NOW - 90, 1000, "refused-fw", 1, [(700, 970, 150, 0)] * 5))
    batch = [(a.topic(), a.sealed_batch(NOW - 120)), (a.topic(), refused), (b.topic(), b.sealed_batch(NOW - 120)),
             (a.topic(), a.sealed_batch(NOW - 60)), (b.topic(), b.sealed_batch(NOW - 60))]
    results = pipeline.process(batch, now=NOW)
    assert [type(r).__name__ for r in results] == ["Accepted", "Quarantined", "Accepted", "Accepted", "Accepted"]
    assert store.counts() == {"messages": 4, "readings": 120}
    (kept,) = store.quarantined()
    assert kept["payload"] == refused and kept["reason"] == "database refused" and kept["topic"] == a.topic()
    detail = json.loads(kept["detail"])
    assert detail["device"] == "dev-a" and detail["counter"] == 1  # sealed first
    assert "fw refused" in detail["error"] or "refuse_fw" in detail["error"]  # the database's own words
    events = [e for e in read_entries(audit.path) if e["event"] == "quarantined"]
    assert len(events) == 1 and events[0]["detail"]["sha256_16"] == kept["sha256"][:16]
    assert pipeline.stats.quarantined == 1 and pipeline.stats.stored == 4
    store.close()


def test_an_unexpected_verification_failure_is_quarantined(tmp_path):
    """A registry entry with a damaged Base IV (edited by hand) makes opening raise where no check expected
    it: the message is kept with the error instead of being lost or stopping ingest."""
    store = open_store(tmp_path / "r.sqlite")
    registry = DeviceRegistry(tmp_path / "devices.json", clock=lambda: NOW)
    a, b = SimDevice.new("dev-a"), SimDevice.new("dev-b")
    a.register(registry)
    b.register(registry)
    doc = json.loads(registry.path.read_text())
    doc["devices"]["dev-a"]["keys"][0]["base_iv"] = "00" * 12  # 12 bytes, not 13
    registry.path.write_text(json.dumps(doc))
    time.sleep(0.01)
    registry._checked = 0.0  # re-read now, not in a second
    pipeline = Pipeline(Verifier(registry, store.high_counter, clock=lambda: NOW), store,
                        AuditLog(tmp_path / "audit.log", "test"))
    msg = a.sealed_batch(NOW - 60)
    results = pipeline.process([(a.topic(), msg), (b.topic(), b.sealed_batch(NOW - 60))], now=NOW)
    assert isinstance(results[0], Quarantined) and results[0].reason == "internal error"
    assert isinstance(results[1], Accepted)
    (kept,) = store.quarantined()
    assert kept["payload"] == msg and "base_iv" in json.loads(kept["detail"])["error"]
    store.close()


# ---- end to end: `oxilink receive` keeps ingesting the fleet while one device sends poison ------------------

def poison_payloads() -> dict[str, bytes]:
    readings = [(700, 970, 150, 0)] * 5
    t = int(time.time()) - 120
    return {
        "cfg 2**64-1 (crashed the SQLite insert)": sealed.encode_batch("dev-poison", t, 1000, "0.1.0", 2**64 - 1,
                                                                       readings),
        "period_ms 2**2000 (OverflowError)": sealed.encode_batch("dev-poison", t, 2**2000, "0.1.0", 1, readings),
        "a value the database refuses": sealed.encode_batch("dev-poison", t, 1000, "refused-fw", 1, readings),
        "60 kB text": cbor2.dumps({0: 1, 1: "dev-poison", 2: t, 3: 1000, 4: "x" * 60_000, 5: 1, 6: [], 7: [],
                                   8: [], 9: []}),
        "nested 40 deep": cbor2.dumps({0: 1, 1: "dev-poison", 2: t, 3: 1000, 4: "0.1.0", 5: 1,
                                       6: eval("[" * 40 + "]" * 40), 7: [], 8: [], 9: []}),
        "not CBOR": b"\xff\x00garbage",
        "NUL in fw": sealed.encode_batch("dev-poison", t, 1000, "0.1\x00", 1, readings),
    }


def test_the_receiver_keeps_ingesting_the_fleet_while_one_device_sends_poison(tmp_path, broker, pki):
    rx = ReceiverProcess(tmp_path, broker, pki)
    open_store(rx.db_path).close()
    run_sql(str(rx.db_path), REFUSE["sqlite"])  # a site constraint: the "refused-fw" batch must be quarantined
    registry = DeviceRegistry(rx.registry_path)
    good, bad = SimDevice.new("dev-good"), SimDevice.new("dev-poison")
    good.register(registry)
    bad.register(registry)
    rx.start()

    def client(cn: str) -> mqtt.Client:
        ident = pki.issue(cn)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{cn}/1")
        c.tls_set(ca_certs=str(pki.cert_path), certfile=str(ident.cert), keyfile=str(ident.key),
                  cert_reqs=ssl.CERT_REQUIRED)
        c.connect("localhost", broker.port)
        c.loop_start()
        return c

    n_good, poison = 300, poison_payloads()
    good_client, bad_client = client("dev-good"), client("dev-poison")
    t0 = int(time.time()) - 3 * 3600
    progress: list[tuple[str, int]] = []

    def send_good():
        for i in range(n_good):
            good_client.publish(good.topic(), good.sealed_batch(t0 + 30 * i), qos=1).wait_for_publish(10)
            time.sleep(0.01)

    sender = threading.Thread(target=send_good)
    sender.start()
    try:
        for name, payload in poison.items():
            time.sleep(0.3)
            bad_client.publish(bad.topic(), bad.seal(payload), qos=1).wait_for_publish(10)
            stats = rx.wait_for(lambda s: s["rejected"] + s["quarantined"] >= len(progress) + 1, what=name)
            progress.append((name, stats["stored"]))  # the fleet's batches stored so far: it keeps going
        sender.join(120)
        stats = rx.wait_for(lambda s: s["stored"] >= n_good, what="every good batch")
        assert rx.proc.poll() is None  # never crashed
    finally:
        good_client.loop_stop()
        bad_client.loop_stop()
        rx.stop()
    print(json.dumps({"good_batches_stored": stats["stored"], "poison_sent": len(poison),
                      "rejected": stats["rejected"], "quarantined": stats["quarantined"],
                      "stored_after_each_poison": progress}))
    assert stats["stored"] == n_good and stats["readings_stored"] == 30 * n_good
    assert stats["quarantined"] == 1 and stats["rejected"] == len(poison) - 1
    assert [s for _, s in progress] == sorted(s for _, s in progress) and progress[-1][1] > progress[0][1]
    assert rx.rows("SELECT COUNT(*) FROM quarantine") == [(1,)]
    listed = subprocess.run([sys.executable, "-m", "oxilink.cli", "quarantine", "list", "--db", str(rx.db_path)],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    (entry,) = [json.loads(line) for line in listed]
    assert entry["reason"] == "database refused" and entry["detail"]["device"] == "dev-poison"
    out = rx.folder / "kept.cose"
    subprocess.run([sys.executable, "-m", "oxilink.cli", "quarantine", "save", str(entry["id"]), "--db",
                    str(rx.db_path), "-o", str(out)], check=True, capture_output=True)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == entry["sha256"]
    # everything was acknowledged: a restarted receiver (same persistent session) gets nothing again
    rx.start()
    time.sleep(2)
    assert rx.stats()["received"] == 0
    rx.stop()
