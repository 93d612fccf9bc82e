"""Verification without the network: registry and key rotation, replay window, value sanity, alerts."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from oxilink import sealed
from oxilink.receiver.alerts import BurstDetector
from oxilink.receiver.audit import AuditLog, read_entries
from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.model import Accepted, Rejected
from oxilink.receiver.pipeline import Pipeline
from oxilink.receiver.registry import DeviceRegistry
from oxilink.receiver.store import open_store
from oxilink.receiver.verify import Verifier

NOW = 1_795_000_000.0


class Clock:
    def __init__(self, t: float = NOW):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def env(tmp_path):
    clock = Clock()
    audit = AuditLog(tmp_path / "audit.log", "test")
    registry = DeviceRegistry(tmp_path / "devices.json", audit, clock=clock)
    store = open_store(tmp_path / "r.sqlite")
    dev = SimDevice.new("dev-a")
    dev.register(registry)

    def pipeline(window: int = 1 << 16) -> Pipeline:
        return Pipeline(Verifier(registry, store.high_counter, window=window, clock=clock), store, audit)

    yield type("Env", (), dict(clock=clock, audit=audit, registry=registry, store=store, dev=dev,
                               pipeline=staticmethod(pipeline), tmp=tmp_path))
    store.close()


def one(p: Pipeline, topic: str, msg: bytes, now: float = NOW) -> Accepted | Rejected:
    return p.process([(topic, msg)], now=now)[0]


def reason(result) -> str | None:
    return result.reason if isinstance(result, Rejected) else None


def test_status_report_is_accepted_and_an_insecure_link_is_audited(env):
    p = env.pipeline()
    r = one(p, env.dev.topic("status"), env.dev.sealed_status(insecure=True, rssi=-61))
    assert isinstance(r, Accepted) and r.status["rssi"] == -61
    assert env.store.counts() == {"messages": 1, "readings": 0}
    assert [e["event"] for e in read_entries(env.audit.path)][-2:] == ["device_seen", "device_insecure_link"]


def test_replay_window_duplicates_and_late_messages(env):
    p = env.pipeline(window=10)
    d = env.dev
    start = int(NOW) - 3600
    assert reason(one(p, d.topic(), d.seal(d.batch_payload(start), counter=50))) is None
    assert reason(one(p, d.topic(), d.seal(d.batch_payload(start), counter=50))) is None  # duplicate
    assert reason(one(p, d.topic(), d.seal(d.batch_payload(start), counter=45))) is None  # late, new
    assert reason(one(p, d.topic(), d.seal(d.batch_payload(start), counter=40))) == "replay"  # 50 - 10
    assert (p.stats.stored, p.stats.duplicates, p.stats.rejected) == (2, 1, 1)
    # A new receiver process remembers: the window starts from what the store holds.
    p2 = env.pipeline(window=10)
    assert reason(one(p2, d.topic(), d.seal(d.batch_payload(start), counter=39))) == "replay"
    assert reason(one(p2, d.topic(), d.seal(d.batch_payload(start), counter=41))) is None
    assert [c for (c,) in env.store.db.execute("SELECT counter FROM messages ORDER BY counter")] == [41, 45, 50]


def test_key_rotation_window_then_old_key_expires(env):
    p = env.pipeline()
    d = env.dev
    old = SimDevice(d.device_id, d.kid, d.key, d.base_iv)
    new = SimDevice(d.device_id, d.kid, os.urandom(16), os.urandom(13))  # same kid, new key
    until = env.registry.rotate_key(d.device_id, new.kid, new.key, new.base_iv, overlap_s=3600)
    assert until == NOW + 3600
    start = int(NOW) - 60
    assert reason(one(p, d.topic(), old.seal(old.batch_payload(start), counter=1))) is None
    assert reason(one(p, d.topic(), new.seal(new.batch_payload(start), counter=2))) is None
    env.clock.t = NOW + 3601
    assert reason(one(p, d.topic(), old.seal(old.batch_payload(start), counter=3), now=env.clock.t)) == \
        "authentication failure"
    assert reason(one(p, d.topic(), new.seal(new.batch_payload(start), counter=4), now=env.clock.t)) is None


def test_rotation_to_a_new_kid_and_revocation(env):
    p = env.pipeline()
    d = env.dev
    new = SimDevice(d.device_id, b"dev-a/2", os.urandom(16), os.urandom(13))
    env.registry.rotate_key(d.device_id, new.kid, new.key, new.base_iv, overlap_s=60)
    start = int(NOW) - 60
    assert reason(one(p, d.topic(), d.seal(d.batch_payload(start), counter=1))) is None
    assert reason(one(p, d.topic(), new.seal(new.batch_payload(start), counter=2))) is None  # key change seen
    env.clock.t = NOW + 61
    assert reason(one(p, d.topic(), d.seal(d.batch_payload(start), counter=5), now=env.clock.t)) == "key expired"
    env.registry.revoke(d.device_id, new.kid)
    later = env.clock.t
    assert reason(one(p, d.topic(), new.seal(new.batch_payload(start), counter=3), now=later)) == "key revoked"
    env.registry.revoke(d.device_id)
    assert reason(one(p, d.topic(), new.seal(new.batch_payload(start), counter=4), now=later)) == "device revoked"
    events = [e["event"] for e in read_entries(env.audit.path)]
    assert {"key_registered", "key_rotated", "key_revoked", "device_revoked", "device_key_changed"} <= set(events)
    assert d.key.hex() not in env.audit.path.read_text() and new.key.hex() not in env.audit.path.read_text()
    assert stat.S_IMODE(env.registry.path.stat().st_mode) == 0o600


def test_a_kid_belongs_to_one_device(env):
    with pytest.raises(ValueError, match="already belongs to device dev-a"):
        env.registry.register_device("dev-b", env.dev.kid, os.urandom(16), os.urandom(13))
    with pytest.raises(ValueError, match="16 bytes"):
        env.registry.register_device("dev-c", b"c", os.urandom(15), os.urandom(13))


def test_binding_to_topic_and_payload_device(env):
    p = env.pipeline()
    d, start = env.dev, int(NOW) - 60
    other = SimDevice.new("dev-b")
    other.register(env.registry)
    # dev-b's key, sealed for dev-a's topic (the broker ACL should stop this; the receiver does too)
    forged = sealed.seal_encrypt0(other.key, other.base_iv, other.kid, 1, d.topic(), d.batch_payload(start))
    assert reason(one(p, d.topic(), forged)) == "wrong topic"
    # dev-a's key and topic, but the payload claims to be dev-b's readings
    lying = d.seal(other.batch_payload(start), counter=7)
    assert reason(one(p, d.topic(), lying)) == "device mismatch"
    assert reason(one(p, "oxilink/dev-a/commands", d.sealed_batch(start))) == "unexpected topic"
    assert env.store.counts() == {"messages": 0, "readings": 0}


@pytest.mark.parametrize(("values", "ok"), [
    ({"hr": 200}, True), ({"hr": 3000}, True), ({"hr": 199}, False), ({"hr": 3001}, False), ({"hr": 0}, False),
    ({"spo2": 1000}, True), ({"spo2": 500}, True), ({"spo2": 1001}, False), ({"spo2": 499}, False),
    ({"pi": 0}, True), ({"pi": 10000}, True), ({"pi": 10001}, False),
])
def test_physiological_limits(env, values, ok):
    p = env.pipeline()
    r = one(p, env.dev.topic(), env.dev.seal(env.dev.batch_payload_with(int(NOW) - 60, **values)))
    assert (reason(r) is None) == ok, getattr(r, "detail", r)
    assert env.store.counts()["messages"] == int(ok)


@pytest.mark.parametrize(("start", "ok"), [(int(NOW) - 86400 * 365, True), (int(NOW) + 3600, True),
                                           (int(NOW) + 86400 * 2, False), (0, False), (946684799, False)])
def test_reading_times_must_be_plausible(env, start, ok):
    r = one(env.pipeline(), env.dev.topic(), env.dev.sealed_batch(start))
    assert (reason(r) is None) == ok


def test_burst_of_failures_raises_one_alert_per_window():
    b = BurstDetector(threshold=5, window_s=10)
    fired = [b.failure(100 + i * 0.1, "authentication failure") for i in range(40)]
    assert sum(a is not None for a in fired) == 1
    assert fired[4] == {"failures": 5, "window_s": 10, "top_reasons": {"authentication failure": 5}, "alert_no": 1}
    assert b.failure(111, "unknown kid") is not None  # the next window
    quiet = BurstDetector(threshold=5, window_s=10)
    assert all(quiet.failure(100 + i * 3, "bad CBOR") is None for i in range(20))  # slow drip: no alert


def test_stats_file_is_json(env, tmp_path):
    p = env.pipeline()
    one(p, env.dev.topic(), b"\x00")
    p.stats.write(tmp_path / "s.json")
    s = json.loads((tmp_path / "s.json").read_text())
    assert (s["rejected"], s["rejected_by_reason"]) == (1, {"wrong tag": 1})


INGEST_BUDGET_S = 1 / 2000  # bench_ingest's target: 2,000 batches/s through one receiver, paho and TLS included


def test_a_message_is_checked_within_twice_the_ingest_budget_in_cpu_time(env):
    """Verifying and storing a batch (one transaction for all) stays within twice the receiver's per-batch
    budget in CPU time on any host: about a fifth of the budget on an idle machine, 413-509 us of 500 with
    both cores under stress-ng and two test workers (CPU time is inflated by a loaded machine's caches, not by
    its waits). A regression guard: a per-message fsync or a quadratic check costs far more. The figure is
    `make bench-ingest`'s."""
    p = env.pipeline()
    msgs = [(env.dev.topic(), env.dev.sealed_batch(int(NOW) - 3600 + 30 * i)) for i in range(400)]
    p.process(msgs[:200])  # warm up (imports, first statements)
    cpu, wall = time.process_time(), time.perf_counter()
    p.process(msgs[200:])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"200 batches verified and stored in {cpu * 1000:.1f} ms CPU ({wall * 1000:.1f} ms wall)")
    assert p.stats.stored == 400
    assert cpu <= 200 * INGEST_BUDGET_S * 2, f"{cpu / 200 * 1e6:.0f} us CPU per batch"


