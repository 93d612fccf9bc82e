# The firmware on the MicroPython unix port: the same app.Device a board runs, with the simulated MAX30102
# on a fake I2C bus, LittleFS on a RAM block device, the host network, and a clock that can run faster than
# real time. Used by `make sim`, `oxilink sim` and the transport tests.
#
#   micropython run_device.py --board boards/sim.json --secrets secrets/devices/dev-1 [--source FILE.csv]
#       [--speed 1] [--duration S] [--port N] [--host localhost] [--report FILE] [--batch-seconds N]
#
# --secrets DIR holds secrets.json and certs/{device.key.der,device.crt.der,ca.der} (oxilink provision).
# With --duration, the device stops producing after S simulated seconds, seals its last batch, keeps
# delivering until the queue is empty (or a grace period passes), and prints a JSON report.
import json
import sys
import time

import vfs

import hw_unix
import startup
from app import Device, unix_time
from backoff import Backoff
from log import Log
from sim.max30102_sim import CsvSource, Max30102Sim, SimI2C, SyntheticPPG
from sim.deployed import copy_marker
from sim.ramblock import RamBlockDev
from sim.scaledclock import ScaledClock
from tlsconfig import client_context


def parse(argv):
    opts = {"--board": "boards/sim.json", "--speed": "1", "--host": None, "--port": None, "--source": None,
            "--duration": None, "--report": None, "--grace": "120", "--secrets": None,
            "--batch-seconds": None}
    i = 0
    while i < len(argv):
        if argv[i] not in opts or i + 1 >= len(argv):
            raise SystemExit("usage: run_device.py --secrets DIR [--board F] [--source CSV] [--speed K] "
                             "[--duration S] [--host H] [--port N] [--report F] [--grace S]")
        opts[argv[i]] = argv[i + 1]
        i += 2
    if not opts["--secrets"]:
        raise SystemExit("run_device.py: --secrets DIR is required (create one with `oxilink provision`)")
    return opts


def main(argv):
    o = parse(argv)
    secrets = o["--secrets"]
    # the same boot code as a board's main.py: board file, secrets, provisioned broker, certificates
    cfg = startup.load_board(o["--board"])
    keys, _ssid, _password, broker = startup.load_secrets(secrets + "/secrets.json")
    startup.apply_broker(cfg, broker)
    key_der, cert_der, ca_der = startup.load_certs(secrets + "/certs")
    if o["--host"]:
        cfg["mqtt"]["host"] = o["--host"]
    if o["--port"]:
        cfg["mqtt"]["port"] = int(o["--port"])
    if o["--batch-seconds"]:
        cfg["report"]["batch_seconds"] = int(o["--batch-seconds"])
    clock = ScaledClock(int(o["--speed"]))
    start_wall = unix_time()

    def wall():
        return start_wall + clock.elapsed_s()

    source = CsvSource(o["--source"]) if o["--source"] else SyntheticPPG()
    chip = Max30102Sim(clock, source)
    bus = SimI2C()
    bus.attach(cfg["sensor"]["address"], chip)
    bd = RamBlockDev(4096, max(64, cfg["queue"]["capacity_bytes"] // 4096 * 2 + 16))
    vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/flash")
    copy_marker(secrets, "/flash")  # an erased flash, deployed from the secrets folder
    cfg["queue"]["path"] = "/flash" + cfg["queue"]["path"]
    ctx = client_context(key_der, cert_der, ca_der)
    log = Log(keys.device_id)
    network = hw_unix.Network()
    dev = Device(cfg, keys, bus, clock, "/flash", pin=chip.pin, ssl_context=ctx, network=network,
                 watchdog=hw_unix.Watchdog(5000, clock), hw=hw_unix, log=log, wall_clock=wall)
    speed = int(o["--speed"])
    if speed > 1:  # keep a board's outage-to-backoff ratio when simulated time runs faster than real time
        dev.transport.backoff = Backoff(max(50, 1000 // speed), 60000 // speed)
    duration = int(o["--duration"]) if o["--duration"] else None
    vitals_counters = []
    state = {"producing": True, "stop_ms": None}

    seal_batch = dev.seal_batch

    def seal_and_note():
        before = dev.batches
        seal_batch()
        if dev.batches > before:
            vitals_counters.append(dev.sealer.last_counter)

    dev.seal_batch = seal_and_note

    def until():
        if duration is None:
            return False
        if state["producing"] and clock.elapsed_s() >= duration:
            state["producing"] = False
            dev.seal_batch()
            state["stop_ms"] = time.ticks_ms()
        if not state["producing"]:
            if dev.queue.depth() == 0 and dev.transport.status_pending is None:
                return True
            return time.ticks_diff(time.ticks_ms(), state["stop_ms"]) > int(o["--grace"]) * 1000
        return False

    def produce_only_while_running(force=False):
        if state["producing"]:
            Device.service_sensor(dev, force)

    dev.link.idle = produce_only_while_running
    dev.service_sensor = produce_only_while_running
    dev.run(until)
    report = {
        "device": keys.device_id, "sim_seconds": clock.elapsed_s(), "batches": dev.batches,
        "vitals_counters": vitals_counters, "queue": dev.queue.stats(), "transport": dev.transport.stats(),
        "samples": dev.acq.received, "readings": dev.acq.readings, "lost_samples": dev.acq.lost, "gaps": dev.acq.gaps,
        "chip_overflow_events": dev.acq.gaps, "watchdog_longest_gap_ms": dev.watchdog.longest_gap_ms,
        "sensor_errors": dev.sensor_errors, "host_withheld_ms": clock.withheld_us // 1000,
    }
    text = json.dumps(report)
    if o["--report"]:
        with open(o["--report"], "w") as f:
            f.write(text)
    print(text)
    return 0 if dev.queue.depth() == 0 or duration is None else 1


try:
    code = main(sys.argv[1:])
except ValueError as e:  # board file, secrets, certificates: the message names the file and the field
    print("run_device: %s" % e)
    code = 2
sys.exit(code)
