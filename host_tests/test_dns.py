"""Issue 12, DNS: the broker's name is resolved by a paced, non-blocking UDP query (firmware/resolver.py) to the
DNS server the network handed out, never by getaddrinfo() inside the loop that must drain the sensor FIFO
every 320 ms. A fake DNS server on loopback (host_tests/fakedns.py) answers, stays silent or refuses."""

from __future__ import annotations

import pytest
from fakedns import FakeDns

LOOKUP = """
import sys, time, json
from resolver import Resolver, DnsError, literal_address
port, name, tries = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
r = Resolver(timeout_ms=300, tries=tries)
r.start(name, ("127.0.0.1", port))
longest = 0
polls = 0
t0 = time.ticks_ms()
out = {}
while True:
    t = time.ticks_us()
    try:
        got = r.poll()
    except DnsError as e:
        out["error"] = str(e)
        break
    finally:
        longest = max(longest, time.ticks_diff(time.ticks_us(), t))
        polls += 1
    if got is not None:
        out["address"], out["ttl"] = got
        break
    time.sleep_ms(5)
out.update(longest_poll_us=longest, polls=polls, ms=time.ticks_diff(time.ticks_ms(), t0), pending=r.pending,
           literals=[literal_address(h) for h in ("localhost", "10.1.2.3", "256.1.1.1", "broker.lan", "1.2.3")])
print(json.dumps(out))
"""


@pytest.mark.parametrize(("mode", "cname", "ttl", "want"), [
    ("answer", None, 3600, {"address": "127.0.0.1", "ttl": 3600}),
    ("answer", "edge.cdn.test", 5, {"address": "127.0.0.1", "ttl": 60}),  # behind a CNAME; TTL at least 60 s
    ("answer", None, 10 * 86400, {"address": "127.0.0.1", "ttl": 86400}),  # and at most a day
    ("nxdomain", None, 0, {"error": "broker.test: no such name (NXDOMAIN)"}),
    ("servfail", None, 0, {"error": "broker.test: server failure (SERVFAIL)"}),
    ("drop", None, 0, {"error": "broker.test: no answer from DNS server 127.0.0.1 after 3 tries of 300 ms"}),
])
def test_lookup_answers_or_fails_with_a_cause_and_never_blocks(mp, mode, cname, ttl, want):
    with FakeDns(mode, cname=cname, ttl=ttl) as dns:
        out = mp.json(LOOKUP, args=[str(dns.port), "broker.test", "3"])
        queries = list(dns.queries)
    assert {k: out[k] for k in want} == want, out
    assert out["pending"] is False
    assert out["longest_poll_us"] < 20000, out  # one poll is a non-blocking recv, not a wait
    assert [q for q, _ in queries] == ["broker.test"] * (3 if mode == "drop" else 1)
    if mode == "drop":
        assert 900 <= out["ms"] < 2000 and out["polls"] > 20  # three 300 ms tries, polled all along
    assert out["literals"] == ["127.0.0.1", "10.1.2.3", None, None, None]


DEVICE = """
from sim_device import SimDevice, say
import time
d = SimDevice()
dev = d.dev
t = dev.transport
longest = [0]
turn = d.turn
def timed_turn():
    t0 = time.ticks_ms()
    turn()
    longest[0] = max(longest[0], time.ticks_diff(time.ticks_ms(), t0))
d.turn = timed_turn
d.run_until(lambda: t.counts["dns_failures"] >= 3 and dev.batches >= 2, 60)
say("dns_down", dict(d.report(), longest_turn_ms=longest[0]))
d.wait_for("dns_wrong")     # DNS answers now, with an address where no broker listens
d.run_until(lambda: t.counts["connect_failures"] >= 4, 60)
say("wrong_address", d.report())
d.wait_for("dns_fixed")
d.run_until(lambda: t.up and dev.batches >= 3 and d.drained(), 60)
say("report", dict(d.report(), longest_turn_ms=longest[0]))
"""


