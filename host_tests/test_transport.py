"""Transport: the flash queue drains to real Mosquitto over mutual TLS, through a fault-injecting proxy.
Records are produced on the device while the link is dropped, stalled and refused; every record must
arrive, in order, with duplicates only where a PUBACK was lost, and the queue must end empty."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from conftest import MP_HELPERS, write_der
from faultproxy import FaultProxy

from oxilink import mprun

DEVICE = """
import sys, json, time
from device_link import mount_queue, tls_link
from transport import Transport
from backoff import Backoff
from log import Log

port, keydir = int(sys.argv[1]), sys.argv[2]
n, period_ms, limit_s = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
bd, q = mount_queue()
idle_calls = [0]
def idle():
    idle_calls[0] += 1
log = Log("transport")
t = Transport(tls_link("dev-t", port, keydir, idle=idle), q, "dev-t", log=log, backoff=Backoff(200, 2000))
start = time.ticks_ms()
made = 0
max_gap = 0
last = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < limit_s * 1000:
    now = time.ticks_ms()
    max_gap = max(max_gap, time.ticks_diff(now, last))
    last = now
    if made < n and time.ticks_diff(now, start) >= made * period_ms:
        q.put(b"rec-%05d" % made)
        made += 1
    t.step()
    if made == n and q.depth() == 0:
        break
    time.sleep_ms(5)
print(json.dumps({"made": made, "depth": q.depth(), "stats": t.stats(), "idle": idle_calls[0],
                  "max_loop_gap_ms": max_gap, "errors_logged": log.errors}))
"""


def key_files(tmp_path, pki, cn):
    write_der(tmp_path, pki.issue(cn), pki)
    return str(tmp_path)


def run_device(tmp_path, port, n, period_ms, limit_s, faults=None):
    script = tmp_path / "device.py"
    script.write_text(DEVICE)
    proc = mprun.popen(script, [str(port), key_files(tmp_path, *faults["pki"]), str(n), str(period_ms),
                                str(limit_s)], extra_path=[MP_HELPERS], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    worker = threading.Thread(target=faults["schedule"], daemon=True)
    worker.start()
    out, _ = proc.communicate(timeout=limit_s + 60)
    worker.join(5)
    assert proc.returncode == 0, out
    return json.loads(out.strip().splitlines()[-1]), out


def collect(receiver, n, timeout=20.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(set(got)) < n and time.monotonic() < deadline:
        try:
            got.append(receiver.get(timeout=0.5)[1])
        except Exception:
            continue
    return got


def assert_complete_in_order(got, n):
    expected = [b"rec-%05d" % i for i in range(n)]
    assert set(got) == set(expected), f"missing: {sorted(set(expected) - set(got))[:10]}"
    first_seen = []
    for m in got:
        if m not in first_seen:
            first_seen.append(m)
    assert first_seen == expected  # in order: each record first arrives after all earlier ones


def test_clean_link_delivers_everything_in_order(tmp_path, broker, pki, receiver, mpbuild):
    result, out = run_device(tmp_path, broker.port, 60, 20, 40, {"pki": (pki, "dev-t"), "schedule": lambda: None})
    assert result["depth"] == 0 and result["made"] == 60, out
    got = collect(receiver, 60)
    assert_complete_in_order(got, 60)
    assert len(got) == 60  # no faults: no duplicates
    assert result["stats"]["connects"] == 1 and result["stats"]["acked"] == 60


def test_drop_stall_refuse_lose_nothing(tmp_path, broker, pki, receiver, mpbuild):
    proxy = FaultProxy(broker.port)
    events = []

    def schedule():
        time.sleep(1.5)
        proxy.drop_all()  # link lost mid-stream
        events.append("drop")
        time.sleep(2.0)
        proxy.mode = "stall"  # broker hangs: PUBACK never comes
        events.append("stall")
        time.sleep(4.0)
        proxy.mode = "refuse"
        proxy.drop_all()
        events.append("refuse")
        time.sleep(3.0)
        proxy.mode = "pass"
        events.append("pass")

    try:
        result, out = run_device(tmp_path, proxy.port, 200, 40, 60, {"pki": (pki, "dev-t"), "schedule": schedule})
    finally:
        proxy.close()
    assert events == ["drop", "stall", "refuse", "pass"]
    assert result["made"] == 200 and result["depth"] == 0, out
    got = collect(receiver, 200)
    assert_complete_in_order(got, 200)
    stats = result["stats"]
    assert stats["reconnects"] >= 2 and stats["link_lost"] >= 1
    assert stats["acked"] == 200
    assert len(got) - 200 <= stats["retransmitted"]  # duplicates only from retransmissions after a lost PUBACK
    assert result["max_loop_gap_ms"] < 2500  # every wait is bounded by the link timeout (1.5 s) plus a slice
    assert result["errors_logged"] == 0  # outages after the first connect are handled silently, counted


def test_first_failure_reported_and_queue_kept(tmp_path, pki, mpbuild):
    from oxilink.broker import free_port

    result, out = run_device(tmp_path, free_port(), 20, 10, 3, {"pki": (pki, "dev-t"), "schedule": lambda: None})
    assert result["depth"] == 20  # nothing lost, nothing acked
    assert "ERROR transport: cannot reach broker localhost" in out and "connect_failures during tcp" in out
    assert out.count("ERROR") == 1  # reported once, then counted
    assert result["stats"]["connect_failures"] >= 2
