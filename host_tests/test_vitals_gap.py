"""Lost samples (Vitals.gap): null seconds in their place on the timeline, no PPG spliced across the hole, and an
allocation-free drain path, with the real driver against the simulated chip."""

from __future__ import annotations

import pytest
from test_vitals_filter import GEN

RIG = """
import vfs
from mptest import check_no_alloc, report
from sim.vclock import VirtualClock
from sim.max30102_sim import SimI2C, Max30102Sim, SyntheticPPG
from max30102 import Max30102
from acquisition import Acquisition
import vitals


def chip_and_sensor(hr_bpm=72):
    clk = VirtualClock()
    bus = SimI2C()
    chip = Max30102Sim(clk, SyntheticPPG(hr_bpm=hr_bpm))
    bus.attach(0x57, chip)
    sensor = Max30102(bus, clock=clk)
    sensor.reset()
    sensor.configure(sample_rate=100)
    return clk, bus, chip, sensor
"""

DEVICE_RIG = RIG + """
import sys
import boardconf
import hw_unix
from app import Device
from devicekeys import DeviceKeys
from sim.ramblock import RamBlockDev

WALL0 = 1800000000


def device_on_flash(device_id, wall_runs=False):
    # app.Device on a fresh LittleFS flash with the board file argv[1] and no network (only the sensor side
    # runs); its wall clock reads WALL0, or WALL0 plus the seconds since t0 when wall_runs
    bd = RamBlockDev(4096, 64)
    vfs.VfsLfs2.mkfs(bd)
    vfs.mount(vfs.VfsLfs2(bd), "/flash")
    with open("/flash/counter.fresh", "w") as f:
        f.write("6b31")  # as a deploy leaves it: the key b"k1" may start its counter at 0 (firmware/msgcounter.py)
    cfg = boardconf.load(sys.argv[1])
    cfg["mqtt"]["tls"] = False
    cfg["queue"]["path"] = "/flash/q"
    cfg["queue"]["capacity_bytes"] = 65536
    clk, bus, chip, _ = chip_and_sensor()
    net = hw_unix.Network()
    net.available = False
    keys = DeviceKeys(device_id, b"k1", bytes(16), bytes(13))
    t0 = clk.elapsed_us
    wall = (lambda: WALL0 + (clk.elapsed_us - t0) // 1000000) if wall_runs else (lambda: WALL0)
    return clk, chip, Device(cfg, keys, bus, clk, "/flash", network=net, wall_clock=wall), t0
"""


def test_lost_seconds_keep_every_later_reading_in_its_true_second(mp, repo):
    # The whole device path (app.Device: drain, vitals, batch) with a 5 s drain stall at t = 20 s and the finger
    # lifted at t = 35 s. Reading k must describe second k: the stall's seconds are null (quality `lost`) and
    # the finger is gone from reading 35 on, not from reading 30 as when the lost seconds vanished.
    r = mp.json(DEVICE_RIG + """
clk, chip, dev, _ = device_on_flash("dev-gap")
readings = []
add = dev.batch.add

def add_and_keep(hr, spo2, pi, q):
    readings.append([hr, spo2, q])
    add(hr, spo2, pi, q)

dev.batch.add = add_and_keep
dev.start()
t0 = clk.elapsed_us

def run_until(s):
    while clk.elapsed_us - t0 < s * 1000000:
        clk.advance_ms(40)
        dev.service_sensor()

run_until(20)
clk.advance_ms(5000)          # the loop stalls for 5 s: the FIFO overflows, 468 samples are lost
run_until(35)
chip.finger_on = False
run_until(45.5)
report(readings=readings, index=dev.acq.index, lost=dev.acq.lost, vitals_lost=getattr(dev.vitals, "lost", None),
       batches=dev.batches, in_batch=dev.batch.count)
""", heapsize="1M", args=(str(repo / "boards" / "sim.json"),))
    out = r["readings"]
    lost_bit, no_finger = 128, 1
    # one reading per second of the timeline (lost samples included), in order
    assert len(out) == r["index"] // 100 == 45, (len(out), r["index"])
    assert r["batches"] * 30 + r["in_batch"] == 45
    assert r["lost"] == r["vitals_lost"] and 460 <= r["lost"] <= 480  # 5.04 s due, 32 samples kept
    lost = [k for k, o in enumerate(out) if o[2] & lost_bit]
    assert lost == list(range(20, 26)), lost  # seconds 20..25 hold lost samples (the hole is 20.3..25.0)
    assert all(o[0] is None and o[1] is None for o in out[20:26])
    gone = [k for k, o in enumerate(out) if o[2] & no_finger]
    assert gone and gone[0] in (34, 35) and gone == list(range(gone[0], 45)), gone
    # the pipeline restarted after the hole: values again within 6 s, right from the first one
    back = [k for k, o in enumerate(out) if k >= 26 and o[0] is not None]
    assert back and back[0] <= 26 + 6, out[26:]
    assert all(abs(out[k][0] / 10 - 72) <= 1.0 for k in back), [out[k] for k in back]


