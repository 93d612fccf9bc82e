"""Acknowledged means durable (docs/broker.md, "Durability"): a device deletes a batch once the broker has
PUBACKed it, so the broker must not lose what it acknowledged. Five devices (the firmware on the unix port)
deliver while the receiver is away; the broker is killed with SIGKILL right after their PUBACKs, restarted,
and the receiver then finds every batch any device ever sealed. The same run against Mosquitto's default
persistence (a snapshot every 1800 s) loses them: the test can tell the two apart."""

from __future__ import annotations

import json
import time

import pytest
from devicerun import DeviceProcess
from receiverrun import ReceiverProcess

from oxilink.broker import Mosquitto
from oxilink.provision import provision_device
from oxilink.receiver.registry import DeviceRegistry

DEVICES = 5
BOARD = """
from sim_device import SimDevice, say, exists
d = SimDevice()
o = d.opts
ok = d.run_until(lambda: len(d.sealed) >= o["before"] and d.drained(), 120)
say("acked", {"sealed": list(d.sealed), "ok": ok})  # every batch so far PUBACKed and deleted from flash
n = len(d.sealed) + o["after"]
ok = d.run_until(lambda: exists("finish") and len(d.sealed) >= n and d.drained(), 240)
say("report", dict(d.report(), ok=ok))
"""


def run(tmp_path, pki, secrets_root, mpbuild, durable: bool) -> dict:
    broker = Mosquitto(tmp_path / "broker", pki, durable=durable).start()
    rx = ReceiverProcess(tmp_path, broker, pki)
    registry = DeviceRegistry(rx.registry_path)
    idents = [provision_device(f"dev-dur{i}-{mpbuild}", root=secrets_root) for i in range(DEVICES)]
    for ident in idents:
        registry.register_device(ident.device_id, ident.kid, ident.key, ident.base_iv)
    rx.start()  # its persistent session and subscription exist at the broker...
    rx.stop()  # ...and it goes away: from now on the broker alone holds what the devices deliver
    boards = [DeviceProcess(tmp_path / ident.device_id, BOARD,
                            {"secrets": str(ident.folder), "port": broker.port, "speed": 5, "batch_seconds": 5,
                             "before": 3, "after": 2, "backoff_cap_ms": 500}) for ident in idents]
    try:
        acked = [b.expect("acked", timeout=120) for b in boards]
        broker.kill()  # SIGKILL right after the last device's PUBACKs: no chance to write a last snapshot
        broker.start()  # same persistence folder, same port
        for b in boards:
            b.signal("finish")
        reports = [b.finish(timeout=300) for b in boards]
        rx.start()
        sealed = sum(len(r["sealed"]) for r in reports)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and rx.stats().get("stored", 0) < sealed:
            time.sleep(0.2)
        rx.stop()
    finally:
        for b in boards:
            b.kill()
        broker.stop()
    assert all(a["ok"] for a in acked) and all(r["ok"] for r in reports)
    lost = {}
    for ident, report in zip(idents, reports, strict=True):
        got = {c for (c,) in rx.rows("SELECT counter FROM messages WHERE device = ? AND kind = 'vitals'",
                                     ident.device_id)}
        missing = sorted(set(report["sealed"]) - got)
        if missing:
            lost[ident.device_id] = missing
    return {"durable": durable, "sealed": sealed, "acked_before_kill": sum(len(a["sealed"]) for a in acked),
            "lost": lost}


def test_sigkill_right_after_pubacks_loses_nothing_acknowledged(tmp_path, pki, secrets_root, mpbuild):
    result = run(tmp_path, pki, secrets_root, mpbuild, durable=True)
    print(json.dumps(result))
    assert result["acked_before_kill"] >= DEVICES * 3
    assert result["lost"] == {}


@pytest.mark.parametrize("mpbuild", ["stock"], indirect=True)  # the contrast needs one build, not two
def test_mosquittos_default_persistence_would_lose_them(tmp_path, pki, secrets_root, mpbuild):
    result = run(tmp_path, pki, secrets_root, mpbuild, durable=False)
    print(json.dumps(result))
    lost = sum(len(v) for v in result["lost"].values())
    assert lost >= DEVICES * 3  # at least every batch acknowledged before the kill
