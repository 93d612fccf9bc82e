"""End-to-end ingest benchmark: publisher process → Mosquitto (mutual TLS) → `oxilink receive` → SQLite.

    .venv/bin/python -m oxilink.bench_ingest [--devices 1000] [--batches 20] [--sync full]

1,000 simulated device identities (fresh random keys) each seal `--batches` batches of 30 one-second
readings with oxilink.sealed (the device's format byte for byte); a separate publisher process replays
them round-robin over one TLS connection at QoS 1, and the receiver runs as its own `oxilink receive`
process, exactly as deployed. Throughput = batches stored / (last commit - first publish).

Bench-only broker settings, each also what a production broker in front of receivers needs (see
docs/receiver.md): max_queued_messages 0 (Mosquitto's default of 1000 silently drops QoS 1 messages for a
receiver that falls behind), and an ACL line that lets the bench publisher write every device's topic
(one connection instead of 1,000; the receiver side is unchanged).

Writes build/bench/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .broker import RECEIVER_CN, Mosquitto, acl_text
from .paths import BENCH
from .pki import CertificateAuthority

PUBLISHER_CN = "oxilink-bench-publisher"
TARGET_MSGS_PER_S = 2000


class BenchBroker(Mosquitto):
    def write_config(self) -> None:
        super().write_config()
        with open(self.conf, "a") as f:
            f.write("max_queued_messages 0\nmax_inflight_messages 0\n")


def make_traffic(devices: int, batches: int, out: Path, registry_path: Path) -> tuple[int, int]:
    from .receiver.fleet import SimDevice
    from .receiver.registry import DeviceRegistry

    fleet = [SimDevice.new(f"bench-{i:04d}") for i in range(devices)]
    DeviceRegistry(registry_path).register_devices([(d.device_id, d.kid, d.key, d.base_iv) for d in fleet])
    start = int(time.time()) - 3600 * 24
    count = readings = 0
    with open(out, "wb") as f:
        for k in range(batches):  # round-robin: every device's batch k, then k + 1
            for d in fleet:
                msg = d.sealed_batch(start + 30 * k)
                topic = d.topic().encode()
                f.write(len(topic).to_bytes(2, "big") + topic + len(msg).to_bytes(4, "big") + msg)
                count += 1
                readings += 30
    return count, readings


def read_traffic(path: Path) -> list[tuple[str, bytes]]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 2], "big")
        topic = data[pos + 2:pos + 2 + n].decode()
        pos += 2 + n
        m = int.from_bytes(data[pos:pos + 4], "big")
        out.append((topic, data[pos + 4:pos + 4 + m]))
        pos += 4 + m
    return out


def publish(args: argparse.Namespace) -> int:
    """The publisher process: replays the traffic file, prints {"t_first": ..., "t_done": ..., "sent": n}."""
    import paho.mqtt.client as mqtt

    traffic = read_traffic(Path(args.publish))
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{PUBLISHER_CN}/1")  # <CN>/<suffix>
    c.tls_set(ca_certs=args.ca, certfile=args.cert, keyfile=args.key, cert_reqs=ssl.CERT_REQUIRED)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("localhost", args.port)
    c.loop_start()
    t_first = time.time()
    infos = [c.publish(topic, payload, qos=1) for topic, payload in traffic]
    for info in infos:
        info.wait_for_publish(120)
    t_done = time.time()
    c.disconnect()
    c.loop_stop()
    print(json.dumps({"t_first": t_first, "t_done": t_done, "sent": len(infos)}))
    return 0


def run(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="oxilink-bench-"))
    ca = CertificateAuthority(work / "pki")
    rx_id, pub_id = ca.issue(RECEIVER_CN), ca.issue(PUBLISHER_CN)
    (work / "broker").mkdir()
    (work / "broker" / "acl").write_text(f"user {PUBLISHER_CN}\ntopic write oxilink/#\n\n" + acl_text())
    traffic, registry = work / "traffic.bin", work / "devices.json"
    t = time.perf_counter()
    n_msgs, n_readings = make_traffic(args.devices, args.batches, traffic, registry)
    print(f"sealed {n_msgs} batches for {args.devices} devices in {time.perf_counter() - t:.1f} s", flush=True)
    db, stats_path = work / "readings.sqlite", work / "stats.json"
    with BenchBroker(work / "broker", ca, durable=args.broker_persistence == "durable") as broker:
        profile = ["-m", "cProfile", "-o", str(args.profile)] if args.profile else []
        rx = subprocess.Popen(
            [sys.executable, *profile, "-m", "oxilink.cli", "receive", "--broker", f"localhost:{broker.port}",
             "--ca", str(ca.cert_path), "--cert", str(rx_id.cert), "--key", str(rx_id.key), "--client-id", "bench-rx",
             "--db", str(db), "--audit", str(work / "audit.log"), "--registry", str(registry),
             "--stats", str(stats_path), "--stats-every", "0.05", "--sync", args.sync, "--log-level", "WARNING"])
        try:
            stats = wait_stats(stats_path, lambda s: s.get("subscribed"), rx, 30)
            pub = subprocess.run(
                [sys.executable, "-m", "oxilink.bench_ingest", "--publish", str(traffic), "--port", str(broker.port),
                 "--ca", str(ca.cert_path), "--cert", str(pub_id.cert), "--key", str(pub_id.key)],
                capture_output=True, text=True, check=True, timeout=600)
            published = json.loads(pub.stdout.strip().splitlines()[-1])
            stats = wait_stats(stats_path, lambda s: s["received"] >= n_msgs, rx, 600)
        finally:
            rx.send_signal(signal.SIGTERM)
            rx.wait(60)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = stats["updated"] - published["t_first"]
    result = {
        "msgs_per_s": round(stats["stored"] / elapsed, 1),
        "readings_per_s": round(stats["readings_stored"] / elapsed, 1),
        "batches": n_msgs, "readings": n_readings, "devices": args.devices, "readings_per_batch": 30,
        "stored": stats["stored"], "readings_stored": stats["readings_stored"], "rejected": stats["rejected"],
        "duplicates": stats["duplicates"], "elapsed_s": round(elapsed, 3),
        "publisher_msgs_per_s": round(published["sent"] / (published["t_done"] - published["t_first"]), 1),
        "target_msgs_per_s": TARGET_MSGS_PER_S,
        "meets_target": stats["stored"] / elapsed >= TARGET_MSGS_PER_S,
        "sqlite_synchronous": args.sync.upper(), "child_cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        # durable: a fsynced snapshot after every broker event-loop turn that changed its state (docs/broker.md)
        "broker_persistence": args.broker_persistence,
        "path": "publisher process -> mosquitto (TLS, QoS 1) -> oxilink receive (manual ack after commit) -> "
                "SQLite WAL",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    # other work on the machine skews the figures: the load average says how busy it was
                    "loadavg_1m_before": round(load_before, 2), "loadavg_1m_after": round(os.getloadavg()[0], 2)},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return result


def wait_stats(path: Path, cond, proc: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        try:
            s = json.loads(path.read_text())
            if cond(s):
                return s
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.02)
    raise TimeoutError(f"receiver did not get there in {timeout} s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m oxilink.bench_ingest", description=__doc__.splitlines()[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--batches", type=int, default=20, help="batches per device")
    p.add_argument("--sync", choices=["full", "normal"], default="full")
    p.add_argument("--broker-persistence", choices=["durable", "default"], default="durable",
                   help="durable (what oxilink runs: autosave on every change) or Mosquitto's default (every 1800 s)")
    p.add_argument("-o", "--output", type=Path, default=BENCH / "ingest.json")
    p.add_argument("--profile", type=Path, help="write a cProfile of the receiver's main (committer) thread here")
    p.add_argument("--publish", help=argparse.SUPPRESS)  # internal: run as the publisher process
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ca", help=argparse.SUPPRESS)
    p.add_argument("--cert", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.publish:
        return publish(args)
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
