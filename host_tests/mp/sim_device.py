# Test helper: the whole device (app.Device) in-process on the unix port, built like firmware/sim/run_device.py
# (simulated chip on a fake I2C bus, RAM LittleFS, ScaledClock, fake watchdog and Wi-Fi), but with every
# part reachable so a test script can inject faults (bus.fault, network.available, a new TLS identity) and
# talk to the host test: `say(tag, obj)` prints one "tag {json}" line; `wait_for(name)` keeps the device
# running until the host creates the file `name` in the current directory.
#
# Options (a JSON file named by argv[1]): secrets (folder with secrets.json), key/cert/ca (DER files; default the
# provisioned ones in secrets/certs), port, host, tls, speed, batch_seconds, status_interval_s, link_timeout_ms,
# backoff_ms, backoff_cap_ms, watchdog_ms, rssi, no_tls_context, flash_image (a file: the flash survives across
# runs, save_flash() writes it), deploy (default true: copy the secrets folder's counter.fresh to the flash);
# and for board-path tests:
#   clock         "virtual": device time passes only when the device sleeps (or a test advances it), not with
#                 real time, so host load cannot overflow the sensor FIFO: for tests where lost samples matter
#   start_ms      where the device clock's ticks start (e.g. just before the 2**30 wrap)
#   net_clock     "device": socket waits run on the device clock too (as on a board), so clock jumps reach them
#   wall          "real": batches and statuses stamped with the host's time instead of start + device time
#   wifi          {"outcomes": [...], "ssid", "password", "join_ms", "backoff_ms", "backoff_cap_ms"}: the network
#                 is wifi.Station over fake_wlan.FakeWLAN instead of the host network
#   dns_port      the DNS server's port (the fake Wi-Fi hands out 127.0.0.1); dns_timeout_ms, dns_tries
#   tls_stretch_ms  each public-key TLS handshake step costs this much device time (firmware/sim/tlscost.py)
import json
import os
import sys
from binascii import hexlify
import time

import vfs

import boardconf
import devicekeys
import hw_unix
from app import Device, unix_time
from backoff import Backoff
from log import Log
from sim.max30102_sim import Max30102Sim, SimI2C, SyntheticPPG
from sim.deployed import copy_marker
from sim.ramblock import RamBlockDev
from sim.scaledclock import ScaledClock
from sim.vclock import VirtualClock
from sim.tlscost import StretchedContext
from tlsconfig import client_context


def read(path):
    with open(path, "rb") as f:
        return f.read()


def say(tag, obj):
    print("%s %s" % (tag, json.dumps(obj)))


def exists(name):
    try:
        os.stat(name)
        return True
    except OSError:
        return False


def tls_context(o, prefix=""):
    certs = o["secrets"] + "/certs/"
    return client_context(read(o.get(prefix + "key") or certs + "device.key.der"),
                          read(o.get(prefix + "cert") or certs + "device.crt.der"),
                          read(o.get(prefix + "ca") or certs + "ca.der"))