def test_registry_describes_a_device_for_its_fhir_device(env, capsys):
    from oxilink.cli import main as oxilink

    assert env.registry.description("dev-a") == {}  # an entry from before descriptions existed
    env.registry.describe_device("dev-a", board="esp32-devkitc", certificate_serial="0x3F0C")
    env.registry.describe_device("dev-a", board="esp32-devkitc")  # unchanged: not audited again
    assert DeviceRegistry(env.registry.path).description("dev-a") == {"board": "esp32-devkitc",
                                                                       "certificate_serial": "3f0c"}
    described = [e["detail"] for e in read_entries(env.audit.path) if e["event"] == "device_described"]
    assert described == [{"device": "dev-a", "board": "esp32-devkitc", "certificate_serial": "3f0c"}]
    with pytest.raises(ValueError, match="expected hex"):
        env.registry.describe_device("dev-a", certificate_serial="serial-7")
    with pytest.raises(KeyError):
        env.registry.describe_device("dev-nope", board="sim")
    assert env.registry.valid_keys(env.dev.kid)  # the keys are untouched
    assert oxilink(["registry", "list", "--registry", str(env.registry.path), "--audit", str(env.tmp / "a.log")]) == 0
    assert "dev-a  board esp32-devkitc  certificate serial 3f0c" in capsys.readouterr().out


