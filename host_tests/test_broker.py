"""The broker setup every later stage relies on: real Mosquitto, mutual TLS with EC P-256 certificates,
identity from the certificate, per-device ACL, CRL. The device side is the real umqtt.simple on the unix port."""

from __future__ import annotations

import pytest
from conftest import write_der

from oxilink.pki import CertificateAuthority

DEVICE_PUBLISH = """
import sys
from umqtt.simple import MQTTClient
def der(p):
    with open(p, "rb") as f:
        return f.read()
key, cert, ca, port, topic = sys.argv[1:6]
client_id = sys.argv[6] if len(sys.argv) > 6 else topic.split("/")[1] + "/board-1"  # <CN>/<suffix>
c = MQTTClient(client_id, "localhost", port=int(port), ssl=True,
               ssl_params=dict(key=der(key), cert=der(cert), cadata=der(ca), cert_reqs=2,
                               server_hostname="localhost"))
c.connect()
c.publish(topic.encode(), b"sealed-bytes", qos=1)
c.disconnect()
print("published")
"""


def assert_first_message_is_a_genuine_one(mp, tmp_path, broker, pki, receiver) -> None:
    """Whatever was refused before did not get through: a genuine device's message, sent afterwards, is the
    first one the receiver sees (absence proven by order, not by a quiet window)."""
    good = tmp_path / "genuine"
    good.mkdir()
    mp(DEVICE_PUBLISH, args=[*write_der(good, pki.issue("dev-g"), pki), str(broker.port), "oxilink/dev-g/vitals"])
    got = receiver.collect_until(lambda topic, payload: topic == "oxilink/dev-g/vitals")
    assert [topic for topic, _, _ in got] == ["oxilink/dev-g/vitals"]


def test_device_publishes_over_mutual_tls(mp, tmp_path, broker, pki, receiver):
    files = write_der(tmp_path, pki.issue("dev-a"), pki)
    out = mp(DEVICE_PUBLISH, args=[*files, str(broker.port), "oxilink/dev-a/vitals"], heapsize="100K")
    assert "published" in out
    assert receiver.get() == ("oxilink/dev-a/vitals", b"sealed-bytes", False)


def test_device_cannot_publish_to_another_devices_topic(mp, tmp_path, broker, pki, receiver):
    files = write_der(tmp_path, pki.issue("dev-a"), pki)
    mp(DEVICE_PUBLISH, args=[*files, str(broker.port), "oxilink/dev-b/vitals", "dev-a/1"])  # PUBACKed, dropped
    mp(DEVICE_PUBLISH, args=[*files, str(broker.port), "oxilink/dev-a/vitals"])
    # only its own topic came through: the forbidden message, sent first, did not arrive before this one
    got = receiver.collect_until(lambda topic, payload: topic == "oxilink/dev-a/vitals")
    assert [topic for topic, _, _ in got] == ["oxilink/dev-a/vitals"]


def test_certificate_from_another_ca_is_refused(mp, tmp_path, broker, pki, receiver):
    rogue = CertificateAuthority(tmp_path / "rogue")
    files = write_der(tmp_path, rogue.issue("dev-a"), pki)
    proc = mp(DEVICE_PUBLISH, args=[*files, str(broker.port), "oxilink/dev-a/vitals"], expect_fail=True)
    assert "OSError" in proc.stdout + proc.stderr
    assert "certificate verify failed" in broker.log_tail(50)
    assert_first_message_is_a_genuine_one(mp, tmp_path, broker, pki, receiver)


def test_device_refuses_a_broker_signed_by_another_ca(mp, tmp_path, broker, pki):
    rogue = CertificateAuthority(tmp_path / "rogue")
    key, cert, _ = write_der(tmp_path, pki.issue("dev-a"), pki)
    (tmp_path / "rogue.der").write_bytes(rogue.ca_der())
    proc = mp(DEVICE_PUBLISH, args=[key, cert, str(tmp_path / "rogue.der"), str(broker.port), "oxilink/dev-a/x"],
              expect_fail=True)
    assert "not correctly signed by the trusted CA" in proc.stdout + proc.stderr


def test_revoked_device_can_no_longer_connect(mp, tmp_path, broker, pki, receiver):
    issued = pki.issue("dev-r")
    files = write_der(tmp_path, issued, pki)
    mp(DEVICE_PUBLISH, args=[*files, str(broker.port), "oxilink/dev-r/vitals"])
    assert receiver.get()[0] == "oxilink/dev-r/vitals"
    pki.write_crl([pki.serial_of(issued.cert)])
    broker.stop()
    broker.start()
    try:
        proc = mp(DEVICE_PUBLISH, args=[*files, str(broker.port), "oxilink/dev-r/vitals"], expect_fail=True)
        assert "OSError" in proc.stdout + proc.stderr
        assert "certificate verify failed" in broker.log_tail(50)  # the same certificate worked before the CRL
    finally:
        pki.write_crl([])


