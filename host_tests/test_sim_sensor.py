"""The simulated MAX30102 (firmware/sim/max30102_sim.py) at the register level, through raw I2C calls."""

SETUP = """
from array import array
import micropython
from mptest import report
from sim.vclock import VirtualClock
from sim.max30102_sim import SimI2C, Max30102Sim, SyntheticPPG, CsvSource, NACK, STUCK

A = 0x57


from mptest import check_no_alloc as no_alloc


def rig(**kw):
    clk = VirtualClock()
    bus = SimI2C()
    chip = Max30102Sim(clk, **kw)
    bus.attach(A, chip)
    return clk, bus, chip


def rd(bus, reg, n=1):
    return list(bus.readfrom_mem(A, reg, n))


def wr(bus, reg, *values):
    bus.writeto_mem(A, reg, bytes(values))


def spo2_100hz(bus, fifo_config=0x0F, pa=35):
    # SpO2 mode, 4096 nA, 100 sps, 411 us; LED1 = LED2 = 7 mA
    wr(bus, 0x08, fifo_config)
    wr(bus, 0x0A, (1 << 5) | (1 << 2) | 3)
    wr(bus, 0x0C, pa, pa)
    wr(bus, 0x09, 3)


def samples(raw, nled=2):
    out = []
    for i in range(0, len(raw), 3 * nled):
        out.append([((raw[i + 3 * k] << 16) | (raw[i + 3 * k + 1] << 8) | raw[i + 3 * k + 2]) & 0x3FFFF
                    for k in range(nled)])
    return out


def expected(n, skip=0, rate=100):
    src = SyntheticPPG()
    src.set_rate(rate)
    v = array("i", [0, 0, 0])
    out = []
    for i in range(skip + n):
        src.read(v)
        if i >= skip:
            out.append([v[0], v[1]])
    return out
"""


def test_power_on_registers_ids_and_status_cleared_by_reading(mp):
    r = mp.json(SETUP + """
clk, bus, chip = rig()
ids = rd(bus, 0xFE, 2)
first = rd(bus, 0x00, 7)
second = rd(bus, 0x00, 7)
report(ids=ids, first=first, second=second, scan=bus.scan())
""")
    assert r["ids"] == [0x03, 0x15]  # REV_ID, PART_ID (auto-increment across the pair)
    assert r["first"][0] == 0x01  # PWR_RDY after power-on
    assert r["second"] == [0] * 7  # cleared by the read; pointers at 0
    assert r["scan"] == [0x57]


def test_fifo_fills_in_real_time_and_pops_one_sample_per_six_bytes(mp):
    r = mp.json(SETUP + """
clk, bus, chip = rig()
spo2_100hz(bus)
clk.advance_ms(99)
at_99ms = rd(bus, 0x04, 3)
clk.advance_ms(1)
at_100ms = rd(bus, 0x04, 3)
status = rd(bus, 0x00)
two = samples(rd(bus, 0x07, 12))     # FIFO_DATA does not auto-increment: 12 bytes = 2 samples
ptrs = rd(bus, 0x04, 3)
rest = samples(rd(bus, 0x07, 8 * 6))
report(at_99ms=at_99ms, at_100ms=at_100ms, status=status, got=two + rest, want=expected(10), ptrs=ptrs,
       after=rd(bus, 0x04, 3))
""")
    assert r["at_99ms"] == [9, 0, 0]
    assert r["at_100ms"] == [10, 0, 0]
    assert r["status"][0] & 0x40  # PPG_RDY
    assert r["ptrs"] == [10, 0, 2]
    assert r["got"] == r["want"]
    assert r["after"] == [10, 0, 10]


def test_overflow_without_rollover_loses_new_samples_and_counts_them(mp):
    r = mp.json(SETUP + """
clk, bus, chip = rig()
spo2_100hz(bus)
clk.advance_ms(500)                       # 50 samples due, 32 fit
head = rd(bus, 0x04, 3)
got = samples(rd(bus, 0x07, 6))
ovf_after_pop = rd(bus, 0x05)
rest = samples(rd(bus, 0x07, 31 * 6))
clk.advance_ms(10000)
saturated = rd(bus, 0x05)
report(head=head, got=got + rest, want=expected(32), ovf_after_pop=ovf_after_pop, saturated=saturated)
""")
    assert r["head"] == [0, 18, 0]  # WR == RD (32 stored: full), OVF_COUNTER = 50 - 32
    assert r["got"] == r["want"]  # the oldest 32 survive
    assert r["ovf_after_pop"] == [0]
    assert r["saturated"] == [31]