def test_device_through_a_dead_dns_and_a_moved_broker(tmp_path, plain_broker, pki, secrets_root, mpbuild):
    from devicerun import DeviceProcess
    from receiver_check import verifier_for, verify_all

    from mqtt_peer import Peer
    from oxilink.broker import RECEIVER_CN
    from oxilink.provision import provision_device

    ident = provision_device("dev-dns", root=secrets_root)
    peer = Peer(plain_broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/dev-dns/#")
    with (FakeDns("drop", address="127.0.0.2") as dns,
          DeviceProcess(tmp_path / "dev", DEVICE, {
              "secrets": str(ident.folder), "port": plain_broker.plain_port, "tls": False, "host": "broker.test",
              "wifi": {"outcomes": ["ok"], "join_ms": 100}, "dns_port": dns.port, "dns_timeout_ms": 500,
              "dns_tries": 2, "clock": "virtual", "batch_seconds": 30}) as dev):
        down = dev.expect("dns_down")
        dns.mode = "answer"  # 127.0.0.2: loopback, but the broker listens on 127.0.0.1 only
        dev.signal("dns_wrong")
        wrong = dev.expect("wrong_address")
        lookups_before_fix = len(dns.queries)
        dns.address = "127.0.0.1"
        dev.signal("dns_fixed")
        report = dev.finish()
    accepted, rejected = verify_all(verifier_for(tmp_path / "receiver", ident), peer.drain())
    peer.close()
    assert rejected == []
    # a dead DNS: counted, logged once, retried with backoff; the loop never waited on it
    t = down["transport"]
    assert t["dns_failures"] >= 3 and t["connects"] == 0 and t["connect_failures"] == 0
    assert down["longest_turn_ms"] < 320, down  # the FIFO's 320 ms: 93e28bd waited in getaddrinfo here
    assert down["depth"] == down["batches"] >= 2 and down["lost_samples"] == 0
    dns_errors = [line for line in dev.lines if " ERROR " in line and "resolve" in line]
    assert len(dns_errors) == 1 and "broker.test: no answer from DNS server 127.0.0.1" in dns_errors[0], dns_errors
    # a wrong address: after REFRESH_AFTER failed connects in a row the name is resolved again
    assert wrong["transport"]["connect_failures"] >= 4 and lookups_before_fix >= t["dns_failures"] + 2
    # fixed: the next lookup finds the broker, everything queued arrives, the status carries the DNS failures
    assert report["depth"] == 0 and report["lost_samples"] == 0 and report["transport"]["connects"] == 1
    assert report["queue"]["dropped"] == 0
    assert sorted(a.counter for a in accepted if a.kind == "vitals") == sorted(report["sealed"])
    status = next(a.status for a in accepted if a.kind == "status")
    assert status["dns_failures"] == t["dns_failures"] or status["dns_failures"] >= t["dns_failures"]
    assert len([line for line in dev.lines if " ERROR " in line]) == 2  # the DNS one, then the refused connect


CACHED = """
from sim_device import SimDevice, say
d = SimDevice()
dev = d.dev
t = dev.transport
d.run_until(lambda: t.up and dev.batches >= 1 and d.drained(), 60)
say("up", d.report())
d.wait_for("dns_dead")
start = d.clock.elapsed_s()
d.run_until(lambda: d.clock.elapsed_s() - start >= 70, 120)  # past the 60 s TTL, still connected
say("stale", d.report())
d.wait_for("dropped")
d.run_until(lambda: t.counts["connects"] >= 2 and t.up and dev.batches >= 4 and d.drained(), 120)
say("report", d.report())
"""


def test_a_failed_lookup_goes_on_with_the_cached_address(tmp_path, plain_broker, pki, secrets_root, mpbuild):
    """docs/transport.md: once the TTL is over the name is resolved again at the next connect; if that lookup
    fails, the device connects with the address it has rather than not at all (counted, logged once)."""
    from devicerun import DeviceProcess
    from faultproxy import FaultProxy
    from receiver_check import verifier_for, verify_all

    from mqtt_peer import Peer
    from oxilink.broker import RECEIVER_CN
    from oxilink.provision import provision_device

    ident = provision_device("dev-dns-cache", root=secrets_root)
    peer = Peer(plain_broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/dev-dns-cache/#")
    with (FakeDns("answer", address="127.0.0.1", ttl=60) as dns,
          FaultProxy(plain_broker.plain_port) as proxy,
          DeviceProcess(tmp_path / "dev", CACHED, {
              "secrets": str(ident.folder), "port": proxy.port, "tls": False, "host": "broker.test",
              "wifi": {"outcomes": ["ok"], "join_ms": 100}, "dns_port": dns.port, "dns_timeout_ms": 500,
              "dns_tries": 2, "clock": "virtual", "net_clock": "device", "batch_seconds": 30}) as dev):
        up = dev.expect("up")
        at_up = [q for q, _ in dns.queries]
        dns.mode = "drop"  # the DNS server goes away while the device is connected
        dev.signal("dns_dead")
        stale = dev.expect("stale")
        lookups = [q for q, _ in dns.queries]
        proxy.drop_all()  # the link drops: the next connect finds the address past its TTL
        dev.signal("dropped")
        report = dev.finish()
        after = [q for q, _ in dns.queries]
    accepted, rejected = verify_all(verifier_for(tmp_path / "receiver", ident), peer.drain())
    peer.close()
    assert rejected == []
    # while connected, the TTL running out asks nothing (the DNS server's first answers may take a try or two
    # on a loaded host: counts are compared phase to phase)
    was = stale["transport"]
    assert was["connects"] == up["transport"]["connects"] and lookups.count("broker.test") == \
        at_up.count("broker.test"), (at_up, lookups)
    t = report["transport"]
    assert t["dns_failures"] > was["dns_failures"] and after.count("broker.test") > lookups.count("broker.test")
    assert t["connects"] == was["connects"] + 1  # the lookup failed, and it reconnected with the cached address
    assert report["depth"] == 0 and report["lost_samples"] == 0
    assert sorted(a.counter for a in accepted if a.kind == "vitals") == sorted(report["sealed"])
