"""Issue 6 acceptance, failure side: the whole device (app.Device in-process on the unix port, simulated chip
at 5x, RAM LittleFS) against real Mosquitto on loopback.

A wrong CA, an unknown or expired client certificate, and a broker that refuses the client (CONNACK 5) each
give a counted failure in the right counter, ONE clear ERROR line naming the cause, and no data loss: every
batch sealed while the link was refused stays queued and arrives, in order, once the fault is fixed.
Wi-Fi loss is counted as network_down and recovered from; a TLS board never falls back to plain MQTT.

Fixing a certificate problem on a real board means new files and a reboot (the flash queue survives that:
test_flashqueue*); here the test swaps the TLS context in place, which exercises the same queue and link.
"""

from __future__ import annotations

import datetime as dt

import pytest
from devicerun import DeviceProcess
from faultproxy import FaultProxy

from mqtt_peer import Peer
from oxilink.broker import RECEIVER_CN, Mosquitto, free_port
from oxilink.pki import CertificateAuthority
from oxilink.provision import provision_device
from oxilink.sealed import decode_batch, decode_status, open_encrypt0

FAILURE_KEYS = ("dns_failures", "connect_failures", "tls_failures", "refused", "link_lost", "network_down")

REFUSED_THEN_FIXED = """
from sim_device import SimDevice, say, tls_context
d = SimDevice()
t = d.dev.transport
key = d.opts["expect"]
d.run_until(lambda: d.dev.batches >= 3 and t.counts[key] >= 3, 40)
say("faulty", d.report())
d.wait_for("fixed")
if d.opts.get("reprovision"):
    d.dev.link.ssl_context = tls_context({"secrets": d.opts["secrets"]})
d.run_until(lambda: t.up and d.drained(), 40)
say("report", d.report())
"""


def keys_of(ident):
    return lambda kid: [(ident.key, ident.base_iv)] if kid == ident.kid else []


def collect_delivered(peer, ident, report):
    """What the receiver got, up to the last batch the device sealed (the last one it delivered: oldest first)."""
    last = report["sealed"][-1]

    def is_last(topic, payload):
        return topic.endswith("/vitals") and open_encrypt0(payload, topic, keys_of(ident)).counter == last

    return peer.collect_until(is_last)


def assert_everything_arrived(got, ident, report):
    """Every sealed batch arrived (first copies in sealing order), every message opens with the device key."""
    vitals = []
    for topic, payload, _retain in got:
        opened = open_encrypt0(payload, topic, keys_of(ident))
        if topic.endswith("/vitals"):
            decode_batch(opened.payload)
            vitals.append(opened.counter)
        else:
            decode_status(opened.payload)
    assert list(dict.fromkeys(vitals)) == report["sealed"]
    assert len(vitals) - len(report["sealed"]) <= report["transport"]["retransmitted"]


def assert_refused_and_kept(faulty, key, out, cause):
    counts = faulty["transport"]
    assert counts[key] >= 3
    assert all(counts[k] == 0 for k in FAILURE_KEYS if k != key), counts
    assert counts["connects"] == 0 and counts["published"] == 0 and counts["acked"] == 0
    # no data loss: every batch sealed so far is still queued
    assert faulty["depth"] == faulty["batches"] == len(faulty["sealed"]) >= 3
    assert faulty["queue"]["dropped"] == 0
    errors = [line for line in out.splitlines() if " ERROR " in line]
    assert len(errors) == 1, errors  # the first failure, once; the later ones are only counted
    assert f"{key} during" in errors[0] and cause in errors[0], errors[0]
    assert faulty["healthy"] and not faulty["watchdog_expired"]  # a refused link never starves the sensor


