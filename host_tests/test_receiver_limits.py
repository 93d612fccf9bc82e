"""Receiver promises of docs/receiver.md not covered elsewhere: the size limit, the counter range, and a
registry that the running receiver re-reads when it changes (a device provisioned meanwhile needs no
restart)."""

from __future__ import annotations

import time

import pytest

from oxilink.receiver.audit import AuditLog
from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.model import Accepted
from oxilink.receiver.pipeline import Pipeline
from oxilink.receiver.registry import DeviceRegistry
from oxilink.receiver.store import open_store
from oxilink.receiver.verify import MAX_COUNTER, MAX_MESSAGE, Verifier


@pytest.fixture
def rig(tmp_path):
    registry = DeviceRegistry(tmp_path / "devices.json")
    dev = SimDevice.new("dev-lim")
    dev.register(registry)
    store = open_store(tmp_path / "r.sqlite")
    pipeline = Pipeline(Verifier(registry, store.high_counter), store, AuditLog(tmp_path / "audit.log", "test"))
    yield pipeline, dev, tmp_path
    store.close()


def check(pipeline: Pipeline, topic: str, msg: bytes):
    return pipeline.process([(topic, msg)])[0]


def test_a_message_over_64_kib_is_too_large(rig):
    pipeline, dev, _ = rig
    big = check(pipeline, dev.topic(), b"\0" * (MAX_MESSAGE + 1))
    at_limit = check(pipeline, dev.topic(), b"\0" * MAX_MESSAGE)
    assert big.reason == "too large" and at_limit.reason != "too large"  # the limit is 64 KiB, inclusive


def test_a_counter_beyond_2_63_is_out_of_range(rig):
    pipeline, dev, _ = rig
    start = int(time.time()) - 60
    ok = check(pipeline, dev.topic(), dev.seal(dev.batch_payload(start), counter=MAX_COUNTER))
    over = check(pipeline, dev.topic(), dev.seal(dev.batch_payload(start), counter=MAX_COUNTER + 1))
    assert isinstance(ok, Accepted) and over.reason == "counter out of range"


def test_a_device_registered_while_running_is_accepted_without_restart(rig):
    pipeline, _, tmp_path = rig
    newcomer = SimDevice.new("dev-new")
    msg = newcomer.seal(newcomer.batch_payload(int(time.time()) - 60), counter=1)
    assert check(pipeline, newcomer.topic(), msg).reason == "unknown kid"
    newcomer.register(DeviceRegistry(tmp_path / "devices.json"))  # oxilink provision, in another process
    deadline = time.monotonic() + 10  # the registry's file is looked at once a second at most
    while not isinstance(result := check(pipeline, newcomer.topic(), msg), Accepted):
        assert time.monotonic() < deadline, result
        time.sleep(0.1)
    assert pipeline.store.counts()["messages"] == 1
