"""`oxilink receive` end to end: the firmware (unix port) seals and publishes through a real Mosquitto with
mutual TLS; the receiver runs as its own process; what it stores, rejects and audits is read back from its
database, its audit log and its stats file."""

from __future__ import annotations

import getpass
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from receiverrun import ReceiverProcess

from mqtt_peer import Peer
from oxilink.receiver.audit import read_entries, verify
from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.registry import DeviceRegistry

FIRMWARE_PUBLISH = """
import sys, json, binascii
import cose
from batch import BatchBuilder
from umqtt.simple import MQTTClient

def der(p):
    with open(p, "rb") as f:
        return f.read()

key_path, cert_path, ca_path, port, device, keyhex, ivhex, kidhex, first, count, start = sys.argv[1:12]
key, base_iv, kid = binascii.unhexlify(keyhex), binascii.unhexlify(ivhex), binascii.unhexlify(kidhex)
c = MQTTClient(device, "localhost", port=int(port), ssl=True,
               ssl_params=dict(key=der(key_path), cert=der(cert_path), cadata=der(ca_path), cert_reqs=2,
                               server_hostname="localhost"))
c.connect()
topic = "oxilink/%s/vitals" % device
b = BatchBuilder(30, device, "fw-test", cfg=3)
sent = []
for n in range(int(count)):
    counter = int(first) + n
    b.clear(int(start) + 30 * n)
    for i in range(30):
        gap = i % 10 == 9
        b.add(None if gap else 700 + i, None if gap else 975 - (i % 3), None if gap else 120 + i, 4 if gap else 0)
    msg = cose.seal(key, base_iv, kid, counter, topic, b.encode())
    c.publish(topic.encode(), msg, qos=1)
    c.publish(topic.encode(), msg, qos=1)  # the same sealed batch twice: must be stored once
    sent.append(counter)
c.disconnect()
print(json.dumps(sent))
"""


@pytest.fixture
def rx(tmp_path, broker, pki):
    r = ReceiverProcess(tmp_path, broker, pki)
    yield r
    if r.proc and r.proc.poll() is None:
        r.stop()


def device_files(folder: Path, issued, pki) -> list[str]:
    (folder / "k.der").write_bytes(issued.key_der())
    (folder / "c.der").write_bytes(issued.cert_der())
    (folder / "ca.der").write_bytes(pki.ca_der())
    return [str(folder / n) for n in ("k.der", "c.der", "ca.der")]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oxilink.cli", *args], capture_output=True, text=True, timeout=120)


def test_firmware_batches_are_stored_once_and_exported(mp, tmp_path, broker, pki, rx):
    dev = SimDevice.new("ward3-bed7")
    dev.register(DeviceRegistry(rx.registry_path))
    rx.start()
    start = int(time.time()) - 3600
    files = device_files(tmp_path, pki.issue(dev.device_id), pki)
    sent = mp.json(FIRMWARE_PUBLISH, args=[*files, str(broker.port), dev.device_id, dev.key.hex(), dev.base_iv.hex(),
                                           dev.kid.hex(), "41", "4", str(start)], heapsize="100K")
    assert sent == [41, 42, 43, 44]
    stats = rx.wait_for(lambda s: s["received"] >= 8, "8 deliveries")
    assert (stats["stored"], stats["duplicates"], stats["rejected"]) == (4, 4, 0)
    assert rx.rows("SELECT counter, n_readings, fw, cfg FROM messages ORDER BY counter") == \
        [(c, 30, "fw-test", 3) for c in sent]
    assert rx.rows("SELECT COUNT(*), COUNT(DISTINCT counter || '/' || \"offset\") FROM readings") == [(120, 120)]
    # The values the firmware put in come out: reading 2 of batch 41 had hr 70.2, spo2 97.3, pi 1.22.
    assert rx.rows('SELECT t, hr_bpm, spo2_pct, pi_pct, quality FROM readings WHERE counter=41 AND "offset"=2') == \
        [(start + 2, 70.2, 97.3, 1.22, 0)]
    assert rx.rows('SELECT hr_bpm, spo2_pct, pi_pct, quality FROM readings WHERE counter=41 AND "offset"=9') == \
        [(None, None, None, 4)]
    assert rx.stop() == 0

    patients = tmp_path / "patients.json"
    patients.write_text(json.dumps({dev.device_id: "Patient/p-1001"}))
    out = cli("export", "fhir", "--device", dev.device_id, "--since", str(start - 1), "--db", str(rx.db_path),
              "--audit", str(rx.audit_path), "--patients", str(patients), "--operator", "nurse.jones")
    assert out.returncode == 0, out.stderr
    resources = [json.loads(line) for line in out.stdout.splitlines()]
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    assert len(observations) == 3 * 4 * 27 + 4 * 3  # SpO2, pulse rate, PI per valued reading; a status per gap
    from fhir.resources.observation import Observation as ObservationR5
    from fhir.resources.R4B.device import Device as DeviceR4B
    from fhir.resources.R4B.observation import Observation as ObservationR4B

    devices = [r for r in resources if r["resourceType"] == "Device"]
    for d in devices:
        DeviceR4B.model_validate(d)
    _gateway, device = devices
    # What the firmware put in every batch reaches the Device: its version and board configuration version.
    assert {(v["type"]["text"], v["value"]) for v in device["version"]} >= {
        ("Firmware revision", "fw-test"), ("Board configuration version (cfg, sent in every batch)", "3")}
    for obs in observations:
        ObservationR4B.model_validate(obs)
        ObservationR5.model_validate(obs)
        assert obs["subject"] == {"reference": "Patient/p-1001"}
        assert obs["device"]["reference"] == f"Device/{device['id']}"
    spo2 = [o for o in observations if o["meta"]["profile"][0] == "http://hl7.org/fhir/StructureDefinition/oxygensat"]
    assert len(spo2) == 4 * 27
    assert {c["code"] for c in spo2[0]["code"]["coding"]} == {"150456", "59408-5", "2708-6"}
    assert spo2[0]["valueQuantity"]["code"] == "%"

    out = cli("export", "csv", "--device", dev.device_id, "--db", str(rx.db_path), "--audit", str(rx.audit_path))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "device,counter,t,hr_bpm,spo2_pct,pi_pct,quality"
    assert len(lines) == 1 + 120
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + 2))
    assert lines[3] == f"{dev.device_id},41,{iso},70.2,97.3,1.22,0"
    assert lines[10].endswith(",,,,4")

    exports = [e for e in read_entries(rx.audit_path) if e["event"] == "export"]
    assert [(e["detail"]["format"], e["actor"].split("@")[0]) for e in exports] == \
        [("fhir", "export:nurse.jones"), ("csv", f"export:{getpass.getuser()}")]
    assert exports[0]["detail"]["resources"] == {"Device": 2, "Observation": len(observations)}
    assert cli("audit", "verify", "--audit", str(rx.audit_path)).returncode == 0