def test_overflow_with_rollover_overwrites_the_oldest(mp):
    r = mp.json(SETUP + """
clk, bus, chip = rig()
spo2_100hz(bus, fifo_config=0x10 | 0x0F)
clk.advance_ms(500)
head = rd(bus, 0x04, 3)
got = samples(rd(bus, 0x07, 32 * 6))
report(head=head, got=got, want=expected(32, skip=18))
""")
    assert r["head"][0] == r["head"][2] == 18
    assert r["got"] == r["want"]  # the newest 32 survive


def test_pointer_writes_reset_and_power_cycle(mp):
    r = mp.json(SETUP + """
clk, bus, chip = rig()
spo2_100hz(bus)
clk.advance_ms(200)
wr(bus, 0x04, 0, 0, 0)                    # clear WR, OVF, RD in one burst
cleared = rd(bus, 0x04, 3)
clk.advance_ms(50)
wr(bus, 0x09, 0x40)                       # RESET
after_reset = rd(bus, 0x08, 3) + rd(bus, 0x00, 7)
clk.advance_ms(500)
idle = rd(bus, 0x04, 3)
spo2_100hz(bus)
clk.advance_ms(100)
chip.power_cycle()
after_power = rd(bus, 0x00, 7) + rd(bus, 0x08, 3)
report(cleared=cleared, after_reset=after_reset, idle=idle, after_power=after_power)
""")
    assert r["cleared"] == [0, 0, 0]
    assert r["after_reset"] == [0] * 10  # configuration and FIFO back to power-on values, RESET cleared
    assert r["idle"] == [0, 0, 0]  # mode 0: no sampling
    assert r["after_power"] == [0x01] + [0] * 9  # PWR_RDY, defaults


def test_int_pin_follows_a_full_and_ppg_rdy(mp):
    r = mp.json(SETUP + """
clk, bus, chip = rig()
edges = []
chip.pin.irq(handler=lambda p: edges.append(chip.produced), trigger=chip.pin.IRQ_FALLING)
rd(bus, 0x00)                             # PWR_RDY pulls INT low until this read clears it
spo2_100hz(bus, fifo_config=0x0F)         # A_FULL with 15 free = 17 samples
wr(bus, 0x02, 0x80)
levels = []
for _ in range(20):
    clk.advance_ms(10)
    levels.append(chip.pin.value())
rd(bus, 0x00)
released = chip.pin.value()
rd(bus, 0x07, 32 * 6)                     # empty it
wr(bus, 0x02, 0x40)                       # PPG_RDY only
rd(bus, 0x00)
quiet = chip.pin.value()
clk.advance_ms(10)
ready = chip.pin.value()
report(levels=levels, edges=edges, released=released, quiet=quiet, ready=ready)
""")
    assert r["levels"] == [1] * 16 + [0] * 4  # low from the 17th sample on
    assert r["edges"][:2] == [0, 17]  # power-on, then the 17th sample
    assert r["released"] == 1
    assert r["quiet"] == 1 and r["ready"] == 0


