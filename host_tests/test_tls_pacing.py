"""Issue 12, the FIFO through the TLS handshake. On an ESP32 each public-key step of a TLS handshake (verify the
broker's certificate, verify its key exchange, ECDH, sign CertificateVerify) takes a few hundred ms of CPU
inside one mbedTLS call, and the MAX30102's FIFO holds 320 ms at 100 Hz. firmware/sim/tlscost.py charges
250 ms of device time for each such step as its message passes between mbedTLS and the socket; the device
clock is virtual (it moves only when the device sleeps or a step is charged), so what is measured is the
design, not the host's speed. The firmware must drain the FIFO between any two of those steps: the sensor's
overflow counter stays 0."""

from __future__ import annotations

from devicerun import DeviceProcess
from receiver_check import verifier_for, verify_all

from mqtt_peer import Peer
from oxilink.broker import RECEIVER_CN
from oxilink.provision import provision_device

SCRIPT = """
from sim_device import SimDevice, say
d = SimDevice()
dev = d.dev
t = dev.transport
d.run_until(lambda: t.up and dev.batches >= 2 and d.drained(), 60)
r = d.report()
r["events"] = d.stretch.events
say("report", r)
"""


def test_fifo_never_overflows_through_a_stretched_tls_handshake(tmp_path, broker, pki, secrets_root, mpbuild):
    ident = provision_device("dev-tls-pace", root=secrets_root)
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/dev-tls-pace/#")
    with DeviceProcess(tmp_path / "dev", SCRIPT, {"secrets": str(ident.folder), "port": broker.port,
                                                  "clock": "virtual", "tls_stretch_ms": 250, "batch_seconds": 5,
                                                  "backoff_ms": 100}) as dev:
        report = dev.finish()
    accepted, rejected = verify_all(verifier_for(tmp_path / "receiver", ident), peer.drain())
    peer.close()
    assert rejected == [] and sorted(a.counter for a in accepted if a.kind == "vitals") == sorted(report["sealed"])

    events = [tuple(e) for e in report["events"]]
    heavy = [e for e in events if e[2]]
    # One handshake: the broker's Certificate and ServerKeyExchange in, our ClientKeyExchange and
    # CertificateVerify out, each charged 250 ms of device time.
    assert [(w, k) for w, k, _, _ in heavy] == [("in", 11), ("in", 12), ("out", 16), ("out", 15)], events
    # Between any two of them the sensor was drained (drain counts differ): no mbedTLS call ran two.
    drains = [d for _, _, _, d in heavy]
    assert all(b > a for a, b in zip(drains, drains[1:], strict=False)), events
    # So the FIFO never overflowed: the sensor's overflow counter stayed 0 through boot and the handshake
    # (93e28bd: one call verified both server messages and the next computed ECDH and the signature: 68 lost).
    assert report["lost_samples"] == 0 and report["queue"]["dropped"] == 0, report
    assert report["watchdog_longest_gap_ms"] < 320, report  # longest time between two drains (device clock)
    assert report["transport"]["connects"] == 1 and report["transport"]["tls_failures"] == 0