@pytest.fixture
def identity(secrets_root, request):
    return provision_device("dev-" + request.node.name[5:20].replace("_", "-").strip("-["), root=secrets_root)


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def tls_fault(tmp_path, pki, kind):
    """Device options that break the TLS identity in one way, and the cause the device must name."""
    if kind == "wrong-ca":
        rogue = CertificateAuthority(tmp_path / "rogue")
        return {"ca": write(tmp_path / "rogue-ca.der", rogue.ca_der())}, "broker certificate not trusted"
    if kind == "unknown-cert":
        rogue = CertificateAuthority(tmp_path / "rogue").issue("dev-x")
        bad = {"key": write(tmp_path / "k.der", rogue.key_der()), "cert": write(tmp_path / "c.der", rogue.cert_der())}
        return bad, "client certificate unknown, expired or revoked"
    old = pki.issue("dev-x", days=1, not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    return ({"key": write(tmp_path / "k.der", old.key_der()), "cert": write(tmp_path / "c.der", old.cert_der())},
            "client certificate unknown, expired or revoked")


@pytest.mark.parametrize("kind", ["wrong-ca", "unknown-cert", "expired-cert"])
def test_tls_identity_fault_is_counted_reported_once_and_loses_nothing(tmp_path, broker, pki, identity, kind, mpbuild):
    bad, cause = tls_fault(tmp_path, pki, kind)
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe(f"oxilink/{identity.device_id}/#")
    with DeviceProcess(tmp_path / "dev", REFUSED_THEN_FIXED,
                       {"secrets": str(identity.folder), "port": broker.port, "expect": "tls_failures",
                        "reprovision": True, **bad}) as dev:
        faulty = dev.expect("faulty")
        assert peer.messages.empty()  # nothing got through
        assert_refused_and_kept(faulty, "tls_failures", dev.output, cause)
        dev.signal("fixed")  # the device gets a good identity
        report = dev.finish()
    got = collect_delivered(peer, identity, report)
    peer.close()
    assert report["depth"] == 0 and report["transport"]["connects"] == 1
    assert report["errors_logged"] == 1 and not report["watchdog_expired"]
    assert set(report["sealed"]) >= set(faulty["sealed"])
    assert_everything_arrived(got, identity, report)


def test_broker_refusing_the_client_is_counted_and_loses_nothing(tmp_path, broker, pki, identity, mpbuild):
    """Mosquitto's `clientid_prefixes` (an operator allowing only one fleet's client ids) answers our CONNECT
    with CONNACK 5 "not authorized" over a perfectly good TLS session. Fixing the broker's configuration
    lets the queued data through. The receiver (a client id the prefix allows) subscribes first: the device
    keeps retrying while it waits, so it delivers as soon as the broker lets it."""
    broker.stop()
    broker.extra_config = [f"clientid_prefixes {RECEIVER_CN}/"]  # lets the receiver in, not the device
    broker.write_config()
    broker.start()
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe(f"oxilink/{identity.device_id}/#")
    with DeviceProcess(tmp_path / "dev", REFUSED_THEN_FIXED,
                       {"secrets": str(identity.folder), "port": broker.port, "expect": "refused"}) as dev:
        faulty = dev.expect("faulty")
        assert_refused_and_kept(faulty, "refused", dev.output, "broker refused the connection: not authorized")
        assert "not authorised" in broker.log_tail(200).lower() or "not authorized" in broker.log_tail(200).lower()
        assert peer.messages.empty()
        broker.extra_config = []
        broker.write_config()
        broker.reload()  # clientid_prefixes is re-read on SIGHUP
        dev.signal("fixed")
        report = dev.finish()
    got = collect_delivered(peer, identity, report)
    peer.close()
    assert report["depth"] == 0 and report["transport"]["connects"] == 1 and report["errors_logged"] == 1
    assert_everything_arrived(got, identity, report)


WIFI_LOSS = """
from sim_device import SimDevice, say
d = SimDevice()
t = d.dev.transport
d.run_until(lambda: t.up and d.dev.batches >= 1 and d.drained(), 30)
say("online", d.report())
d.network.available = False  # Wi-Fi lost while connected
n = d.dev.batches
d.run_until(lambda: d.dev.batches >= n + 3, 30)
say("offline", d.report())
d.network.available = True
d.run_until(lambda: t.up and d.drained(), 30)
say("report", d.report())
"""


def test_wifi_loss_is_counted_keeps_data_and_recovers(tmp_path, broker, pki, identity, mpbuild):
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe(f"oxilink/{identity.device_id}/#")
    with DeviceProcess(tmp_path / "dev", WIFI_LOSS, {"secrets": str(identity.folder), "port": broker.port}) as dev:
        online = dev.expect("online")
        offline = dev.expect("offline")
        report = dev.finish()
    got = collect_delivered(peer, identity, report)
    peer.close()
    assert online["transport"]["up"] and online["depth"] == 0
    t = offline["transport"]
    assert not t["up"] and t["network_down"] >= 2  # the drop, then every retry while the radio is down
    assert t["link_lost"] == 0 and t["tls_failures"] == 0 and t["connect_failures"] == 0
    assert offline["depth"] == offline["batches"] - online["batches"] >= 3  # everything made offline is kept
    assert report["depth"] == 0 and report["transport"]["reconnects"] == 1
    assert report["errors_logged"] == 0  # after the first connect, outages are counted, not logged as errors
    assert report["healthy"] and not report["watchdog_expired"]
    assert_everything_arrived(got, identity, report)


NEVER_PLAIN = """
from sim_device import SimDevice, say
d = SimDevice()
t = d.dev.transport
d.run_until(lambda: d.dev.batches >= 2 and t.counts["tls_failures"] >= 3, 30)
say("report", d.report())
"""


def test_tls_board_never_falls_back_to_plain(tmp_path, pki, identity, mpbuild):
    """A TLS board pointed at a plain MQTT listener: every connection starts a TLS handshake, no MQTT byte
    ever goes out in clear, nothing reaches the broker, everything stays queued."""
    plain = Mosquitto(tmp_path / "plain-broker", pki, plain_port=free_port())
    with plain:
        peer = Peer(plain, pki.issue(RECEIVER_CN), pki.cert_path)
        peer.subscribe("oxilink/#")
        with (FaultProxy(plain.plain_port) as proxy,
              DeviceProcess(tmp_path / "dev", NEVER_PLAIN, {"secrets": str(identity.folder),
                                                            "port": proxy.port}) as dev):
            report = dev.finish()
        marker = Peer(plain, pki.issue(identity.device_id), pki.cert_path)  # the genuine identity, over TLS
        marker.client.publish(f"oxilink/{identity.device_id}/status", b"marker", qos=1).wait_for_publish(10)
        marker.close()
        got = peer.collect_until(b"marker")
        peer.close()
    assert [payload for _, payload, _ in got] == [b"marker"]  # nothing from the device came before it
    t = report["transport"]
    assert t["tls_failures"] >= 3 and t["connects"] == 0 and t["refused"] == 0
    assert report["depth"] == report["batches"] >= 2
    assert len(proxy.streams) >= 3
    for stream in proxy.streams:
        assert stream[:3] == b"\x16\x03\x01" or stream[:3] == b"\x16\x03\x03"  # a TLS ClientHello record
    assert b"MQTT" not in proxy.captured  # no CONNECT (protocol name "MQTT") ever sent in clear


def test_tls_board_without_tls_context_refuses_to_start(tmp_path, identity, mpbuild):
    dev = DeviceProcess(tmp_path / "dev", "from sim_device import SimDevice\nSimDevice()\n",
                        {"secrets": str(identity.folder), "port": 1, "no_tls_context": True})
    dev.proc.wait(30)
    dev._reader.join(5)
    assert dev.proc.returncode != 0
    assert "ValueError" in dev.output and "mqtt.tls is true but no TLS context" in dev.output
