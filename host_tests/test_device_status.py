"""Issue 6 acceptance: the device's health status (sealed, retained on oxilink/<id>/status) and its Last Will,
decoded by the host's independent implementation (tools/oxilink/sealed.py); and the insecure mode: a board
file with mqtt.tls false talks plain MQTT to a plain Mosquitto listener, and says so loudly (a WARNING in its
log, the `insecure` flag in every status)."""

from __future__ import annotations

import re
import time

from devicerun import DeviceProcess
from faultproxy import FaultProxy

from mqtt_peer import Peer
from oxilink import paths
from oxilink.broker import RECEIVER_CN
from oxilink.provision import provision_device
from oxilink.sealed import decode_batch, decode_status, open_encrypt0

FW_VERSION = re.search(r'^FW_VERSION = "([^"]+)"', (paths.FIRMWARE / "app.py").read_text(), re.M).group(1)

# Refused (TLS failures counted), then connected (status #1), then the link is cut (the broker publishes the
# Last Will), then reconnected (status #2, reconnects 1). The device notes what it knew at each connect.
STATUS_SCRIPT = """
from sim_device import SimDevice, say
d = SimDevice()
dev = d.dev
t = dev.transport
on_connect = t.on_connect
def noting(tr):
    say("on_connect", {"tls_failures": t.counts["tls_failures"], "reconnects": t.counts["reconnects"],
                       "depth": dev.queue.depth(), "lost": dev.acq.lost,
                       "uptime_s": dev.uptime.update()})
    on_connect(tr)
t.on_connect = noting
d.run_until(lambda: t.counts["tls_failures"] >= 2 and dev.batches >= 2, 30)
say("refused", d.report())
d.wait_for("pass")
d.run_until(lambda: t.up and d.drained(), 30)
say("connected", d.report())
d.wait_for("dropped")
d.run_until(lambda: t.counts["reconnects"] >= 1 and t.up and d.drained(), 30)
say("report", d.report())
d.wait_for("done")
say("bye", {})
"""


def opened_statuses(messages, ident):
    keys = lambda kid: [(ident.key, ident.base_iv)] if kid == ident.kid else []  # noqa: E731
    out = []
    for topic, payload, retain in messages:
        opened = open_encrypt0(payload, topic, keys)  # sealed with the device key, topic-bound
        if topic == f"oxilink/{ident.device_id}/status":
            out.append((decode_status(opened.payload), retain))
        else:
            assert topic == f"oxilink/{ident.device_id}/vitals"
            decode_batch(opened.payload)
    return out


def assert_status_matches(status, noted, report, *, rssi, insecure):
    assert status["fw"] == FW_VERSION
    assert status["board"] == "sim"
    assert abs(status["uptime_s"] - noted["uptime_s"]) <= 1 and 0 <= status["uptime_s"] <= report["sim_seconds"]
    assert status["reset_cause"] == "power-on"
    assert 0 < status["free_heap"] < 4 * 1024 * 1024
    assert status["queue_depth"] == noted["depth"]
    assert status["dropped"] == 0
    assert status["fifo_overflows"] == noted["lost"]
    assert status["reconnects"] == noted["reconnects"]
    assert status["tls_failures"] == noted["tls_failures"]
    assert status["rssi"] == rssi
    assert status["insecure"] is insecure
    assert status["time"] is not None and status["time"] > time.time() - 3600


def test_status_on_connect_and_last_will(tmp_path, broker, pki, secrets_root, mpbuild):
    ident = provision_device("dev-status", root=secrets_root)
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/dev-status/status")
    with (FaultProxy(broker.port, mode="refuse") as proxy,
          DeviceProcess(tmp_path / "dev", STATUS_SCRIPT, {"secrets": str(ident.folder), "port": proxy.port,
                                                          "rssi": -61, "status_interval_s": 600}) as dev):
        refused = dev.expect("refused")
        proxy.mode = "pass"
        dev.signal("pass")
        first = dev.expect("on_connect")
        connected = dev.expect("connected")
        proxy.drop_all()  # the broker sees the link die without DISCONNECT: it publishes the Last Will
        dev.signal("dropped")
        second = dev.expect("on_connect")
        report = dev.expect("report")
        live = opened_statuses([peer.get(timeout=30) for _ in range(3)], ident)
        # the last status is retained: a receiver that subscribes later gets it at once
        late = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
        late.subscribe("oxilink/dev-status/status")
        retained = opened_statuses([late.get(timeout=5)], ident)
        late.close()
        dev.signal("done")
        dev.finish(tag="bye")  # the process ends without DISCONNECT: the broker publishes the will again
        after_exit = opened_statuses([peer.get(timeout=30)], ident)
    # and nothing else: a message sent now is the next one the receiver sees
    marker = Peer(broker, pki.issue(ident.device_id), pki.cert_path)
    marker.client.publish("oxilink/dev-status/status", b"marker", qos=1).wait_for_publish(10)
    marker.close()
    assert [payload for _, payload, _ in peer.collect_until(b"marker")] == [b"marker"]
    peer.close()
    assert refused["transport"]["tls_failures"] >= 2 and refused["depth"] >= 2
    assert first["tls_failures"] >= 2 and first["reconnects"] == 0 and first["depth"] >= 2
    assert second["reconnects"] == 1 and connected["transport"]["connects"] == 1

    statuses = [s for s, _ in live]
    assert [s["reset_cause"] for s in statuses] == ["power-on", "offline", "power-on"]
    assert_status_matches(statuses[0], first, report, rssi=-61, insecure=False)
    assert_status_matches(statuses[2], second, report, rssi=-61, insecure=False)
    will = statuses[1]
    assert will["board"] == "sim" and will["uptime_s"] == 0 and will["queue_depth"] == 0
    assert retained == [(statuses[2], True)]
    assert [s["reset_cause"] for s, _ in after_exit] == ["offline"]

    # over TLS the wire never shows MQTT in clear
    assert b"MQTT" not in proxy.captured and b"oxilink/" not in proxy.captured


INSECURE_SCRIPT = """
from sim_device import SimDevice, say
d = SimDevice()
t = d.dev.transport
d.run_until(lambda: t.up and d.dev.batches >= 2 and d.drained(), 30)
say("report", d.report())
"""


def test_plain_tcp_only_when_the_board_says_so_and_loudly(tmp_path, plain_broker, pki, secrets_root, mpbuild):
    ident = provision_device("dev-plain", root=secrets_root)
    peer = Peer(plain_broker, pki.issue(RECEIVER_CN), pki.cert_path)  # the receiver still uses TLS
    peer.subscribe("oxilink/dev-plain/#")
    with DeviceProcess(tmp_path / "dev", INSECURE_SCRIPT,
                       {"secrets": str(ident.folder), "port": plain_broker.plain_port, "tls": False}) as dev:
        report = dev.finish()
    statuses = opened_statuses(peer.drain(), ident)
    peer.close()
    warnings = [line for line in dev.lines if " WARNING " in line]
    assert len(warnings) == 1 and "NOT encrypted" in warnings[0], dev.output[-2000:]
    assert report["warnings_logged"] == 1 and report["errors_logged"] == 0
    assert report["transport"]["connects"] == 1 and report["depth"] == 0
    assert statuses and all(s["insecure"] is True for s, _ in statuses)
