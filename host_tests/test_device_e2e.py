"""The whole device on the unix port (simulated chip in accelerated real time, RAM LittleFS, sealing,
flash queue, MqttLink over mutual TLS) against real Mosquitto, through a fault-injecting proxy.

10 simulated minutes at 3x speed (the FIFO's 320 ms of slack shrinks to 107 ms of real time, a harsher test
than a real board) with a slow broker, a 3-minute outage (refused + dropped) and a stall longer than the
PUBACK wait: every vitals batch arrives, in order, opened and complete, duplicates only from
retransmissions, and the chip's overflow count stays 0 throughout.

On a loaded host the device process waits for a CPU now and then; a board never does. The simulated clock
leaves that wait out (firmware/sim/scaledclock.py, reported as host_withheld_ms), so the test measures the
firmware, not the machine's other work."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from faultproxy import FaultProxy

from mqtt_peer import Peer
from oxilink import mprun, paths
from oxilink.broker import RECEIVER_CN
from oxilink.provision import provision_device
from oxilink.sealed import decode_batch, open_encrypt0
from oxilink.simulate import DEVICE_HEAP

SPEED = 3
# fault schedule in simulated seconds: slow broker, 3-minute outage, 60 s stall (> the 5 s PUBACK wait)
FAULTS = ((40, "slow"), (80, "pass"), (100, "refuse"), (280, "pass"), (350, "stall"), (410, "pass"))
SIM_SECONDS = 600


def start_device(identity, port, sim_seconds, speed, extra=()):
    return mprun.popen(paths.FIRMWARE / "sim" / "run_device.py",
                       ["--secrets", str(identity.folder), "--speed", str(speed), "--duration", str(sim_seconds),
                        "--port", str(port), "--grace", "60", *extra], heapsize=DEVICE_HEAP,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=paths.ROOT)


def test_ten_minutes_with_outage_and_stall_lose_nothing(broker, pki, secrets_root, mpbuild):
    ident = provision_device("dev-e2e", root=secrets_root)
    keys = lambda kid: [(ident.key, ident.base_iv)] if kid == ident.kid else []  # noqa: E731
    proxy = FaultProxy(broker.port, delay=0.3)
    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/dev-e2e/#")
    timeline = []
    lines: list[str] = []
    connected = threading.Event()

    def read(stream):
        for line in stream:
            lines.append(line)
            if "connected to broker" in line:
                connected.set()

    def faults():
        # The device's clock runs SPEED times real time from its start (less what the host withholds from it,
        # a fraction of a percent): the schedule starts at its first connect, an event seen here, not at the
        # process start, whose length depends on the machine's load.
        if not connected.wait(120):
            return
        t0 = time.monotonic()
        for at, mode in FAULTS:
            time.sleep(max(0.0, t0 + at / SPEED - time.monotonic()))
            proxy.mode = mode
            if mode == "refuse":
                proxy.drop_all()
            timeline.append(mode)

    device = start_device(ident, proxy.port, SIM_SECONDS, SPEED)
    reader = threading.Thread(target=read, args=(device.stdout,), daemon=True)
    reader.start()
    scheduler = threading.Thread(target=faults, daemon=True)
    scheduler.start()
    try:
        device.wait(timeout=SIM_SECONDS / SPEED + 180)
        reader.join(10)
    finally:
        device.kill()
        proxy.close()
    out = "".join(lines)
    assert device.returncode == 0, out[-3000:]
    report = json.loads(lines[-1])
    last = report["vitals_counters"][-1]  # the device delivers oldest first: the last batch comes last
    messages = peer.collect_until(
        lambda topic, payload: topic.endswith("/vitals") and open_encrypt0(payload, topic, keys).counter == last)
    peer.close()
    print(json.dumps({k: report[k] for k in ("samples", "lost_samples", "gaps", "transport", "readings",
                                               "watchdog_longest_gap_ms", "host_withheld_ms")}))
    assert timeline == ["slow", "pass", "refuse", "pass", "stall", "pass"]

    # the sensor was never starved: the chip lost nothing while the link was slow, down or stalled
    assert report["lost_samples"] == 0 and report["gaps"] == 0
    assert report["samples"] >= (SIM_SECONDS - 2) * 100

    vitals = []
    for topic, payload, _retain in messages:
        opened = open_encrypt0(payload, topic, keys)  # every message is sealed and authentic
        if topic.endswith("/vitals"):
            vitals.append((opened.counter, decode_batch(opened.payload)))
    counters = [c for c, _ in vitals]
    first_seen = list(dict.fromkeys(counters))
    assert first_seen == report["vitals_counters"]  # every batch, in order
    assert len(counters) - len(first_seen) <= report["transport"]["retransmitted"]
    readings = sum(len(b["readings"]) for c, b in dict(vitals).items())
    assert readings == report["readings"]
    assert report["transport"]["reconnects"] >= 2
    assert report["transport"]["link_lost"] >= 1
    assert report["transport"]["tls_failures"] + report["transport"]["refused"] >= 1
