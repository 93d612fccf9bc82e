"""The whole system on one machine, no hardware: `make sim` and `oxilink sim`.

A project CA and Mosquitto (mutual TLS, random loopback port), N provisioned devices each running the real
firmware on the MicroPython unix port (simulated MAX30102 replaying a recording), and the receiver storing
into SQLite. Everything lives under var/sim/ (its own CA, registry and audit log, apart from the project's
real secrets/). Each run starts a fresh system there: the simulated boards' flash is RAM, so their message
counters restart at 0 every run, and reusing last run's keys (nonces) or database (the receiver would take
the new batches for duplicates) would be wrong. With a duration, it stops producing after that many
seconds of signal, waits until every batch each device sealed is in the database (or a grace period passes,
failing loudly), and exits.
"""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import mprun, paths
from .broker import RECEIVER_CN, Mosquitto
from .pki import CertificateAuthority
from .provision import provision_device
from .receiver.audit import AuditLog, default_actor
from .receiver.registry import DeviceRegistry
from .receiver.store import open_store

# A simulated board's flash is a RAM block device in its MicroPython heap (about 600 KB for the sim board's
# queue), beside the ~100 KB the firmware itself needs: more than the 32-bit unix port's 1 MiB default heap.
DEVICE_HEAP = "4M"

SIM_FS = 100  # the sim board's output rate (boards/sim.json)
SIM_BOARD = "sim"
MARKER = ".oxilink-sim"


class SimError(Exception):
    pass


@dataclass
class SimOptions:
    devices: int = 1
    duration: int | None = None
    speed: int = 1
    outage: int | None = None
    db: Path | None = None
    source: Path | None = None
    live: bool = True
    root: Path | None = None
    grace: int = 120
    batch_seconds: int = 5


def say(msg: str) -> None:
    print(f"[sim] {msg}", flush=True)


def recording_csv(folder: Path, index: int, seconds: int) -> Path | None:
    """Red/IR counts at the sim rate from a real BIDMC PLETH (SpO2 held near 97 %), or None without the data."""
    from . import ppgdata, synth

    try:
        ids = ppgdata.bidmc_ids()
    except (FileNotFoundError, OSError):
        return None
    if not ids:
        return None
    from scipy.signal import resample_poly

    rec_id = ids[(index * 7) % len(ids)]
    pleth, fs = ppgdata.bidmc_pleth(rec_id)
    pleth = resample_poly(pleth, SIM_FS, int(fs))[: int(seconds * SIM_FS)]
    rng = np.random.default_rng(index)
    spo2 = np.clip(97 + np.cumsum(rng.normal(0, 0.05, int(np.ceil(len(pleth) / SIM_FS)))), 94, 99)
    red, ir = synth.synth_red_ir(pleth, SIM_FS, spo2, rng)
    path = folder / f"recording-{index:02d}-bidmc{rec_id}.csv"
    ppgdata.write_signal_csv(path, ir, red)
    return path


