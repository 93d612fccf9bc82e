"""`oxilink broker` for real boards: it listens where told (127.0.0.2 and 127.0.0.3 here, never 127.0.0.1 by
default), its certificate names every broker name boards were provisioned with, a name provisioned while
it runs is reissued and reloaded without a restart, and a board provisioned for a *name* that resolves to
127.0.0.2 delivers to `oxilink receive` over mutual TLS.

The name: this machine's /etc/hosts may not be edited, so the firmware resolves `broker.ward.test` through
host_tests/resolver/hostsfile.c (an LD_PRELOAD getaddrinfo reading a hosts file of the test's own), the way
a board resolves it through the ward's DNS. Host-side clients connect by IP and check the name with SNI.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oxilink import mprun, paths
from oxilink.broker import certificate_names, free_port, running_pid
from oxilink.simulate import DEVICE_HEAP

ROOT = Path(__file__).resolve().parents[1]
OXILINK = [sys.executable, "-m", "oxilink.cli"]
RESOLVER = ROOT / "host_tests" / "resolver" / "hostsfile.c"


@pytest.fixture(scope="session")
def hostsfile_libs() -> dict[str, Path]:
    """The resolver shim for each MicroPython build: 64-bit (stock) and 32-bit (esp32like)."""
    folder = paths.BUILD / "hostsfile"
    out = {"stock": folder / "hostsfile64.so", "esp32like": folder / "hostsfile32.so"}
    out["stock"].parent.mkdir(parents=True, exist_ok=True)
    for build, lib in out.items():
        if not lib.exists() or lib.stat().st_mtime < RESOLVER.stat().st_mtime:
            subprocess.run(["gcc", *(["-m32"] if build == "esp32like" else []), "-shared", "-fPIC", "-O2", "-Wall",
                            "-Werror", "-o", str(lib), str(RESOLVER), "-ldl"], check=True)
    return out


@pytest.fixture
def site(tmp_path, mpbuild):  # after mpbuild: the CLI's board check runs on that build
    """A fresh deployment's secrets/ and var/, and a hosts file naming the ward's broker."""
    env = dict(os.environ, OXILINK_SECRETS=str(tmp_path / "secrets"), OXILINK_VAR=str(tmp_path / "var"),
               OXILINK_WIFI_SSID="ward-iot", OXILINK_WIFI_PASSWORD="not-used-on-unix")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.2 broker.ward.test\n127.0.0.3 ward2.example.test\n")
    return env, hosts


def cli(env, *args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*OXILINK, *args], env=env, capture_output=True, text=True, timeout=120, **kw)


def listening(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def tls_names_ok(tmp_path, address: str, port: int, name: str) -> str:
    """The TLS version if a client checking `name` completes a mutual-TLS handshake at address, else the error."""
    pki = tmp_path / "secrets" / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    ctx.load_cert_chain(pki / "issued" / "oxilink-receiver.pem", pki / "issued" / "oxilink-receiver.key")
    try:
        with socket.create_connection((address, port), timeout=5) as s, ctx.wrap_socket(s, server_hostname=name) as t:
            return t.version()
    except (ssl.SSLError, OSError) as e:
        return f"error: {e}"


def start_device(env, hostsfile_libs, mpbuild, hosts, folder: Path, seconds: int) -> subprocess.Popen:
    device_env = dict(env, LD_PRELOAD=str(hostsfile_libs[mpbuild]), OXILINK_TEST_HOSTS=str(hosts),
                      MICROPYPATH=mprun.micropypath())
    return subprocess.Popen(mprun.command(paths.FIRMWARE / "sim" / "run_device.py",
                                          ["--secrets", str(folder), "--speed", "5", "--duration", str(seconds),
                                           "--batch-seconds", "5", "--grace", "60"], DEVICE_HEAP, mpbuild),
                            env=device_env, cwd=paths.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def stats(tmp_path) -> dict:
    try:
        return json.loads((tmp_path / "var" / "receiver" / "stats.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_listen_addresses_are_required_and_never_silently_every_interface(tmp_path, site, mpbuild):
    env, _ = site
    port = free_port("127.0.0.2")
    assert cli(env, "provision", "dev-l1", "--board", "sim", "--broker", f"broker.ward.test:{port}").returncode == 0
    missing = cli(env, "broker")
    assert missing.returncode == 2 and "--listen" in missing.stderr
    every = cli(env, "broker", "--listen", "0.0.0.0", "--print-config")  # printed, not run: tests stay on loopback
    assert every.returncode == 0 and "WARNING: listening on 0.0.0.0" in every.stderr
    assert f"listener {port} 0.0.0.0" in every.stdout
    two = cli(env, "broker", "--listen", "127.0.0.2", "--listen", "127.0.0.3", "--print-config")
    listeners = [line for line in two.stdout.splitlines() if line.startswith("listener ")]
    assert listeners == [f"listener {port} 127.0.0.2", f"listener {port} 127.0.0.3"]
    for line in ("require_certificate true", "autosave_on_changes true", "autosave_interval 1", "oxilink_identity.so"):
        assert line in two.stdout
    unknown = cli(env, "broker", "--listen", "no-such-host.invalid")
    assert unknown.returncode == 2 and "cannot resolve" in unknown.stderr


def test_a_board_provisioned_for_a_name_reaches_the_broker_and_new_names_are_reissued_live(
        tmp_path, site, hostsfile_libs, mpbuild):
    env, hosts = site
    port = free_port("127.0.0.2")
    prov = cli(env, "provision", "dev-w1", "--board", "sim", "--broker", f"broker.ward.test:{port}")
    assert prov.returncode == 0, prov.stderr
    broker = subprocess.Popen([*OXILINK, "broker", "--listen", "127.0.0.2", "--listen", "127.0.0.3"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    receiver = None
    try:
        deadline = time.monotonic() + 20
        while not (listening("127.0.0.2", port) and listening("127.0.0.3", port)):
            assert time.monotonic() < deadline and broker.poll() is None, broker.stdout.read() if broker.poll() else ""
            time.sleep(0.1)
        assert not listening("127.0.0.1", port)  # only where it was told
        pid_file = tmp_path / "secrets" / "broker" / "mosquitto.pid"
        assert running_pid(pid_file) == broker.pid  # `oxilink broker` became Mosquitto (signals reach it)
        assert tls_names_ok(tmp_path, "127.0.0.2", port, "broker.ward.test").startswith("TLSv1.")
        assert tls_names_ok(tmp_path, "127.0.0.3", port, "127.0.0.3").startswith("TLSv1.")
        assert "certificate verify failed" in tls_names_ok(tmp_path, "127.0.0.2", port, "ward2.example.test")

        # the receiver, host side, by IP (the certificate names 127.0.0.2 too)
        receiver = subprocess.Popen([*OXILINK, "receive", "--broker", f"127.0.0.2:{port}", "--stats-every", "0.2",
                                     "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
        while not stats(tmp_path).get("subscribed"):
            assert receiver.poll() is None, receiver.stderr.read()
            time.sleep(0.1)

        # a second name, provisioned while the broker runs: reissued, reloaded, same process
        prov2 = cli(env, "provision", "dev-w2", "--board", "sim", "--broker", f"ward2.example.test:{port}")
        assert prov2.returncode == 0, prov2.stderr
        assert f"broker (pid {broker.pid}) reloaded" in prov2.stdout
        names = certificate_names(tmp_path / "secrets" / "broker" / "server.pem")
        assert {"broker.ward.test", "ward2.example.test", "127.0.0.2", "127.0.0.3"} <= names
        deadline = time.monotonic() + 10
        while "TLS" not in tls_names_ok(tmp_path, "127.0.0.3", port, "ward2.example.test"):
            assert time.monotonic() < deadline, "the running broker did not pick up the reissued certificate"
            time.sleep(0.2)
        assert broker.poll() is None and running_pid(pid_file) == broker.pid

        # both boards boot from their provisioned secrets and resolve their broker's name
        devices = {d: start_device(env, hostsfile_libs, mpbuild, hosts, tmp_path / "secrets" / "devices" / d, 30)
                   for d in ("dev-w1", "dev-w2")}
        reports = {}
        for d, proc in devices.items():
            out, _ = proc.communicate(timeout=240)
            assert proc.returncode == 0, out[-3000:]
            reports[d] = json.loads(out.strip().splitlines()[-1])
        want = sum(r["readings"] for r in reports.values())
        deadline = time.monotonic() + 30
        while stats(tmp_path).get("readings_stored", 0) < want:
            assert time.monotonic() < deadline, (stats(tmp_path), reports)
            time.sleep(0.2)
        got = stats(tmp_path)
        assert got["readings_stored"] == want and got["rejected"] == 0
        assert all(r["transport"]["tls_failures"] == 0 for r in reports.values())
    finally:
        if receiver:
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(30)
        broker.terminate()
        broker.wait(10)
    print(json.dumps({d: {"batches": len(r["vitals_counters"]), "readings": r["readings"]}
                      for d, r in reports.items()}))


@pytest.mark.parametrize("mpbuild", ["esp32like"], indirect=True)
def test_a_double_deployed_for_a_ward_name_delivers_through_oxilink_broker(tmp_path, site, mpbuild):
    """Issue 13's acceptance on the board double: a device provisioned for broker.ward.test, a name that
    resolves to 127.0.0.2 on the ward's network (the double's DNS); `oxilink broker` listening there; the
    erased double gets the firmware with the real mpremote (`oxilink deploy`), boots, sets its clock by SNTP,
    checks the broker's name in its certificate, and its readings reach `oxilink receive` over mutual TLS."""
    from oxilink.double import AccessPoint, Board
    from oxilink.double.sntpserver import SntpServer

    env, _ = site
    port = free_port("127.0.0.2")
    with SntpServer() as sntp:
        prov = cli(env, "provision", "dev-ward", "--board", "esp32-devkitc", "--broker", f"broker.ward.test:{port}",
                   "--ntp", sntp.address)
        assert prov.returncode == 0, prov.stderr
        broker = subprocess.Popen([*OXILINK, "broker", "--listen", "127.0.0.2"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.STDOUT)
        receiver = None
        try:
            deadline = time.monotonic() + 20
            while not listening("127.0.0.2", port):
                assert time.monotonic() < deadline and broker.poll() is None
                time.sleep(0.1)
            receiver = subprocess.Popen([*OXILINK, "receive", "--broker", f"127.0.0.2:{port}", "--stats-every",
                                         "0.2", "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            ap = AccessPoint(ssid=env["OXILINK_WIFI_SSID"], password=env["OXILINK_WIFI_PASSWORD"], connect_s=0.5)
            with Board(tmp_path / "board", ap=ap, rate=3, dns={"broker.ward.test": {"ip": "127.0.0.2"}}) as b:
                b.expect(">>> ", 30)  # erased
                deploy = subprocess.run([*OXILINK, "deploy", "--board", "esp32-devkitc", "--device", "dev-ward",
                                         "--port", b.url, "--arch", b.mpy_arch], env=env, capture_output=True,
                                        text=True, timeout=240)
                assert deploy.returncode == 0, deploy.stdout + deploy.stderr
                assert deploy.stdout.count(" connect ") == 1  # one mpremote session
                b.expect(rf"connected to broker broker\.ward\.test:{port}", 90)
                deadline = time.monotonic() + 120
                while stats(tmp_path).get("readings_stored", 0) < 60:  # two 30 s batches
                    assert time.monotonic() < deadline, (stats(tmp_path), b.output[-2000:])
                    time.sleep(0.5)
                assert ("127.0.0.2", port) in b.resolved  # the ward DNS answer the board connected through
        finally:
            if receiver:
                receiver.send_signal(signal.SIGTERM)
                receiver.wait(30)
            broker.terminate()
            broker.wait(10)
    got = stats(tmp_path)
    assert got["rejected"] == 0 and got["quarantined"] == 0
    print(json.dumps({"readings_stored": got["readings_stored"], "batches": got["stored"]}))
