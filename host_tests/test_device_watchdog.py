"""Issue 6 acceptance: the watchdog is fed only by a healthy main loop.

The fake watchdog (hw_unix.Watchdog, 5 s on the device clock) records what machine.WDT would have done. A
stuck or absent sensor (the simulated bus NACKs or holds SCL low) stops the feeding, so a real board
resets; a slow, stalled or refusing network does not: every socket wait is bounded and keeps draining the
sensor (and feeding) while it waits, even when one wait (1.5 s real, 7.5 s on the 5x device clock) is longer
than the watchdog timeout."""

from __future__ import annotations

import pytest
from devicerun import DeviceProcess
from faultproxy import FaultProxy

from oxilink.provision import provision_device
from oxilink.sealed import decode_status

WATCHDOG_MS = 5000

STUCK_SENSOR = """
from sim_device import SimDevice, say
from sim.max30102_sim import NACK, STUCK
d = SimDevice()
t = d.dev.transport
d.run_until(lambda: t.up and d.drained() and d.clock.elapsed_s() >= 3, 30)
say("healthy", d.report())
d.bus.fault = {"nack": NACK, "stuck": STUCK}[d.opts["fault"]]
d.run_until(lambda: not d.dev.sensor_ok, 5)  # the next drain sees the fault
feeds = d.watchdog.feeds
t0 = d.clock.ticks_ms()
d.run_until(lambda: d.clock.ticks_diff(d.clock.ticks_ms(), t0) > 8000, 30)
r = d.report()
r["feeds_at_fault"] = feeds
say("stuck", r)
d.bus.fault = None
d.run_until(lambda: d.dev.sensor_ok and d.watchdog.feeds > r["watchdog_feeds"] + 10, 30)
say("report", d.report())
"""


@pytest.mark.parametrize("fault", ["nack", "stuck"])
def test_stuck_sensor_stops_feeding(tmp_path, broker, secrets_root, fault, mpbuild):
    ident = provision_device("dev-wdt-sensor", root=secrets_root)
    with DeviceProcess(tmp_path / "dev", STUCK_SENSOR, {"secrets": str(ident.folder), "port": broker.port,
                                                        "fault": fault, "watchdog_ms": WATCHDOG_MS}) as dev:
        healthy = dev.expect("healthy")
        stuck = dev.expect("stuck")
        report = dev.finish()
    assert healthy["healthy"] and healthy["watchdog_feeds"] > 0 and not healthy["watchdog_expired"]
    assert not stuck["sensor_ok"] and not stuck["healthy"]
    assert stuck["sensor_errors"] >= 2  # the first failure, then recovery attempts about once a second
    status = decode_status(bytes.fromhex(stuck["status_hex"]))
    assert status["sensor_errors"] == stuck["sensor_errors"]  # the fault reaches the status report
    assert stuck["watchdog_feeds"] == stuck["feeds_at_fault"]  # not a single feed once the fault was seen
    assert stuck["watchdog_expired"]  # a real WDT would have reset the board
    assert stuck["transport"]["up"]  # the network side carried on: it is not what the watchdog watches
    warnings = [line for line in dev.lines if " WARNING " in line and "sensor" in line]
    assert len(warnings) == 1  # the fault is logged once, not once per retry
    assert report["sensor_ok"] and report["healthy"] and not report["watchdog_expired"]


NETWORK_TROUBLE = """
from sim_device import SimDevice, say
d = SimDevice()
t = d.dev.transport
c = t.counts

def phase(fault, effect, tag):
    # the test names the fault, we take the baseline, and only then does it change the network
    d.wait_for(fault, 60)
    base = dict(c)
    say("armed", {"fault": fault})
    d.run_until(lambda: effect(base), 30)
    say(tag, d.report())

d.run_until(lambda: t.up and d.dev.batches >= 1 and d.drained(), 30)
say("connected", d.report())
phase("slow", lambda b: c["acked"] > b["acked"], "slowed")  # a batch delivered through the slow link
phase("stall", lambda b: c["link_lost"] > b["link_lost"], "stalled")  # a PUBACK wait timed out
phase("refuse", lambda b: c["tls_failures"] + c["connect_failures"] > b["tls_failures"] + b["connect_failures"],
      "refused")
d.wait_for("healed", 60)
d.run_until(lambda: t.up and t.counts["reconnects"] >= 1 and d.drained(), 30)
say("report", d.report())
"""


def test_slow_and_stalled_network_keeps_feeding(tmp_path, broker, secrets_root, mpbuild):
    ident = provision_device("dev-wdt-net", root=secrets_root)
    with (FaultProxy(broker.port, delay=0.3) as proxy,
          DeviceProcess(tmp_path / "dev", NETWORK_TROUBLE, {"secrets": str(ident.folder), "port": proxy.port,
                                                            "link_timeout_ms": 1500,
                                                            "watchdog_ms": WATCHDOG_MS}) as dev):
        dev.expect("connected")
        phases = {}
        for mode, effect in (("slow", "slowed"), ("stall", "stalled"), ("refuse", "refused")):
            dev.signal(mode)
            assert dev.expect("armed")["fault"] == mode
            proxy.mode = mode
            if mode == "refuse":
                proxy.drop_all()
            phases[mode] = dev.expect(effect)
        proxy.mode = "pass"
        dev.signal("healed")
        report = dev.finish()
    t = report["transport"]
    assert t["link_lost"] >= 1  # the stall was long enough to time out a PUBACK wait
    assert t["tls_failures"] + t["connect_failures"] >= 1  # and to fail reconnects
    assert report["depth"] == 0  # and nothing was lost
    # the loop stayed healthy throughout: the watchdog never went hungry
    for name, r in [*phases.items(), ("end", report)]:
        assert r["healthy"] and not r["watchdog_expired"], (name, r)
    assert report["watchdog_longest_gap_ms"] < WATCHDOG_MS
