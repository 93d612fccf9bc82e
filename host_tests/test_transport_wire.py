"""What the transport puts on the wire, parsed from the bytes a FaultProxy forwarded (docs/transport.md,
"Delivery"): a plain-TCP link to Mosquitto's plain listener, so the proxy sees the MQTT packets themselves.

- DUP on retransmit: PUBLISHes whose PUBACKs were lost go out again after reconnecting into the persistent
  session with the DUP flag set and the same packet ids; new records never carry DUP.
- Keepalive and half-open links: an idle link sends PINGREQ every keepalive_s / 2; when the proxy stops
  forwarding without closing anything (no FIN, no RST: a half-open link), the device notices within
  keepalive_s / 2 + the link timeout of its last answer from the broker, drops the link and rebuilds it;
  the broker, hearing nothing, gives up on it after 1.5 x keepalive_s and publishes its Last Will."""

from __future__ import annotations

import time

from devicerun import DeviceProcess
from faultproxy import FaultProxy
from mqttwire import mqtt_packets, publishes

from mqtt_peer import Peer
from oxilink.broker import RECEIVER_CN

DEVICE = """
import json, sys, time
from sim_device import say, exists
from transport import Transport
from backoff import Backoff
from mqtt_link import MqttLink
from device_link import mount_queue

with open(sys.argv[1]) as f:
    o = json.load(f)
bd, q = mount_queue()
link = MqttLink(o["id"], "localhost", o["port"], keepalive=o["keepalive"], timeout_ms=o["timeout_ms"])
if o.get("will"):
    link.set_last_will(("oxilink/%s/status" % o["id"]).encode(), o["will"].encode(), qos=1)
pings = []  # ticks_ms of every PINGRESP received
ping = link.ping_and_wait
def timed_ping():
    ping()
    pings.append(time.ticks_ms())
link.ping_and_wait = timed_ping
t = Transport(link, q, o["id"], backoff=Backoff(100, 400))

def run(cond, limit_s=30):
    start = time.ticks_ms()
    while not cond():
        if time.ticks_diff(time.ticks_ms(), start) > limit_s * 1000:
            return False
        t.step()
        time.sleep_ms(5)
    return True

def state(**kw):
    now = time.ticks_ms()
    kw.update(stats=t.stats(), depth=q.depth(), pings=len(pings),
              ping_gaps=[time.ticks_diff(b, a) for a, b in zip(pings, pings[1:])],
              since_last_ping=time.ticks_diff(now, pings[-1]) if pings else None)
    return kw
"""

DUP_SCRIPT = DEVICE + """
run(lambda: t.up)
say("connected", state())
run(lambda: exists("oneway"))
for i in range(5):
    q.put(b"rec-%d" % i)
run(lambda: t.counts["link_lost"] >= 1)  # no PUBACK within the link timeout
say("lost", state())
run(lambda: exists("pass"))
run(lambda: t.up and q.depth() == 0)
q.put(b"rec-5")  # a new record after the retransmission
run(lambda: q.depth() == 0)
say("report", state())
"""


def receiver_peer(broker, pki, device_id):
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe(f"oxilink/{device_id}/#")
    return peer


def test_retransmitted_publishes_carry_dup_and_the_same_packet_ids(tmp_path, plain_broker, pki, mpbuild):
    peer = receiver_peer(plain_broker, pki, "dev-dup")
    with (FaultProxy(plain_broker.plain_port) as proxy,
          DeviceProcess(tmp_path / "dev", DUP_SCRIPT, {"id": "dev-dup", "port": proxy.port, "keepalive": 60,
                                                       "timeout_ms": 1000}) as dev):
        dev.expect("connected")
        proxy.mode = "oneway"  # the broker gets every PUBLISH; its PUBACKs never come back
        dev.signal("oneway")
        lost = dev.expect("lost")
        proxy.mode = "pass"
        dev.signal("pass")
        report = dev.finish()
    got = [payload for _, payload, _ in peer.collect_until(b"rec-5")]
    peer.close()
    assert lost["stats"]["link_lost"] == 1 and lost["depth"] == 5 and lost["stats"]["acked"] == 0

    sent = [publishes(bytes(s)) for s in proxy.streams]
    with_publishes = [p for p in sent if p]
    assert len(with_publishes) == 2, sent  # the first connection, and the one after the fault was cleared
    first, again = with_publishes
    records = [b"rec-%d" % i for i in range(5)]
    assert [p["payload"] for p in first] == records
    assert all(p["qos"] == 1 and not p["dup"] for p in first)  # first transmissions: DUP clear
    pids = [p["pid"] for p in first]
    assert len(set(pids)) == 5 and 1 not in pids  # distinct, and never the status message's id 1
    retransmitted, new = again[:5], again[5:]
    assert [p["payload"] for p in retransmitted] == records
    assert [p["pid"] for p in retransmitted] == pids  # the same MQTT messages ...
    assert all(p["qos"] == 1 and p["dup"] for p in retransmitted)  # ... marked as re-sent
    assert [(p["payload"], p["dup"]) for p in new] == [(b"rec-5", False)]
    assert new[0]["pid"] not in pids
    # connections in between (CONNACK swallowed) never got as far as publishing
    for stream in proxy.streams[1:-1]:
        assert [ptype for ptype, _, _ in mqtt_packets(bytes(stream))] == [1]  # CONNECT only
    assert report["stats"]["retransmitted"] == 5 and report["stats"]["published"] == 6
    assert report["stats"]["acked"] == 6 and report["depth"] == 0
    # the broker forwarded both copies: the receiver sees duplicates, and de-duplicates by message counter
    assert got.count(b"rec-0") == 2 and set(got) == {*records, b"rec-5"}