def publish_all(peer: Peer, rx: ReceiverProcess, topic: str, messages: list[bytes], chunk: int = 500) -> None:
    """QoS 1, in chunks the receiver has taken before the next: never more than Mosquitto will queue."""
    base = rx.stats()["received"]
    for i in range(0, len(messages), chunk):
        for m in messages[i:i + chunk]:
            peer.client.publish(topic, m, qos=1)
        done = base + min(i + chunk, len(messages))
        rx.wait_for(lambda s, done=done: s["received"] >= done, f"{done - base} deliveries")


def collect_random_messages(valid: bytes, n: int) -> list[bytes]:
    """n byte strings from hypothesis: arbitrary bytes, and a valid sealed batch with bits flipped, cut short
    or with bytes inserted."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    def flip(bit: int) -> bytes:
        b = bytearray(valid)
        b[bit // 8] ^= 1 << (bit % 8)
        return bytes(b)

    strategy = st.one_of(
        st.binary(max_size=2 * len(valid)),
        st.builds(flip, st.integers(0, 8 * len(valid) - 1)),
        st.builds(lambda k: valid[:k], st.integers(0, len(valid) - 1)),
        st.builds(lambda k, junk: valid[:k] + junk + valid[k:], st.integers(0, len(valid)), st.binary(min_size=1)),
    )
    out: list[bytes] = []

    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(b: bytes) -> None:
        out.append(b)

    collect()
    return out


def test_forged_replayed_and_random_messages_are_rejected_audited_and_never_stored(tmp_path, broker, pki, rx):
    dev = SimDevice.new("dev-a")
    dev.register(DeviceRegistry(rx.registry_path))
    rx.args += ["--replay-window", "50"]
    rx.start()
    attacker = Peer(broker, pki.issue(dev.device_id), pki.cert_path)  # a stolen device identity: worst case
    topic = dev.topic()
    start = int(time.time()) - 600

    valid = dev.seal(dev.batch_payload(start), counter=100)
    publish_all(attacker, rx, topic, [valid])
    assert rx.stats()["stored"] == 1

    forged_tag = valid[:-16] + bytes(16)
    flipped = [bytes(valid[:i]) + bytes([valid[i] ^ 0x01]) + valid[i + 1:] for i in range(len(valid))]
    truncated = [valid[:k] for k in range(len(valid))]
    wrong_topic = dev.seal(dev.batch_payload(start), kind="status", counter=101)  # sealed for .../status
    stranger = SimDevice.new("nobody")
    unknown_kid = stranger.seal(stranger.batch_payload(start), counter=1)
    replayed = dev.seal(dev.batch_payload(start - 3000), counter=10)  # 90 behind the newest, window 50
    absurd = [dev.seal(dev.batch_payload_with(start, **v), counter=c) for c, v in
              ((102, {"hr": 0}), (103, {"hr": 4000}), (104, {"spo2": 1200}))]
    attacks = [forged_tag, *flipped, *truncated, wrong_topic, unknown_kid, replayed, *absurd]
    publish_all(attacker, rx, topic, attacks)
    hypothesis_samples = collect_random_messages(valid, 10_000)
    assert len(hypothesis_samples) == 10_000
    publish_all(attacker, rx, topic, hypothesis_samples)

    s = rx.stats()
    assert s["stored"] == 1 and s["rejected"] == len(attacks) + 10_000
    assert rx.proc.poll() is None  # still up
    assert rx.rows("SELECT COUNT(*) FROM messages") == [(1,)]
    assert rx.rows("SELECT COUNT(*) FROM readings") == [(30,)]

    failures = [e for e in read_entries(rx.audit_path) if e["event"] in ("verification_failed", "replay")]
    assert len(failures) == s["rejected"]
    reasons = [e["detail"]["reason"] for e in failures[:len(attacks)]]
    assert reasons[0] == "authentication failure"  # forged tag
    assert reasons[-6:] == ["wrong topic", "unknown kid", "replay", "value out of range", "value out of range",
                            "value out of range"]
    assert failures[len(attacks) - 4]["event"] == "replay"
    assert "hr_bpm=0.0" in failures[len(attacks) - 3]["detail"]["problem"]
    assert "hr_bpm=400.0" in failures[len(attacks) - 2]["detail"]["problem"]
    assert "spo2_pct=120.0" in failures[len(attacks) - 1]["detail"]["problem"]
    assert all(r != "internal error" for r in s["rejected_by_reason"])
    assert s["alerts"] >= 1 and "ALERT verification failure burst" in rx.log()
    assert any(e["event"] == "alert" for e in read_entries(rx.audit_path))

    # Still working: the next genuine batch is stored, and a re-sent one is only counted.
    publish_all(attacker, rx, topic, [dev.seal(dev.batch_payload(start + 30), counter=105), valid])
    s = rx.stats()
    assert (s["stored"], s["duplicates"]) == (2, 1)
    assert rx.rows("SELECT counter FROM messages ORDER BY counter") == [(100,), (105,)]
    attacker.close()
    assert rx.stop() == 0
    count, problems = verify(rx.audit_path)
    assert problems == [] and count >= s["rejected"]


def test_sigterm_mid_stream_loses_nothing_and_stores_nothing_twice(tmp_path, broker, pki, rx):
    dev = SimDevice.new("dev-s")
    dev.register(DeviceRegistry(rx.registry_path))
    rx.start()
    start = int(time.time()) - 7200
    messages = [dev.seal(dev.batch_payload(start + 30 * c), counter=c) for c in range(1, 401)]
    publisher = Peer(broker, pki.issue(dev.device_id), pki.cert_path)
    infos = []
    for m in messages[:200]:
        infos.append(publisher.client.publish(dev.topic(), m, qos=1))
    rx.wait_for(lambda s: s["received"] >= 50, "the first deliveries")
    assert rx.stop(signal.SIGTERM) == 0  # mid-stream: some received, some acked, some still at the broker
    first_run = rx.rows("SELECT COUNT(*) FROM messages")[0][0]
    assert 50 <= first_run <= 200  # at least what was counted as received before the signal was committed
    for m in messages[200:]:
        infos.append(publisher.client.publish(dev.topic(), m, qos=1))  # while no receiver is connected
    for info in infos:
        info.wait_for_publish(10)
    rx.start()  # the same client id: the broker resumes the session and re-sends what was never acked
    rx.wait_for(lambda s: s["stored"] + first_run >= 400, "all 400 batches")
    assert rx.stop(signal.SIGINT) == 0
    publisher.close()
    assert rx.rows("SELECT COUNT(*), MIN(counter), MAX(counter) FROM messages") == [(400, 1, 400)]
    assert rx.rows("SELECT COUNT(*) FROM readings") == [(400 * 30,)]
    events = [e["event"] for e in read_entries(rx.audit_path)]
    assert events.count("receiver_started") == 2 and events.count("receiver_stopped") == 2
    assert verify(rx.audit_path)[1] == []


def test_shared_subscription_splits_the_fleet_between_receivers(tmp_path, broker, pki):
    rxs = [ReceiverProcess(tmp_path, broker, pki, name, "--group", "ward3") for name in ("rx1", "rx2")]
    devices = [SimDevice.new(f"dev-{i}") for i in range(4)]
    registry = DeviceRegistry(rxs[0].registry_path)
    for d in devices:
        d.register(registry)
    try:
        for r in rxs:
            r.start()
        start = int(time.time()) - 3600
        for d in devices:
            peer = Peer(broker, pki.issue(d.device_id), pki.cert_path)
            for n in range(15):
                peer.client.publish(d.topic(), d.sealed_batch(start + 30 * n), qos=1).wait_for_publish(10)
            peer.close()
        deadline = time.monotonic() + 60
        while sum(r.stats().get("received", 0) for r in rxs) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        got = [r.stats()["stored"] for r in rxs]
        assert sum(got) == 60 and min(got) > 0, got  # both took a share; no message went to both
    finally:
        for r in rxs:
            if r.proc:
                r.stop()
    assert rxs[0].rows("SELECT COUNT(*) FROM messages") == [(60,)]
    assert verify(rxs[0].audit_path)[1] == []  # two processes appended to one log, chain intact
