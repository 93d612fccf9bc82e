"""`oxilink provision` / `oxilink revoke` end to end: files and permissions, registry, generated Mosquitto
configuration, and what the broker then allows a device to do."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
from cryptography import x509

from mqtt_peer import Peer
from oxilink.broker import RECEIVER_CN, Mosquitto, free_port
from oxilink.pki import CertificateAuthority, Issued

OXILINK = os.path.join(os.path.dirname(__file__), "..", ".venv", "bin", "oxilink")

PUBLISH = """
import sys
from mqtt_link import MqttLink
from tlsconfig import client_context
def read(p):
    with open(p, "rb") as f:
        return f.read()
d, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = client_context(read(d + "/certs/device.key.der"), read(d + "/certs/device.crt.der"), read(d + "/certs/ca.der"))
link = MqttLink(d.rstrip("/").split("/")[-1] + "/board-1", "localhost", port, ssl_context=ctx, timeout_ms=3000)
try:
    link.connect(clean_session=True)
    link.send_publish(topic.encode(), b"sealed", 7)
    link.wait_puback(7)
    print("published")
except Exception as e:
    print("failed in %s: %r" % (link.phase, e))
"""


@pytest.fixture
def env(tmp_path, mpbuild):  # after mpbuild: the CLI board check runs on that build
    e = dict(os.environ, OXILINK_SECRETS=str(tmp_path / "secrets"), OXILINK_VAR=str(tmp_path / "var"),
             OXILINK_WIFI_SSID="lab-net", OXILINK_WIFI_PASSWORD="hunter2-wifi")
    return e


def oxilink(env, *args):
    return subprocess.run([OXILINK, *args], env=env, capture_output=True, text=True, timeout=120)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_provision_creates_identity_registry_and_broker_config(tmp_path, env, mpbuild):
    port = free_port()
    proc = oxilink(env, "provision", "dev-p1", "--board", "sim", "--broker", f"localhost:{port}")
    assert proc.returncode == 0, proc.stderr
    dev = tmp_path / "secrets" / "devices" / "dev-p1"
    secrets = json.loads((dev / "secrets.json").read_text())
    assert secrets["device_id"] == "dev-p1" and len(bytes.fromhex(secrets["key"])) == 16
    assert len(bytes.fromhex(secrets["base_iv"])) == 13 and secrets["wifi_ssid"] == "lab-net"
    for private in (dev / "secrets.json", dev / "device.key", dev / "certs" / "device.key.der",
                    tmp_path / "secrets" / "pki" / "ca.key"):
        assert mode(private) == 0o600, private
    for secret in (secrets["key"], secrets["base_iv"], "hunter2-wifi"):
        assert secret not in proc.stdout + proc.stderr  # never printed
    registry = json.loads((tmp_path / "secrets" / "devices.json").read_text())
    cert = x509.load_pem_x509_certificate((dev / "device.pem").read_bytes())
    entry = registry["devices"]["dev-p1"]  # what the receiver's FHIR Device says about the board
    assert (entry["board"], entry["certificate_serial"]) == ("sim", format(cert.serial_number, "x"))
    conf = (tmp_path / "secrets" / "broker" / "mosquitto.conf").read_text()
    for line in ("require_certificate true", "oxilink_identity.so", f"listener {port} 127.0.0.1",
                 "crlfile", "allow_anonymous false", "autosave_on_changes true"):
        assert line in conf
    assert "pattern write oxilink/%u/#" in (tmp_path / "secrets" / "broker" / "acl").read_text()

    again = oxilink(env, "provision", "dev-p1", "--board", "sim", "--broker", f"localhost:{port}")
    assert again.returncode == 0
    assert json.loads((dev / "secrets.json").read_text())["kid"] == secrets["kid"]  # reused, not replaced


def test_bad_device_id_and_board_are_refused(env, mpbuild):
    bad = oxilink(env, "provision", "Jane Doe", "--board", "sim")
    assert bad.returncode != 0 and "pseudonym" in bad.stderr
    missing = oxilink(env, "provision", "dev-x", "--board", "no-such-board")
    assert missing.returncode != 0 and "cannot read board file" in missing.stderr


def test_acl_and_revocation_against_the_generated_broker(tmp_path, env, mp):
    port = free_port()
    for dev in ("dev-a", "dev-b"):
        assert oxilink(env, "provision", dev, "--board", "sim", "--broker", f"localhost:{port}").returncode == 0
    secrets = tmp_path / "secrets"
    ca = CertificateAuthority(secrets / "pki")
    broker = Mosquitto(secrets / "broker", ca, port=port).start()
    receiver = Peer(broker, Issued(secrets / "pki" / "issued" / f"{RECEIVER_CN}.pem",
                                   secrets / "pki" / "issued" / f"{RECEIVER_CN}.key"), ca.cert_path)
    receiver.subscribe("oxilink/#")
    try:
        dev_a = str(secrets / "devices" / "dev-a")
        assert "published" in mp(PUBLISH, args=[dev_a, str(port), "oxilink/dev-a/vitals"])
        assert receiver.get()[0] == "oxilink/dev-a/vitals"
        # another device's topic: Mosquitto acknowledges (MQTT 3.1.1) but drops it
        assert "published" in mp(PUBLISH, args=[dev_a, str(port), "oxilink/dev-b/vitals"])
        assert "published" in mp(PUBLISH, args=[dev_a, str(port), "oxilink/dev-a/status"])  # a marker after it
        got = receiver.collect_until(lambda topic, payload: topic == "oxilink/dev-a/status")
        assert [topic for topic, _, _ in got] == ["oxilink/dev-a/status"]  # the forbidden one never came

        revoked = oxilink(env, "revoke", "dev-a")
        assert revoked.returncode == 0, revoked.stderr
        broker.stop()
        broker.start()
        out = mp(PUBLISH, args=[dev_a, str(port), "oxilink/dev-a/vitals"])
        assert "failed in tls" in out
        assert "certificate verify failed" in broker.log_tail(40)
        dev_b = str(secrets / "devices" / "dev-b")
        assert "published" in mp(PUBLISH, args=[dev_b, str(port), "oxilink/dev-b/vitals"])  # others unaffected
    finally:
        receiver.close()
        broker.stop()
    audit = oxilink(env, "audit", "verify", "--audit", str(tmp_path / "var" / "receiver" / "audit.log"))
    assert audit.returncode == 0, audit.stdout + audit.stderr
    log = (tmp_path / "var" / "receiver" / "audit.log").read_text()
    assert "dev-a" in log and "revoke" in log
