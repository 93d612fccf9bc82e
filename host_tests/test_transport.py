"""Transport: the flash queue drains to real Mosquitto over mutual TLS, through a fault-injecting proxy.
Records are produced on the device while the link is dropped, stalled and refused; every record must
arrive, in order, with duplicates only where a PUBACK was lost, and the queue must end empty.

The faults follow the device, not the wall clock: the device announces what it has seen ("flowing",
"reconnected", ...); the test names the next fault with a file, the device takes its baseline and says
"armed", and only then does the test change the network. A slow or loaded machine stretches the run; it
cannot reorder it."""

from __future__ import annotations

from conftest import write_der
from devicerun import DeviceProcess
from faultproxy import FaultProxy

DEVICE = """
import json, sys, time
from sim_device import say, exists
from device_link import mount_queue, tls_link
from transport import Transport
from backoff import Backoff
from log import Log

with open(sys.argv[1]) as f:
    o = json.load(f)
bd, q = mount_queue()
idle_calls = [0]
def idle():
    idle_calls[0] += 1
log = Log("transport")
t = Transport(tls_link("dev-t", o["port"], o["keys"], idle=idle), q, "dev-t", log=log, backoff=Backoff(200, 2000))
c = t.counts

def failures():
    return c["connect_failures"] + c["tls_failures"] + c["refused"]

# (the file naming the fault, what to announce once the counts, taken before the fault, show its effect)
PHASES = {
    "faults": [(None, "flowing", lambda b: c["acked"] >= 20),
               ("drop", "reconnected", lambda b: c["reconnects"] > b["reconnects"] and c["acked"] >= b["acked"] + 20),
               ("stall", "stall-detected", lambda b: c["link_lost"] > b["link_lost"]),
               ("refuse", "refused", lambda b: failures() >= b["failures"] + 2),
               ("pass", "passing", lambda b: True)],
    "none": [],
}[o["faults"]]
n, period_ms, limit_s = o["n"], o["period_ms"], o["limit_s"]
start = last = time.ticks_ms()
made = max_gap = 0
phase, base = 0, None
while time.ticks_diff(time.ticks_ms(), start) < limit_s * 1000:
    now = time.ticks_ms()
    max_gap = max(max_gap, time.ticks_diff(now, last))
    last = now
    if made < n and time.ticks_diff(now, start) >= made * period_ms:
        q.put(b"rec-%05d" % made)
        made += 1
    t.step()
    if phase < len(PHASES):
        fault, tag, done = PHASES[phase]
        if base is None and (fault is None or exists(fault)):
            base = dict(c, failures=failures())
            if fault:
                say("armed", {"fault": fault})  # the test applies the fault only after this
        if base is not None and done(base):
            say(tag, t.stats())
            phase, base = phase + 1, None
    elif made == n and q.depth() == 0:
        break
    time.sleep_ms(5)
say("report", {"made": made, "depth": q.depth(), "stats": t.stats(), "idle": idle_calls[0],
               "max_loop_gap_ms": max_gap, "errors_logged": log.errors, "phases_done": phase})
"""


def run_device(tmp_path, pki, port, n, period_ms, limit_s, faults="none"):
    keys = tmp_path / "keys"
    keys.mkdir()
    write_der(keys, pki.issue("dev-t"), pki)
    opts = {"port": port, "keys": str(keys), "n": n, "period_ms": period_ms, "limit_s": limit_s, "faults": faults}
    return DeviceProcess(tmp_path / "dev", DEVICE, opts)


def collect(receiver, n):
    """Everything the receiver got up to the first copy of the last record (records go out oldest first)."""
    return [payload for _, payload, _ in receiver.collect_until(b"rec-%05d" % (n - 1), timeout=60)]


def assert_complete_in_order(got, n):
    expected = [b"rec-%05d" % i for i in range(n)]
    assert set(got) == set(expected), f"missing: {sorted(set(expected) - set(got))[:10]}"
    first_seen = list(dict.fromkeys(got))
    assert first_seen == expected  # in order: each record first arrives after all earlier ones


def test_clean_link_delivers_everything_in_order(tmp_path, broker, pki, receiver, mpbuild):
    with run_device(tmp_path, pki, broker.port, 60, 20, 40) as dev:
        result = dev.finish()
    assert result["depth"] == 0 and result["made"] == 60, dev.output
    got = collect(receiver, 60)
    assert_complete_in_order(got, 60)
    assert len(got) == 60  # no faults: no duplicates
    assert result["stats"]["connects"] == 1 and result["stats"]["acked"] == 60


def test_drop_stall_refuse_lose_nothing(tmp_path, broker, pki, receiver, mpbuild):
    with (FaultProxy(broker.port) as proxy,
          run_device(tmp_path, pki, proxy.port, 200, 40, 90, faults="faults") as dev):

        def fault(name):
            dev.signal(name)
            assert dev.expect("armed")["fault"] == name

        seen = [dev.expect("flowing")["acked"]]
        fault("drop")
        proxy.drop_all()  # the link is lost mid-stream
        seen.append(dev.expect("reconnected")["reconnects"])
        fault("stall")
        proxy.mode = "stall"  # the broker hangs: PUBACKs never come
        seen.append(dev.expect("stall-detected")["link_lost"])
        fault("refuse")
        proxy.mode = "refuse"
        proxy.drop_all()
        seen.append(dev.expect("refused")["up"])
        fault("pass")
        proxy.mode = "pass"
        result = dev.finish(timeout=120)
    assert seen[0] >= 20 and seen[1] >= 1 and seen[2] >= 2 and seen[3] is False
    assert result["made"] == 200 and result["depth"] == 0 and result["phases_done"] == 5, dev.output
    got = collect(receiver, 200)
    assert_complete_in_order(got, 200)
    stats = result["stats"]
    assert stats["reconnects"] >= 2 and stats["link_lost"] >= 2
    assert stats["acked"] == 200
    assert len(got) - 200 <= stats["retransmitted"]  # duplicates only from retransmissions after a lost PUBACK
    assert result["max_loop_gap_ms"] < 2500  # every wait is bounded by the link timeout (1.5 s) plus a slice
    assert result["errors_logged"] == 0  # outages after the first connect are handled silently, counted


def test_first_failure_reported_and_queue_kept(tmp_path, pki, mpbuild):
    from oxilink.broker import free_port

    with run_device(tmp_path, pki, free_port(), 20, 10, 3) as dev:
        result = dev.finish()
    out = dev.output
    assert result["depth"] == 20  # nothing lost, nothing acked
    assert "ERROR transport: cannot reach broker localhost" in out and "connect_failures during tcp" in out
    assert out.count("ERROR") == 1  # reported once, then counted
    assert result["stats"]["connect_failures"] >= 2