def test_led_current_adc_range_resolution_and_faults_shape_the_counts(mp):
    r = mp.json(SETUP + """
def first_sample(setup):
    clk, bus, chip = rig()
    spo2_100hz(bus)
    setup(bus, chip)
    clk.advance_ms(10)
    return samples(rd(bus, 0x07, 6))[0]
base = first_sample(lambda bus, chip: None)
double = first_sample(lambda bus, chip: wr(bus, 0x0C, 70, 70))
half_range = first_sample(lambda bus, chip: wr(bus, 0x0A, (2 << 5) | (1 << 2) | 3))
res15 = first_sample(lambda bus, chip: wr(bus, 0x0A, (1 << 5) | (1 << 2) | 0))
full = first_sample(lambda bus, chip: wr(bus, 0x0C, 255, 255))
def no_finger(bus, chip):
    chip.finger_on = False
def saturate(bus, chip):
    chip.saturate = True
off = first_sample(no_finger)
sat = first_sample(saturate)
report(base=base, double=double, half_range=half_range, res15=res15, full=full, off=off, sat=sat)
""")
    base = r["base"]
    assert r["double"] == [2 * v for v in base]
    assert r["half_range"] == [v // 2 for v in base]
    assert r["res15"] == [v & ~7 for v in base]
    assert r["full"] == [0x3FFFF, 0x3FFFF]
    assert all(v < 2000 for v in r["off"])
    assert r["sat"] == [0x3FFFF, 0x3FFFF]


def test_bus_faults_raise_the_esp32_errnos(mp):
    r = mp.json(SETUP + """
clk, bus, chip = rig()
out = []
for fault in (NACK, STUCK):
    bus.fault = fault
    for call in (lambda: rd(bus, 0xFF), lambda: wr(bus, 0x09, 3),
                 lambda: bus.readfrom_mem_into(A, 0x00, bytearray(7))):
        try:
            call()
            out.append(None)
        except OSError as e:
            out.append(e.errno)
    out.append(bus.scan())
bus.fault = None
try:
    bus.readfrom_mem(0x3C, 0, 1)
    absent = None
except OSError as e:
    absent = e.errno
report(out=out, absent=absent, back=rd(bus, 0xFF))
""")
    assert r["out"] == [19, 19, 19, [], 116, 116, 116, []]
    assert r["absent"] == 19
    assert r["back"] == [0x15]


def test_die_temperature_conversion_takes_time_and_sets_its_flag(mp):
    r = mp.json(SETUP + """
clk, bus, chip = rig()
chip.die_temp_c16 = 25 * 16 + 3
wr(bus, 0x21, 1)
busy = rd(bus, 0x21)
clk.advance_ms(30)
done = rd(bus, 0x21) + rd(bus, 0x1F, 2) + [rd(bus, 0x01)[0] & 0x02]
report(busy=busy, done=done)
""")
    assert r["busy"] == [1]
    assert r["done"] == [0, 25, 3, 0x02]


def test_synthetic_source_is_ppg_like_and_allocation_free(mp):
    r = mp.json(SETUP + """
src = SyntheticPPG(hr_bpm=60, ratio=0.5)
src.set_rate(100)
v = array("i", [0, 0, 0])
red = array("i", bytearray(4 * 1000))
ir = array("i", bytearray(4 * 1000))
def run():
    for i in range(1000):
        src.read(v)
        red[i] = v[0]
        ir[i] = v[1]
no_alloc(run)
# pulse troughs: one per second at 60 bpm
minima = [i for i in range(1, 999) if ir[i] == min(ir[max(0, i - 50):i + 50])]
report(ir_min=min(ir), ir_max=max(ir), red_mean=sum(red) // 1000, ir_mean=sum(ir) // 1000, minima=len(minima))
""")
    assert 99000 < r["ir_mean"] < 101000 and 89000 < r["red_mean"] < 91000
    assert 300 < r["ir_max"] - r["ir_min"] < 2000
    assert 9 <= r["minima"] <= 11


def test_csv_source_streams_a_long_recording(mp, tmp_path):
    rows = 48_000
    path = tmp_path / "rec.csv"
    with path.open("w") as f:
        f.write("time, IR ,Red\n")
        for i in range(rows):
            f.write(f"{i / 100:.2f},{100000 + i % 997},{90000 + i % 991}.5\r\n")
    r = mp.json(SETUP + f"""
import gc
src = CsvSource({str(path)!r})
v = array("i", [0, 0, 0])
state = [0, 0]
def run():
    bad = 0
    for i in range({rows} + 5):
        src.read(v)
        k = i % {rows}
        if v[0] != 90000 + k % 991 or v[1] != 100000 + k % 997 or v[2] != 0:
            bad += 1
    return bad
gc.collect()
free = gc.mem_free()
bad = no_alloc(run)
report(bad=bad, rows=src.rows, loops=src.loops, free_drop=free - gc.mem_free())
""", heapsize="100K")
    assert r["bad"] == 0
    assert r["rows"] == 48_005 and r["loops"] == 1
    assert r["free_drop"] == 0


def test_csv_source_needs_red_and_ir_columns(mp, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time,PLETH\n0,1\n")
    r = mp.json(SETUP + f"""
try:
    CsvSource({str(path)!r})
    msg = None
except ValueError as e:
    msg = str(e)
report(msg=msg)
""")
    assert "no red column" in r["msg"] and "pleth" in r["msg"]


def test_sim_runs_on_the_real_clock(mp):
    r = mp.json(SETUP + """
import time
from clock import Clock
bus = SimI2C()
chip = Max30102Sim(Clock())
bus.attach(A, chip)
spo2_100hz(bus)
time.sleep_ms(100)
report(wr=rd(bus, 0x04)[0])
""")
    assert r["wr"] >= 5  # about 10 samples arrived in real time
