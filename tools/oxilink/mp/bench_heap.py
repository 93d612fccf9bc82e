# MicroPython script (unix port): the firmware's heap on a board, measured. Run by tools/oxilink/bench_heap.py
# with the firmware compiled to .mpy (as deploy copies it) first on MICROPYPATH.
# Prints one JSON object: heap taken by importing each module, by the device's state after start(), and
# after `seconds` of simulated sampling (network away, TLS off: on an ESP32 mbedTLS allocates from the IDF heap).
import gc
import json
import sys

import vfs
from sim.max30102_sim import Max30102Sim, SimI2C, SyntheticPPG
from sim.ramblock import RamBlockDev
from sim.vclock import VirtualClock

MODULES = ("boardconf", "log", "clock", "uptime", "cbor", "aesccm", "cose", "batch", "msgcounter", "queuerecord",
           "flashqueue", "max30102", "acquisition", "vitals_filter", "vitals", "backoff", "resolver",
           "paced_socket", "umqtt.simple", "mqtt_link", "tlsconfig", "transport", "sntp", "devicekeys", "app")

board, seconds = sys.argv[1], int(sys.argv[2])
bd = RamBlockDev(4096, 64)  # the flash: RAM here, not heap on a board, so allocated before measuring
vfs.VfsLfs2.mkfs(bd)
vfs.mount(vfs.VfsLfs2(bd), "/flash")
with open("/flash/counter.fresh", "w") as f:
    f.write("6b31")  # the deploy marker for the key below
clk = VirtualClock()
bus = SimI2C()
bus.attach(0x57, Max30102Sim(clk, SyntheticPPG(hr_bpm=72)))
import hw_unix  # noqa: E402 - the board's hw_esp32 stands here; not counted

imports = {}
gc.collect()
before = gc.mem_alloc()
for name in MODULES:
    __import__(name)
    gc.collect()
    now = gc.mem_alloc()
    imports[name] = now - before
    before = now

import boardconf  # noqa: E402
from app import Device  # noqa: E402
from devicekeys import DeviceKeys  # noqa: E402

cfg = boardconf.load(board)
cfg["mqtt"]["tls"] = False
cfg["queue"]["path"] = "/flash/q"
net = hw_unix.Network()
net.available = False
gc.collect()
start = gc.mem_alloc()
dev = Device(cfg, DeviceKeys("dev-heap", b"k1", bytes(16), bytes(13)), bus, clk, "/flash", network=net,
             wall_clock=lambda: 1800000000)
dev.start()
gc.collect()
after_start = gc.mem_alloc() - start
peak = after_start
t0 = clk.elapsed_us
while clk.elapsed_us - t0 < seconds * 1000000:
    clk.advance_ms(40)
    dev.run_once()
    if dev.acq.drains % 250 == 0:
        gc.collect()
        peak = max(peak, gc.mem_alloc() - start)
gc.collect()
print(json.dumps({"imports": imports, "device_after_start": after_start, "device_after_run": gc.mem_alloc() - start,
                  "device_peak_sampled": peak, "seconds": seconds, "batches": dev.batches,
                  "lost_samples": dev.acq.lost}))