KEEPALIVE_S = 4
TIMEOUT_MS = 1500

HALF_OPEN_SCRIPT = DEVICE + """
q.put(b"before")
run(lambda: t.up and q.depth() == 0 and len(pings) >= 2)  # idle: two keepalive rounds answered
say("alive", state())
run(lambda: exists("stall"))
run(lambda: not t.up, 20)
say("down", state(last_error=t.last_error, up=t.up))
run(lambda: exists("pass"))
q.put(b"after")
run(lambda: t.up and q.depth() == 0)
say("report", state())
"""


def test_half_open_link_is_detected_within_the_keepalive_bound_and_rebuilt(tmp_path, plain_broker, pki, mpbuild):
    peer = receiver_peer(plain_broker, pki, "dev-ka")
    opts = {"id": "dev-ka", "keepalive": KEEPALIVE_S, "timeout_ms": TIMEOUT_MS, "will": "offline"}
    with (FaultProxy(plain_broker.plain_port) as proxy,
          DeviceProcess(tmp_path / "dev", HALF_OPEN_SCRIPT, {**opts, "port": proxy.port}) as dev):
        alive = dev.expect("alive")
        proxy.mode = "stall"  # nothing forwarded either way, and nothing closed: a half-open link
        stalled_at = time.monotonic()
        dev.signal("stall")
        down = dev.expect("down")
        connections_while_stalled = proxy.connections
        # the broker's side of the same link: silence, then the Last Will (the proxy still holds it open)
        before_will = [payload for _, payload, _ in peer.collect_until(b"offline", timeout=30)]
        will_after_s = time.monotonic() - stalled_at
        # The connect attempts the stalled proxy accepted meanwhile are dead on the device's side; forwarded
        # late, their CONNECTs (same client id) would take the new session over. Cut them, then heal.
        proxy.drop_all()
        proxy.mode = "pass"
        dev.signal("pass")
        report = dev.finish()
    after = [payload for _, payload, _ in peer.collect_until(b"after")]
    peer.close()

    # keepalive: an idle link pings every keepalive_s / 2 (plus the round trip), on the wire too
    assert alive["pings"] >= 2
    for gap in alive["ping_gaps"]:
        assert KEEPALIVE_S * 500 - 50 <= gap <= KEEPALIVE_S * 500 + 1000, alive["ping_gaps"]  # (times of answers)
    first_stream = [ptype for ptype, _, _ in mqtt_packets(bytes(proxy.streams[0]))]
    assert first_stream.count(12) >= alive["pings"]  # PINGREQ
    # half-open: found by the unanswered PINGREQ, not by a closed socket, within the bound
    assert not down["up"] and down["stats"]["link_lost"] == 1, down
    assert "timed out" in down["last_error"], down["last_error"]
    assert connections_while_stalled == 1  # the link went down with its one connection still open
    bound_ms = KEEPALIVE_S * 500 + TIMEOUT_MS
    assert down["since_last_ping"] <= bound_ms + 250, (down["since_last_ping"], bound_ms)
    # the broker dropped the silent client after 1.5 x keepalive (counted from its last packet, at most
    # keepalive_s / 2 before the stall) and published the will
    assert before_will == [b"before", b"offline"]
    assert KEEPALIVE_S * 1.5 - KEEPALIVE_S / 2 - 0.5 <= will_after_s <= KEEPALIVE_S * 1.5 + 2, will_after_s
    # rebuilt: a new connection, and the record made afterwards arrives
    assert report["stats"]["reconnects"] >= 1 and report["depth"] == 0
    assert len(proxy.streams) >= 2
    assert [p for p in after if p != b"offline"] == [b"after"]  # (cut attempts may add wills)