def test_a_revocation_reaches_a_running_broker_on_reload(mp, tmp_path, broker, pki, receiver):
    """What `oxilink revoke` does to a running `oxilink broker` (SIGHUP, cmd_provision.reload_running_broker):
    the new CRL applies without a restart, and the receiver's session is kept."""
    import time

    issued = pki.issue("dev-h")
    files = write_der(tmp_path, issued, pki)
    mp(DEVICE_PUBLISH, args=[*files, str(broker.port), "oxilink/dev-h/vitals"])
    assert receiver.get()[0] == "oxilink/dev-h/vitals"
    pid = broker.proc.pid
    reloads = broker.log.read_text(errors="replace").count("Reloading config")
    pki.write_crl([pki.serial_of(issued.cert)])
    broker.reload()
    deadline = time.monotonic() + 10
    while broker.log.read_text(errors="replace").count("Reloading config") == reloads:
        assert time.monotonic() < deadline, broker.log_tail()
        time.sleep(0.05)
    try:
        proc = mp(DEVICE_PUBLISH, args=[*files, str(broker.port), "oxilink/dev-h/vitals"], expect_fail=True)
        assert "OSError" in proc.stdout + proc.stderr
        assert "certificate verify failed" in broker.log_tail(50)
        assert broker.proc.pid == pid  # the same process: reloaded, not restarted
    finally:
        pki.write_crl([])
        broker.reload()


DEVICE_HANDSHAKE = """
import sys, socket
from tlsconfig import client_context
def der(p):
    with open(p, "rb") as f:
        return f.read()
key, cert, ca, port = sys.argv[1:5]
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", int(port))[0][-1])
t = client_context(der(key), der(cert), der(ca)).wrap_socket(s, server_hostname="localhost")
t.write(b"hello")
print(t.read(2))
t.close()
"""


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # ssl.TLSVersion.TLSv1/TLSv1_1: deprecated, the point
def test_tls_versions_boards_negotiate_1_2_and_the_broker_allows_1_2_and_1_3(mp, tmp_path, broker, pki):
    """`tls_version tlsv1.2` is Mosquitto's minimum. The firmware's TLS (MicroPython's mbedTLS, TLS 1.2 only,
    as ESP32 builds: sdkconfig has no MBEDTLS_SSL_PROTO_TLS1_3) negotiates 1.2 against a server offering 1.3;
    the broker accepts 1.2 and 1.3 (the receiver, CPython), and refuses anything older."""
    import socket
    import ssl
    import threading

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # a server offering everything OpenSSL allows, 1.3 included
    ctx.load_cert_chain(broker.folder / "server.pem", broker.folder / "server.key")
    ctx.load_verify_locations(pki.cert_path)
    ctx.verify_mode = ssl.CERT_REQUIRED
    seen = {}
    with socket.create_server(("127.0.0.1", 0)) as server:
        def serve():
            conn, _ = server.accept()
            with ctx.wrap_socket(conn, server_side=True) as t:
                seen["version"] = t.version()
                t.recv(5)
                t.sendall(b"ok")
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        files = write_der(tmp_path, pki.issue("dev-tls"), pki)
        assert "b'ok'" in mp(DEVICE_HANDSHAKE, args=[*files, str(server.getsockname()[1])])
        thread.join(10)
    assert seen["version"] == "TLSv1.2"

    dev = pki.issue("dev-tls-py")

    def handshake(minimum, maximum) -> str:
        c = ssl.create_default_context(cafile=str(pki.cert_path))
        c.load_cert_chain(dev.cert, dev.key)
        c.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions: the broker must say no
        c.minimum_version, c.maximum_version = minimum, maximum
        with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as s, \
                c.wrap_socket(s, server_hostname="localhost") as t:
            return t.version()

    V = ssl.TLSVersion
    assert handshake(V.TLSv1_2, V.TLSv1_2) == "TLSv1.2"
    assert handshake(V.TLSv1_2, V.TLSv1_3) == "TLSv1.3"
    for old in (V.TLSv1, V.TLSv1_1):
        with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):  # the broker's alert, not our refusal
            handshake(old, old)