def test_registry_cli_add_rotate_revoke_list(tmp_path, capsys):
    from oxilink.cli import main as oxilink

    reg, audit = tmp_path / "devices.json", tmp_path / "audit.log"
    key1, key2 = tmp_path / "k1", tmp_path / "k2"
    key1.write_text(os.urandom(16).hex())
    key2.write_text(os.urandom(16).hex())
    common = ["--registry", str(reg), "--audit", str(audit), "--operator", "it.admin"]
    iv = os.urandom(13).hex()
    assert oxilink(["registry", "add", "dev-x", "--kid", "01", "--key-file", str(key1), "--base-iv", iv, *common]) == 0
    assert oxilink(["registry", "rotate", "dev-x", "--kid", "02", "--key-file", str(key2), "--base-iv", iv,
                    "--overlap", "0", *common]) == 0
    assert oxilink(["registry", "revoke", "dev-x", "--kid", "02", *common]) == 0
    assert oxilink(["registry", "revoke", "dev-nope", *common]) == 1
    capsys.readouterr()
    assert oxilink(["registry", "list", *common]) == 0
    out = capsys.readouterr().out
    assert "dev-x" in out and "kid 01" in out and "expired" in out and "revoked" in out
    assert "board" not in out  # nothing recorded beyond the keys
    assert key1.read_text() not in out and key1.read_text() not in audit.read_text()
    actors = {e["actor"].split("@")[0] for e in read_entries(audit)}
    assert actors == {"registry:it.admin"}
    assert DeviceRegistry(reg).valid_keys(b"\x01") == [] and DeviceRegistry(reg).valid_keys(b"\x02") == []
