"""Issue 6 acceptance: the device never sends a vitals value or patient data in clear.

The strongest setting: a board with mqtt.tls false, so the bytes on the wire ARE the MQTT packets. Every byte
the device sends goes through FaultProxy and is parsed here: each PUBLISH payload (vitals, status) and the
Last Will in each CONNECT must be a COSE_Encrypt0 that opens with this device's key (and with no other),
and no stretch of any plaintext (batch or status CBOR) may appear anywhere in what was sent. What is in
clear by design: the device id (a pseudonym) in the client id and topics, the key id and the message
counter in the COSE header."""

from __future__ import annotations

import pytest
from devicerun import DeviceProcess
from faultproxy import FaultProxy
from mqttwire import field, mqtt_packets

from mqtt_peer import Peer
from oxilink.broker import RECEIVER_CN
from oxilink.provision import provision_device
from oxilink.sealed import SealError, decode_batch, decode_status, open_encrypt0

WINDOW = 10  # no run of this many plaintext bytes may show up in the wire bytes

SCRIPT = """
from sim_device import SimDevice, say
d = SimDevice()
t = d.dev.transport
d.run_until(lambda: t.up and d.dev.batches >= 3 and d.drained(), 40)
say("delivered", d.report())
d.wait_for("dropped")
d.run_until(lambda: t.counts["reconnects"] >= 1 and d.dev.batches >= 6 and t.up and d.drained(), 40)
say("report", d.report())
d.wait_for("done")
say("bye", {})
"""


def parse_connect(body: bytes) -> dict:
    name, at = field(body, 0)
    assert name == b"MQTT" and body[at] == 4  # MQTT 3.1.1
    flags = body[at + 1]
    client_id, at = field(body, at + 4)
    out = {"client_id": client_id.decode(), "flags": flags}
    if flags & 0x04:
        out["will_topic"], at = field(body, at)
        out["will"], at = field(body, at)
    assert at == len(body)  # no user name or password
    return out


def parse_publish(flags: int, body: bytes) -> tuple[str, bytes]:
    topic, at = field(body, 0)
    if flags & 0x06:
        at += 2  # packet id
    return topic.decode(), body[at:]


def test_every_byte_the_device_sends_is_sealed(tmp_path, plain_broker, pki, secrets_root, mpbuild):
    ident = provision_device("dev-wire", root=secrets_root)
    other = provision_device("dev-other", root=secrets_root)
    mine = lambda kid: [(ident.key, ident.base_iv)] if kid == ident.kid else []  # noqa: E731
    wrong = lambda kid: [(other.key, other.base_iv)]  # noqa: E731
    peer = Peer(plain_broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/#")
    with (FaultProxy(plain_broker.plain_port) as proxy,
          DeviceProcess(tmp_path / "dev", SCRIPT, {"secrets": str(ident.folder), "port": proxy.port,
                                                   "tls": False}) as dev):
        dev.expect("delivered")
        proxy.drop_all()  # a second connection, a re-armed will, and the broker publishing the first will
        dev.signal("dropped")
        report = dev.expect("report")
        dev.signal("done")
        dev.finish(tag="bye")
    wills = 0

    def second_will(topic, payload):  # the broker publishes it once the process has gone
        nonlocal wills
        if topic.endswith("/status"):
            wills += decode_status(open_encrypt0(payload, topic, mine).payload)["reset_cause"] == "offline"
        return wills == 2

    received = peer.collect_until(second_will)
    peer.close()

    prefix = f"oxilink/{ident.device_id}/"
    sealed: list[tuple[str, bytes]] = []  # (topic, COSE message) for every sealed thing the device sent
    kinds = []
    for stream in proxy.streams:
        for ptype, flags, body in mqtt_packets(bytes(stream)):
            kinds.append(ptype)
            if ptype == 1:  # CONNECT
                c = parse_connect(body)
                assert c["client_id"].startswith(ident.device_id + "/")  # <CN>/<board id> (docs/broker.md)
                assert c["will_topic"] == (prefix + "status").encode()
                sealed.append((prefix + "status", c["will"]))
            elif ptype == 3:  # PUBLISH
                sealed.append(parse_publish(flags, body))
            else:
                assert ptype in (12, 14), ptype  # PINGREQ, DISCONNECT: no payload at all
                assert body == b""
    assert kinds.count(1) == len(proxy.streams) >= 2

    plaintexts = []
    vitals_values = 0
    for topic, msg in sealed:
        assert topic in (prefix + "vitals", prefix + "status")
        opened = open_encrypt0(msg, topic, mine)
        with pytest.raises(SealError):
            open_encrypt0(msg, topic, wrong)  # another device's key does not open it
        if topic.endswith("/vitals"):
            batch = decode_batch(opened.payload)
            vitals_values += sum(r["hr_bpm"] is not None and r["spo2_pct"] is not None for r in batch["readings"])
        else:
            decode_status(opened.payload)
        plaintexts.append(opened.plaintext)
    n_vitals = sum(t.endswith("/vitals") for t, _ in sealed)
    assert n_vitals >= len(report["sealed"]) >= 6
    assert vitals_values > 0  # the batches carried real readings, so the check below means something

    wire = bytes(proxy.captured)
    for plain in plaintexts:
        for i in range(len(plain) - WINDOW + 1):
            assert plain[i:i + WINDOW] not in wire, f"plaintext bytes {plain[i:i + WINDOW]!r} on the wire"

    # what the broker delivered is exactly what went over the wire, and the will it published is sealed too
    wire_payloads = {msg for _, msg in sealed}
    assert received and all(payload in wire_payloads for _, payload, _ in received)
    wills = [decode_status(open_encrypt0(p, t, mine).payload) for t, p, _ in received if t.endswith("/status")]
    assert [w["reset_cause"] for w in wills].count("offline") == 2  # after the drop, and after the exit