class SimDevice:
    def __init__(self, o=None):
        if o is None:
            with open(sys.argv[1]) as f:
                o = json.load(f)
        self.opts = o
        cfg = boardconf.load(o.get("board", "boards/sim.json"))
        m = cfg["mqtt"]
        m["port"] = o["port"]
        m["host"] = o.get("host", "localhost")
        m["tls"] = o.get("tls", True)
        r = cfg["report"]
        r["batch_seconds"] = o.get("batch_seconds", 5)
        r["status_interval_s"] = o.get("status_interval_s", r["status_interval_s"])
        self.keys = devicekeys.load(o["secrets"] + "/secrets.json")
        if o.get("clock") == "virtual":
            self.clock = clock = VirtualClock(o.get("start_ms", 0x3FFFFFFF - 4999))
        else:
            self.clock = clock = ScaledClock(o.get("speed", 5), o.get("start_ms"))
        net_clock = clock if o.get("net_clock") == "device" else time
        start_wall = unix_time()
        wall = unix_time if o.get("wall") == "real" else (lambda: start_wall + clock.elapsed_s())
        self.chip = Max30102Sim(clock, SyntheticPPG())
        self.bus = SimI2C()
        self.bus.attach(cfg["sensor"]["address"], self.chip)
        # The board's flash: erased (a new RamBlockDev), or the image a previous run saved (flash_image), then
        # deployed: the secrets folder's counter.fresh lands on it, as `oxilink deploy` puts it there.
        self.flash_image = o.get("flash_image")
        image = read(self.flash_image) if self.flash_image and exists(self.flash_image) else None
        self.bd = RamBlockDev(4096, 64, image)
        if image is None:
            vfs.VfsLfs2.mkfs(self.bd)
        vfs.mount(vfs.VfsLfs2(self.bd), "/flash")
        if o.get("deploy", True):
            copy_marker(o["secrets"], "/flash")
        cfg["queue"]["path"] = "/flash/q"
        cfg["queue"]["capacity_bytes"] = 65536
        self.lines = []
        self.log = Log(self.keys.device_id, write=self._log_line)
        w = o.get("wifi")
        if w:
            from fake_wlan import FakeWLAN
            from wifi import Station

            self.wlan = FakeWLAN(net_clock, w.get("outcomes", ["ok"]), join_ms=w.get("join_ms", 300))
            self.network = Station(self.wlan, w.get("ssid", "lab-wifi"), w.get("password", "pw"), log=self.log,
                                   clock=net_clock, backoff=Backoff(w.get("backoff_ms", 300), w.get("backoff_cap_ms", 1500)),
                                   dns_port=o.get("dns_port", 53))
        else:
            self.network = hw_unix.Network(rssi=o.get("rssi"))
        self.watchdog = hw_unix.Watchdog(o.get("watchdog_ms", 5000), clock)
        ctx = tls_context(o) if m["tls"] and not o.get("no_tls_context") else None
        self.stretch = None
        if ctx is not None and o.get("tls_stretch_ms"):
            ctx = self.stretch = StretchedContext(ctx, lambda ms: clock.advance_us(ms * 1000), o["tls_stretch_ms"])
        more = {"net_clock": net_clock} if net_clock is not time else {}
        self.dev = Device(cfg, self.keys, self.bus, clock, "/flash", pin=self.chip.pin, ssl_context=ctx,
                          network=self.network, watchdog=self.watchdog, hw=hw_unix, log=self.log,
                          wall_clock=wall, **more)
        if self.stretch is not None:
            self.stretch.probe = lambda: self.dev.acq.drains
        self.dev.link.timeout_ms = o.get("link_timeout_ms", 1500)
        self.dev.transport.backoff = Backoff(o.get("backoff_ms", 200), o.get("backoff_cap_ms", 1000))
        resolver = getattr(self.dev.transport, "resolver", None)
        if resolver is not None:
            resolver.timeout_ms = o.get("dns_timeout_ms", 1000)
            resolver.tries = o.get("dns_tries", 3)
        self.sealed = []  # message counter of every vitals batch sealed, in order
        seal = self.dev.seal_batch

        def seal_and_note():
            before = self.dev.batches
            seal()
            if self.dev.batches > before:
                self.sealed.append(self.dev.sealer.last_counter)

        self.dev.seal_batch = seal_and_note
        self.dev.start()

    def save_flash(self):
        """Writes the flash's bytes to the flash_image file, for the next run (a reboot, or a redeploy without
        erasing)."""
        vfs.umount("/flash")
        with open(self.flash_image, "wb") as f:
            f.write(self.bd.data)

    def _log_line(self, line):
        self.lines.append(line)
        print(line)

    def turn(self):
        self.dev.run_once()
        self.clock.sleep_ms(max(1, self.dev.acq.poll_ms >> 2))

    def run_until(self, cond, limit_s=60):
        """Keep the device running until cond() is true; False if limit_s real seconds passed first."""
        start = time.ticks_ms()
        while not cond():
            if time.ticks_diff(time.ticks_ms(), start) > limit_s * 1000:
                return False
            self.turn()
        return True

    def wait_for(self, name, limit_s=60):
        return self.run_until(lambda: exists(name), limit_s)

    def drained(self):
        return self.dev.queue.depth() == 0 and self.dev.transport.status_pending is None

    def report(self):
        d = self.dev
        return {"device": self.keys.device_id, "sim_seconds": self.clock.elapsed_s(), "batches": d.batches,
                "sealed": self.sealed, "depth": d.queue.depth(), "queue": d.queue.stats(),
                "transport": d.transport.stats(), "lost_samples": d.acq.lost, "readings": d.acq.readings,
                "sensor_errors": d.sensor_errors, "sensor_ok": d.sensor_ok, "healthy": d.healthy(),
                "watchdog_expired": self.watchdog.expired(), "watchdog_feeds": self.watchdog.feeds,
                "watchdog_longest_gap_ms": self.watchdog.longest_gap_ms,
                "errors_logged": self.log.errors, "warnings_logged": self.log.warnings,
                "uptime_s": d.uptime.update() if hasattr(d, "uptime") else None,
                "host_withheld_ms": getattr(self.clock, "withheld_us", 0) // 1000,  # ScaledClock only
                "status_hex": hexlify(d.status()).decode()}