class SimSystem:
    def __init__(self, opts: SimOptions):
        self.o = opts
        self.root = opts.root or paths.VAR / "sim"
        self.secrets = self.root / "secrets"
        self.db = Path(opts.db) if opts.db else self.root / "readings.sqlite"
        self.audit = self.root / "audit.log"
        self.reports = self.root / "reports"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.receiver: subprocess.Popen | None = None
        self.broker: Mosquitto | None = None

    # ---- setup ---------------------------------------------------------------------------------------------

    def fresh_start(self) -> None:
        """Empty the sim folder (a folder that is not one is refused) and refuse a --db that holds sim data."""
        marker = self.root / MARKER
        if self.root.exists() and any(self.root.iterdir()):
            if not marker.exists() and self.root.resolve() != (paths.VAR / "sim").resolve():
                raise SimError(f"--root {self.root}: not empty and not a sim folder (no {MARKER}); "
                               "give an empty or new folder")
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        marker.write_text("created by `oxilink sim`; emptied at the start of every run\n")
        if self.o.db:
            store = open_store(self.o.db)
            try:
                held = set(store.devices())
                used = [f"sim-{i:02d}" for i in range(1, self.o.devices + 1) if f"sim-{i:02d}" in held]
            finally:
                store.close()
            if used:
                raise SimError(f"--db {self.o.db} already holds messages of {', '.join(used)}; the simulated "
                               "boards start with empty flash (counters from 0), so their new batches would be "
                               "taken for duplicates: give an empty database")

    def setup(self) -> list:
        self.fresh_start()
        self.reports.mkdir()
        ca = CertificateAuthority(self.secrets / "pki")
        if not (ca.folder / "issued" / f"{RECEIVER_CN}.pem").exists():
            ca.issue(RECEIVER_CN)
        devices = [provision_device(f"sim-{i:02d}", root=self.secrets) for i in range(1, self.o.devices + 1)]
        registry = DeviceRegistry(self.secrets / "devices.json", AuditLog(self.audit, default_actor("sim")))
        known = registry.devices()
        registry.register_devices([(d.device_id, d.kid, d.key, d.base_iv) for d in devices
                                   if d.device_id not in known])
        for d in devices:
            registry.describe_device(d.device_id, board=SIM_BOARD,
                                     certificate_serial=format(ca.serial_of(d.folder / "device.pem"), "x"))
        self.broker = Mosquitto(self.root / "broker", ca).start()
        say(f"Mosquitto on 127.0.0.1:{self.broker.port} (mutual TLS, CA {ca.cert_path})")
        issued = ca.folder / "issued"
        self.receiver = subprocess.Popen(
            [sys.executable, "-m", "oxilink.cli", "receive", "--broker", f"localhost:{self.broker.port}",
             "--ca", str(ca.cert_path), "--cert", str(issued / f"{RECEIVER_CN}.pem"),
             "--key", str(issued / f"{RECEIVER_CN}.key"), "--db", str(self.db), "--audit", str(self.audit),
             "--registry", str(self.secrets / "devices.json"), "--stats", str(self.root / "receiver-stats.json"),
             "--client-id", f"oxilink-sim-receiver-{self.broker.port}", "--log-level", "WARNING"])
        say(f"receiver storing into {self.db}")
        return devices

    def start_devices(self, devices: list) -> None:
        seconds = (self.o.duration or 3600) + 10
        sources = []
        for i, dev in enumerate(devices):
            source = self.o.source or recording_csv(self.root, i, seconds)
            sources.append(source)
            args = ["--secrets", str(dev.folder), "--port", str(self.broker.port), "--speed", str(self.o.speed),
                    "--report", str(self.reports / f"{dev.device_id}.json"), "--grace", str(self.o.grace),
                    "--batch-seconds", str(self.o.batch_seconds)]
            if self.o.duration:
                args += ["--duration", str(self.o.duration)]
            if source:
                args += ["--source", str(source)]
            log = open(self.root / f"{dev.device_id}.log", "w")
            self.procs.append((dev.device_id, mprun.popen(paths.FIRMWARE / "sim" / "run_device.py", args,
                                                          heapsize=DEVICE_HEAP, stdout=log, stderr=subprocess.STDOUT,
                                                          cwd=paths.ROOT)))
        if self.o.source:
            what = str(self.o.source)
        elif sources[0]:
            what = "BIDMC PLETH recordings (../shared/data) as red/IR"
        else:
            what = f"a synthetic signal (no recordings found at {paths.data_dir()})"
        say(f"{len(devices)} device(s) running the firmware on the unix port, replaying {what}")

    # ---- while running -------------------------------------------------------------------------------------

    def table(self) -> str:
        if not self.db.exists():
            return "(no data yet)"
        try:
            con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=1)
            rows = con.execute(
                "SELECT device, MAX(t), COUNT(*), SUM(hr_bpm IS NOT NULL) FROM readings GROUP BY device").fetchall()
            latest = {d: con.execute("SELECT hr_bpm, spo2_pct, pi_pct, quality FROM readings WHERE device = ? "
                                     "ORDER BY t DESC LIMIT 1", (d,)).fetchone() for d, *_ in rows}
            con.close()
        except sqlite3.Error:
            return "(database busy)"
        lines = [f"{'device':<8} {'HR':>6} {'SpO2':>6} {'PI':>6} {'q':>3} {'stored':>7} {'valid HR':>9}"]
        for device, _t, n, valid in rows:
            hr, spo2, pi, q = latest[device]
            fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
            lines.append(f"{device:<8} {fmt(hr, '.1f'):>6} {fmt(spo2, '.1f'):>6} {fmt(pi, '.2f'):>6} {q:>3} "
                         f"{n:>7} {valid or 0:>9}")
        return "\n".join(lines)

    def running(self) -> bool:
        return any(p.poll() is None for _, p in self.procs)

    def wait(self) -> None:
        start = time.time()
        outage_at = max(5.0, (self.o.duration or 60) / self.o.speed / 3) if self.o.outage else None
        outage_done = False
        last_table = 0.0
        while self.running():
            now = time.time() - start
            if outage_at is not None and not outage_done and now >= outage_at:
                say(f"broker outage: stopping Mosquitto for {self.o.outage} s")
                self.broker.stop()
                time.sleep(self.o.outage)
                self.broker.start()
                say("broker back")
                outage_done = True
            if self.o.live and time.time() - last_table >= 5:
                print(f"\n[sim] t={now:5.0f} s\n{self.table()}", flush=True)
                last_table = time.time()
            time.sleep(0.5)

    # ---- the end -------------------------------------------------------------------------------------------

    def delivered(self) -> tuple[dict, dict]:
        """Per device: the vitals counters it sealed (its report) and those missing from the database."""
        expected, missing = {}, {}
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) if self.db.exists() else None
        for report in sorted(self.reports.glob("*.json")):
            r = json.loads(report.read_text())
            want = set(r["vitals_counters"])
            have = {c for (c,) in con.execute("SELECT counter FROM messages WHERE device = ?", (r["device"],))} \
                if con else set()
            expected[r["device"]] = r
            missing[r["device"]] = sorted(want - have)
        if con:
            con.close()
        return expected, missing

    def finish(self) -> int:
        reports, missing = self.delivered()
        deadline = time.time() + 30
        while any(missing.values()) and time.time() < deadline:
            time.sleep(1)
            reports, missing = self.delivered()
        ok = bool(reports) and len(reports) == self.o.devices and not any(missing.values())
        for device, r in reports.items():
            say(f"{device}: {len(r['vitals_counters'])} batches sealed, {len(missing[device])} missing in the "
                f"database; {r['samples']} samples, {r['lost_samples']} lost at the sensor; "
                f"{r['transport']['reconnects']} reconnects")
        if len(reports) < self.o.devices:
            say(f"only {len(reports)} of {self.o.devices} devices reported: see {self.root}/*.log")
        say(self.table())
        return 0 if ok else 1

    def stop(self) -> None:
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.receiver and self.receiver.poll() is None:
            self.receiver.send_signal(signal.SIGTERM)  # graceful: everything acknowledged is committed
            try:
                self.receiver.wait(20)
            except subprocess.TimeoutExpired:
                self.receiver.kill()
        if self.broker:
            self.broker.stop()

    def hints(self) -> None:
        device = "sim-01"
        say("the readings stay in SQLite. Next:")
        common = f"--db {self.db} --audit {self.audit} --device {device} --since 1h"
        print(f"  .venv/bin/oxilink export fhir {common} -o {device}.ndjson")
        print(f"  .venv/bin/oxilink export csv {common}")
        print(f"  .venv/bin/oxilink plot {common} -o {device}.png")
        print(f"  .venv/bin/oxilink audit verify --audit {self.audit}")

    def run(self) -> int:
        rc = 1
        try:
            devices = self.setup()
            self.start_devices(devices)
            self.wait()
            rc = self.finish() if self.o.duration else 0
        except KeyboardInterrupt:
            say("Ctrl-C: stopping devices, receiver and broker")
            rc = 0
        except SimError as e:
            print(f"oxilink sim: {e}", file=sys.stderr)
            return 2
        finally:
            self.stop()
        self.hints()
        if rc:
            say("FAILED: not every sealed batch reached the database (see above)")
        return rc
