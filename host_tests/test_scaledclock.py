"""The simulated device's clock (firmware/sim/scaledclock.py): `speed` times real time, less only the time the
host's scheduler kept the process waiting for a CPU. What the firmware does itself (computing, blocking in a
call) must count in full, or accelerated tests could not catch a firmware that starves the sensor FIFO."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import MP_HELPERS

from oxilink import mprun

CLOCK = """
import json, sys, time
from sim.scaledclock import ScaledClock

def cpu_ms():
    with open("/proc/self/schedstat") as f:
        return int(f.read().split()[0]) // 1000000

c = ScaledClock(3)
out = {}

def phase(name, work):
    c.ticks_ms()
    start, real0, withheld0, cpu0 = c.elapsed_us, time.ticks_ms(), c.withheld_us, cpu_ms()
    work(real0)
    c.ticks_ms()
    out[name] = {"device": (c.elapsed_us - start) // 1000, "real": time.ticks_diff(time.ticks_ms(), real0),
                 "withheld": (c.withheld_us - withheld0) // 1000, "cpu": cpu_ms() - cpu0}

def busy(real0, ms=300):
    while time.ticks_diff(time.ticks_ms(), real0) < ms:
        c.ticks_ms()

phase("sleeping", lambda real0: time.sleep_ms(300))  # blocked in a call: the device's own time
phase("computing", busy)  # running: the device's own time
open(sys.argv[1], "w").close()  # now another process busy on the same CPU takes turns with us
time.sleep_ms(50)
phase("sharing", lambda real0: busy(real0, 600))
print(json.dumps(out))
"""


def test_device_time_counts_the_firmware_and_leaves_out_the_hosts_other_work(tmp_path, mpbuild):
    script = tmp_path / "clock.py"
    script.write_text(CLOCK)
    flag = tmp_path / "compete"
    cpu = min(os.sched_getaffinity(0))
    pin = lambda: os.sched_setaffinity(0, {cpu})  # noqa: E731 (both on one CPU)
    hog = subprocess.Popen([sys.executable, "-c", f"import os, time\nwhile not os.path.exists({str(flag)!r}): "
                            "time.sleep(0.005)\nwhile True: pass"], preexec_fn=pin)
    try:
        proc = mprun.popen(script, [str(flag)], extra_path=[MP_HELPERS], stdout=subprocess.PIPE, text=True,
                           preexec_fn=pin)
        out = json.loads(proc.communicate(timeout=60)[0].splitlines()[-1])
    finally:
        hog.kill()
        hog.wait()
    for p in out.values():  # device time = 3 x (real time - time spent waiting for the CPU)
        assert abs(p["device"] - 3 * (p["real"] - p["withheld"])) <= 30, out
    assert out["sleeping"]["cpu"] < 100 and out["sleeping"]["device"] >= 3 * 200, out  # blocked: it counts
    assert out["computing"]["device"] >= 3 * out["computing"]["cpu"] - 30, out  # so does every CPU ms it used
    sharing = out["sharing"]
    assert sharing["withheld"] >= sharing["real"] // 4, out  # the other process had the CPU for a good part
