"""Issue 12, Wi-Fi: wifi.Station over a WLAN with the ESP32 port's status() semantics (host_tests/mp/fake_wlan.py).
A wrong password or a missing AP gives one log line with the cause and the SSID, never the password; the
station retries with a capped exponential backoff, never blocks, and counts every failed join. The clock
starts 5 s before the ms ticks wrap and the runs last 20 virtual minutes."""

from __future__ import annotations

import pytest

SETUP = """
from sim.vclock import VirtualClock
from fake_wlan import FakeWLAN
from wifi import Station
from backoff import Backoff
from log import Log
from mptest import report

clk = VirtualClock()
lines = []
log = Log("dev-w", write=lines.append)

def run(station, wlan, seconds, stop=None):
    # poll up() every 50 ms as the main loop does; note when each join starts
    starts = []
    t0 = clk.elapsed_s()
    while clk.elapsed_s() - t0 < seconds:
        n = len(wlan.connects)
        up = station.up()
        if len(wlan.connects) > n:
            starts.append(clk.elapsed_us // 1000)
        if stop is not None and stop(up):
            break
        clk.advance_ms(50)
    return starts
"""


@pytest.mark.parametrize(("outcome", "cause"), [
    ("wrong_password", "wrong password (STAT_WRONG_PASSWORD)"),
    ("no_ap", "no AP with this SSID in range (STAT_NO_AP_FOUND)"),
    ("silent", "no IP address after 20 s (status 1001)"),
])
def test_a_failing_join_is_logged_once_with_cause_and_ssid_and_retried_with_backoff(mp, outcome, cause):
    r = mp.json(SETUP + f"""
wlan = FakeWLAN(clk, ["{outcome}"])
st = Station(wlan, "ward-iot", "s3cret-pw", log=log, clock=clk, backoff=Backoff(2000, 120000))
starts = run(st, wlan, 1200)
wlan.outcomes.append("ok")   # the password is fixed / the AP is back
run(st, wlan, 600, stop=lambda up: up)
report(lines=lines, starts=starts, failures=st.failures, joins=st.joins, up=st.up(), disconnects=wlan.disconnects,
       keys=[k for _, k in wlan.connects], ssids=[s for s, _ in wlan.connects], cause=st.last_cause)
""")
    errors = [line for line in r["lines"] if " ERROR " in line]
    assert len(errors) == 1, r["lines"]
    assert "'ward-iot'" in errors[0] and cause in errors[0], errors[0]
    assert all("s3cret-pw" not in line for line in r["lines"])
    assert r["up"] is True and r["lines"][-1].endswith(f"joined 'ward-iot' after {r['failures']} failed attempts")
    assert r["ssids"] == ["ward-iot"] * len(r["ssids"]) and r["keys"] == ["s3cret-pw"] * len(r["keys"])
    # every failed join is counted, and the driver's own retry loop is stopped after each
    assert r["failures"] == r["disconnects"] == r["joins"] - 1 >= 5
    gaps = [b - a for a, b in zip(r["starts"], r["starts"][1:], strict=False)]
    assert gaps == sorted(gaps) or all(g >= 60000 for g in gaps[6:]), gaps  # grows to the cap (jitter [d/2, d])
    assert max(gaps) <= 120000 + 21000 and min(gaps[6:], default=60000) >= 60000, gaps
    assert len(r["starts"]) <= 20  # 20 minutes: at most ~20 attempts, not one per loop turn


def test_a_change_of_cause_is_logged_and_a_dropped_link_is_supervised(mp):
    r = mp.json(SETUP + """
wlan = FakeWLAN(clk, ["no_ap", "no_ap", "wrong_password", "wrong_password", ("drop", 30000), "ok"])
st = Station(wlan, "ward-iot", "pw", log=log, clock=clk, backoff=Backoff(1000, 8000))
run(st, wlan, 600, stop=lambda up: up and len(wlan.connects) >= 6)
report(lines=lines, failures=st.failures, joins=st.joins, rssi=st.rssi(), dns=st.dns_server())
""")
    errors = [line.split(": ", 1)[1] for line in r["lines"] if " ERROR " in line]
    assert errors == [
        "Wi-Fi: cannot join 'ward-iot': no AP with this SSID in range (STAT_NO_AP_FOUND); retrying with backoff, "
        "readings stay queued",
        "Wi-Fi: cannot join 'ward-iot': wrong password (STAT_WRONG_PASSWORD); retrying with backoff, readings "
        "stay queued",
        "Wi-Fi: cannot join 'ward-iot': no IP address after 20 s (status 1001); retrying with backoff, readings "
        "stay queued"], r["lines"]
    assert r["failures"] == 5 and r["joins"] == 6
    assert r["rssi"] == -58 and r["dns"] == ["127.0.0.1", 53]


DEVICE = """
from sim_device import SimDevice, say
d = SimDevice()
dev = d.dev
t = dev.transport
d.run_until(lambda: d.network.failures >= 4 and dev.batches >= 3, 60)
say("offline", d.report())
d.run_until(lambda: t.up and dev.batches >= 5 and d.drained(), 60)
say("report", d.report())
"""


def test_device_keeps_queueing_through_a_wrong_password_and_reports_the_failures(tmp_path, broker, pki,
                                                                                  secrets_root, mpbuild):
    from devicerun import DeviceProcess
    from receiver_check import verifier_for, verify_all

    from mqtt_peer import Peer
    from oxilink.broker import RECEIVER_CN
    from oxilink.provision import provision_device

    ident = provision_device("dev-wifi", root=secrets_root)
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/dev-wifi/#")
    wifi = {"outcomes": ["wrong_password"] * 4 + ["ok"], "ssid": "ward-iot", "password": "s3cret-pw", "join_ms": 200,
            "backoff_ms": 300, "backoff_cap_ms": 1500}
    with DeviceProcess(tmp_path / "dev", DEVICE, {"secrets": str(ident.folder), "port": broker.port, "wifi": wifi,
                                                  "batch_seconds": 5, "clock": "virtual"}) as dev:
        offline = dev.expect("offline")
        report = dev.finish()
    accepted, rejected = verify_all(verifier_for(tmp_path / "receiver", ident), peer.drain())
    peer.close()
    assert rejected == []
    errors = [line for line in dev.lines if " ERROR " in line]
    assert len(errors) == 1 and "'ward-iot'" in errors[0] and "wrong password" in errors[0], errors
    assert "s3cret-pw" not in dev.output
    # readings kept queueing while Wi-Fi failed; nothing was lost, everything arrived afterwards
    assert offline["transport"]["wifi_failures"] == 4 and offline["transport"]["connects"] == 0
    assert offline["depth"] == offline["batches"] >= 3 and offline["lost_samples"] == 0
    assert report["depth"] == 0 and report["lost_samples"] == 0 and report["healthy"]
    counters = sorted(a.counter for a in accepted if a.kind == "vitals")
    assert counters == sorted(report["sealed"])
    first_status = next(a.status for a in accepted if a.kind == "status")
    assert first_status["wifi_failures"] == 4 and first_status["rssi"] == -58
