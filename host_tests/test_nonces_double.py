"""Nonces that never repeat, on the board double (docs/board-double.md) with the real deploy: `oxilink deploy`
over one mpremote session (which calls provision.deploy_keys: a fresh kid, key and Base IV every deploy),
`make erase`'s `mpremote rm -r :/`, boards that boot the deployed file set, set their clock by SNTP and
deliver through real Mosquitto to a real `oxilink receive`. Every message on the wire is captured (test_nonces.
Wire): no (kid, Partial IV) pair may carry two messages, and everything the boards published is stored.

Board time runs 3x real time (30 s batches every 10 s)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from receiverrun import ReceiverProcess
from test_nonces import Wire

from oxilink.double import AccessPoint, Board
from oxilink.double.sntpserver import SntpServer
from oxilink.provision import load_identity, provision_device

VENV_BIN = Path(sys.executable).parent
WIFI = {"wifi_ssid": "oxilink-test", "wifi_password": "correct horse battery"}
RATE = 3


@pytest.fixture
def ward(tmp_path, broker, pki, secrets_root, mpbuild):
    """SNTP, the receiver (reading the registry `oxilink deploy` writes) and a wire capture."""
    with SntpServer() as sntp:
        rx = ReceiverProcess(tmp_path / "rx", broker, pki, "rx", "--registry", str(secrets_root / "devices.json"))
        rx.folder.mkdir()
        wire = Wire(broker, pki)
        rx.start()
        env = dict(os.environ, OXILINK_SECRETS=str(secrets_root), OXILINK_VAR=str(tmp_path / "var"))
        yield sntp, rx, wire, env
        wire.close()
        if rx.proc:
            rx.stop()


def provisioned(secrets_root, device, broker, sntp):
    return provision_device(device, root=secrets_root, broker=f"localhost:{broker.port}", ntp=sntp.address, **WIFI)


def deploy(env, device: str, b: Board) -> bytes:
    """`oxilink deploy` to the board over its serial line; the kid it deployed."""
    proc = subprocess.run([VENV_BIN / "oxilink", "deploy", "--board", "esp32-devkitc", "--device", device, "--port",
                           b.url, "--arch", b.mpy_arch], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return load_identity(device, Path(env["OXILINK_SECRETS"])).kid


def erase(b: Board) -> None:
    """What `make erase` runs: every file on the board, gone (MicroPython stays)."""
    b.exec("import machine")  # stop the app: the raw REPL, as mpremote itself does
    proc = subprocess.run([VENV_BIN / "mpremote", "connect", b.url, "rm", "-r", "-v", ":/"], capture_output=True,
                          text=True, timeout=120)
    # mpremote removes every file, then fails to remove the root itself: that one error is expected
    assert "removed: '/secrets.json'" in proc.stdout and "removed: '/counter.a'" in proc.stdout, proc.stdout
    assert proc.returncode == 0 or proc.stderr.strip() == "mpremote: rm -r: cannot remove :/ Operation not permitted"


def vitals(rx, kid: bytes) -> list[int]:
    return [c for (c,) in rx.rows("SELECT counter FROM messages WHERE kind = 'vitals' AND kid = ? ORDER BY counter",
                                  kid)]


def wait_vitals(rx, kid: bytes, n: int, board: Board, timeout: float = 180) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(got := vitals(rx, kid)) < n:
        assert time.monotonic() < deadline, \
            f"{len(got)} batches of {kid.hex()} stored, waiting for {n}; the board said:\n{board.output[-3000:]}"
        time.sleep(0.5)
    return got


def check_wire(wire, rx, kids: list[bytes]) -> dict:
    """No (kid, PIV) pair carried two messages, and everything published under each key is stored."""
    wire.collect()
    assert wire.repeats() == []
    for kid in kids:
        published = {piv for k, piv in wire.seen if k == kid}
        deadline = time.monotonic() + 30
        while published - (stored := {c for (c,) in rx.rows("SELECT counter FROM messages WHERE kid = ?", kid)}):
            assert time.monotonic() < deadline, (kid.hex(), sorted(published - stored))
            time.sleep(0.5)
    return {kid.hex(): {"vitals": len(vitals(rx, kid)), "published": len({p for k, p in wire.seen if k == kid})}
            for kid in kids}


@pytest.mark.parametrize("mpbuild", ["esp32like"], indirect=True)
def test_erase_and_redeploy_on_the_double(tmp_path, broker, secrets_root, ward):
    sntp, rx, wire, env = ward
    ident = provisioned(secrets_root, "dev-dbl-erase", broker, sntp)
    with Board(tmp_path / "board", ap=AccessPoint(connect_s=0.5), rate=RATE) as b:
        b.expect(">>> ", 30)  # an erased board
        kid1 = deploy(env, ident.device_id, b)
        b.expect(r"connected to broker", 90)
        first = wait_vitals(rx, kid1, 2, b)
        erase(b)
        kid2 = deploy(env, ident.device_id, b)  # make erase + make deploy
        b.expect(r"connected to broker", 90)
        second = wait_vitals(rx, kid2, 2, b)
    assert kid1 != kid2
    assert min(first) < 8 and min(second) < 8  # both keys counted from 0 (the first counters go to statuses)
    print(check_wire(wire, rx, [kid1, kid2]))


@pytest.mark.parametrize("mpbuild", ["esp32like"], indirect=True)
def test_redeploy_without_erase_on_the_double(tmp_path, broker, secrets_root, ward):
    sntp, rx, wire, env = ward
    ident = provisioned(secrets_root, "dev-dbl-redeploy", broker, sntp)
    with Board(tmp_path / "board", ap=AccessPoint(connect_s=0.5), rate=RATE) as b:
        b.expect(">>> ", 30)
        kid1 = deploy(env, ident.device_id, b)
        b.expect(r"connected to broker", 90)
        wait_vitals(rx, kid1, 2, b)
        broker.stop()  # the broker goes away: the next batches stay in the board's flash queue
        time.sleep(2 * 30 / RATE + 2)
        before = len(vitals(rx, kid1))
        kid2 = deploy(env, ident.device_id, b)  # a redeploy over serial; the flash (and its queue) stays
        broker.start()
        new = wait_vitals(rx, kid2, 2, b)
        old = wait_vitals(rx, kid1, before + 2, b)  # the old key's queued batches arrived after the redeploy
    assert kid1 != kid2 and min(new) < 8
    assert len(old) >= before + 2
    print(check_wire(wire, rx, [kid1, kid2]))


@pytest.mark.parametrize("mpbuild", ["esp32like"], indirect=True)
def test_one_device_id_on_two_doubles(tmp_path, broker, secrets_root, ward):
    sntp, rx, wire, env = ward
    ident = provisioned(secrets_root, "dev-dbl-twin", broker, sntp)
    with Board(tmp_path / "a", ap=AccessPoint(connect_s=0.5), rate=RATE) as a, \
            Board(tmp_path / "b", ap=AccessPoint(connect_s=0.5), rate=RATE) as b:
        a.expect(">>> ", 30)
        b.expect(">>> ", 30)
        kid_a = deploy(env, ident.device_id, a)
        kid_b = deploy(env, ident.device_id, b)  # the same DEVICE, deployed to a second board
        a.expect(r"connected to broker", 90)
        b.expect(r"connected to broker", 90)
        got_a, got_b = wait_vitals(rx, kid_a, 3, a), wait_vitals(rx, kid_b, 3, b)
    assert kid_a != kid_b and min(got_a) < 8 and min(got_b) < 8
    log = broker.log_tail(400)
    ids = {line.split(" as ")[1].split(" ")[0] for line in log.splitlines()
           if "New client connected" in line and f" as {ident.device_id}/" in line}
    assert len(ids) == 2  # dev-dbl-twin/<board A's id> and /<board B's>: no session fight
    assert "already connected, closing old connection" not in log
    print(check_wire(wire, rx, [kid_a, kid_b]))