def test_a_hole_longer_than_a_batch_ends_the_batch_instead_of_filling_the_queue_with_nulls(mp, repo):
    # Two hours without a drain (a sensor unreachable, a stalled loop): 7,200 null readings would be 240 batches
    # of nothing in the flash queue, pushing real readings out. The batch ends before the hole, the next one
    # begins after it with its true start time, and each holds only seconds that were sampled.
    r = mp.json(DEVICE_RIG + """
clk, chip, dev, t0 = device_on_flash("dev-hole", wall_runs=True)
sealed = []
seal = dev._seal

def seal_and_keep(builder, start_s):
    sealed.append([start_s - WALL0, builder.count])
    seal(builder, start_s)

dev._seal = seal_and_keep
dev.start()

def run_until(s):
    while clk.elapsed_us - t0 < s * 1000000:
        clk.advance_ms(40)
        dev.service_sensor()

run_until(20)
for _ in range(36):            # two hours without a drain; the chip follows in steps its us ticks can
    clk.advance_ms(200000)     # tell apart (< half their 2**30 us period)
    chip.sync()
run_until(7200 + 20 + 35)
report(sealed=sealed, skipped=dev.holes_skipped, in_batch=dev.batch.count, lost=dev.acq.lost)
""", heapsize="1M", args=(str(repo / "boards" / "sim.json"),))
    sealed = r["sealed"]
    assert 7190 <= r["skipped"] <= 7200, r  # the hole's seconds, not sent
    assert len(sealed) == 2, sealed  # before the hole (20 s), and the first 30 s after it
    (start0, n0), (start1, n1) = sealed
    assert abs(start0) <= 1 and n0 == 20, sealed
    assert n1 == 30 and abs(start1 - (20 + 7200)) <= 2, sealed  # true start, not the hole's
    assert r["in_batch"] <= 6


def test_gap_restarts_the_interval_window_so_no_interval_spans_the_hole(mp):
    # A hole of 0.35 s at 72 bpm (0.42 of a period): an interval measured across it would be 1.42 periods long.
    # After the gap every filter restarts, and the interval ring holds only intervals measured after it.
    r = mp.json(GEN + """
import vitals_filter as vf
from mptest import report
fs = 100
v = vitals.Vitals(fs)
step = int(72 * 65536 / 60 / fs)
ph = 0
out = []

def run(seconds):
    global ph
    for n in range(seconds * fs):
        p = TABLE[(ph >> 8) & 255]
        v.push(80000 - p * 150 // 1000, 100000 - p * 300 // 1000)
        ph += step
        while v.pending():
            out.append(v.reading())

run(20)
resets = v._st[vf.RESETS]
beats = v._st[vf.BEATS]
v.gap(35)
ph += 35 * step                      # the source went on while the samples were lost
pending_after_gap = v.pending()
run(15)
after = v._st[vf.BEATS]
ivs = [v._st[vf.RING + ((k & (vf.RING_SIZE - 1)) << 1)] / 256 for k in range(beats, after)]
report(out=out, restarted=v._st[vf.RESETS] - resets, ivs=ivs, lost=v.lost, pending=pending_after_gap)
""")
    out = r["out"]
    assert r["restarted"] == 1 and r["lost"] == 35 and r["pending"] == 0  # the hole stayed inside second 20
    assert len(out) == 35
    assert out[20][0] is None and out[20][3] == 128  # second 20 lost 35 of its samples
    # Every interval recorded since the gap lies after the hole: together they span less than the 15 s fed after
    # it (an interval from the last beat before the hole would add that beat's 0.4-1.4 periods).
    period = 100 * 60 / 72
    assert len(r["ivs"]) >= 15 and sum(r["ivs"]) <= 15 * 100, r["ivs"]
    assert sorted(r["ivs"])[len(r["ivs"]) // 2] == pytest.approx(period, rel=0.01), r["ivs"]
    # values again within 6 s (the filters' restart transient costs the first ones up to 1.5 bpm, as after a
    # finger placement), right within 1 bpm from 3 s after that
    back = [k for k, o in enumerate(out) if k > 20 and o[0] is not None]
    assert back and back[0] <= 26, out[20:]
    assert all(abs(out[k][0] / 10 - 72) <= 1.5 for k in back), out[20:]
    assert all(abs(out[k][0] / 10 - 72) <= 1.0 for k in back[3:]), out[20:]


def test_gap_and_an_overflowing_drain_allocate_nothing(mp):
    r = mp.json(RIG + """
clk, bus, chip, sensor = chip_and_sensor()
v = vitals.Vitals(sensor.output_rate)
acq = Acquisition(sensor, clk, pin=None, consumer=v)
acq.start()
due = [0]

def take():
    while v.pending():
        v.reading()

def run():
    for _ in range(100):              # 10 s of drains every 100 ms
        clk.advance_ms(100)
        acq.drain()
        due[0] += v.pending()
        v._st[vitals.vf.READY] = 0    # the readings are taken outside the lock
    clk.advance_ms(730)               # a late drain: 73 samples due, 32 fit, 41 lost
    acq.drain()
    due[0] += v.pending()
    return acq.lost

for _ in range(30):                   # warm up outside the lock, readings taken
    clk.advance_ms(100)
    acq.drain()
    take()
lost = check_no_alloc(run)
owed = v._owed
report(lost=lost, vitals_lost=v.lost, owed=owed, due=due[0], gaps=acq.gaps)
""")
    assert r["lost"] == r["vitals_lost"] == 73 - 32 == 41
    assert r["gaps"] == 1
    assert r["due"] >= 10  # a reading per second of samples was signalled under the lock
