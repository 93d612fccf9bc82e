"""Issue 12, ticks: the board's ticks_ms wraps at 2**30 (12.4 days) and ticks_diff only spans half of that, so
anything measured from a long-lived stamp goes wrong after 6.2 days (uptime went negative and the receiver
rejected every status). The device clock here starts 5 s before the wrap; after a stretch of normal running,
it jumps 12 hours at a time (the sensor keeps sampling through each jump, its FIFO overflowing, and the device
runs a turn after each) for more than two wraps of ms ticks (and ~2000 of us ticks), with a week-long network
outage in the middle. Socket waits run on the same clock, as on a board. Every status must be accepted by the
receiver's verification, with an uptime that counts every second."""

from __future__ import annotations

from devicerun import DeviceProcess
from receiver_check import verifier_for, verify_all

from mqtt_peer import Peer
from oxilink.broker import RECEIVER_CN
from oxilink.provision import provision_device

JUMP_MS = 12 * 3600 * 1000
JUMPS = 52  # 26 days: more than two wraps of ticks_ms (2**31 ms = 24.9 days)
OUTAGE = range(20, 34)  # jumps made with the network down: a week

TICKS_SCRIPT = f"""
from sim_device import SimDevice, say
d = SimDevice()
dev = d.dev
t = dev.transport
clock = d.clock

def jump(ms):
    # Time passes: the chip converts (and loses) samples in steps its us ticks can follow (< half their period).
    while ms > 0:
        step = min(ms, 200000)
        clock.advance_us(step * 1000)
        d.chip.sync()
        ms -= step

def uptime():  # what the status reports (93e28bd: ticks_diff from a start stamp)
    u = getattr(dev, "uptime", None)
    return u.update() if u else clock.ticks_diff(clock.ticks_ms(), dev.started_ms) // 1000

def online():
    return t.up and t.status_pending is None and d.drained()

d.run_until(online, 30)
say("start", {{"ticks_ms": clock.ticks_ms(), "uptime_s": uptime(), "elapsed_s": clock.elapsed_s()}})
d.run_until(lambda: clock.elapsed_s() >= 12, 30)  # across the ms wrap in normal running
for i in range({JUMPS}):
    if i == {OUTAGE.start}:
        d.network.available = False
    if i == {OUTAGE.stop}:
        d.network.available = True
    jump({JUMP_MS})
    d.turn()
    if d.network.available:
        ok = d.run_until(lambda: t.up and t.status_pending is None and t.counts["connects"] > 0, 30)
        say("jump", {{"i": i, "ok": ok, "ticks_ms": clock.ticks_ms(), "uptime_s": uptime(),
                     "elapsed_s": clock.elapsed_s(), "up": t.up}})
d.run_until(online, 30)
say("report", d.report())
"""


def test_statuses_accepted_and_uptime_right_across_two_ms_wraps(tmp_path, broker, pki, secrets_root, mpbuild):
    ident = provision_device("dev-ticks", root=secrets_root)
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/dev-ticks/#")
    opts = {"secrets": str(ident.folder), "port": broker.port, "speed": 2, "start_ms": 2**30 - 5000,
            "net_clock": "device", "wall": "real", "status_interval_s": 60, "batch_seconds": 5}
    with DeviceProcess(tmp_path / "dev", TICKS_SCRIPT, opts) as dev:
        start = dev.expect("start")
        jumps = [dev.expect("jump", timeout=120) for _ in range(JUMPS - len(OUTAGE))]
        report = dev.finish(timeout=120)
    messages = peer.drain()
    peer.close()

    accepted, rejected = verify_all(verifier_for(tmp_path / "receiver", ident), messages)
    assert rejected == [], rejected[:3]  # 93e28bd: "bad status structure" (negative uptime) from day 6.2 on
    assert start["ticks_ms"] > 2**30 - 5000  # the run started just before the wrap
    assert all(j["ok"] and j["up"] for j in jumps), [j for j in jumps if not (j["ok"] and j["up"])]

    # the device's uptime counts every second of device time, across both wraps and the outage
    for j in jumps:
        assert 0 <= j["elapsed_s"] - j["uptime_s"] <= 2, j  # the clock was made a moment before the device
    assert report["uptime_s"] >= JUMPS * JUMP_MS // 1000 > 2**31 // 1000
    assert report["transport"]["reconnects"] >= 1 and report["transport"]["network_down"] >= 1

    statuses = [a.status for a in accepted if a.kind == "status" and a.status["reset_cause"] != "offline"]
    uptimes = [s["uptime_s"] for s in statuses]
    assert len(statuses) >= JUMPS - len(OUTAGE) + 1, uptimes
    assert uptimes == sorted(uptimes) and uptimes[-1] >= (JUMPS - 1) * JUMP_MS // 1000, uptimes
    assert sum(1 for a in accepted if a.kind == "vitals") >= 2  # the batches made meanwhile pass as well
