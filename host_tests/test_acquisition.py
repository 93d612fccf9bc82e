"""Acquisition core (firmware/acquisition.py) driving the real driver against the simulated chip.

Every sample delivered is checked against a second copy of the same seeded source, so order, values, losses
and the timeline are all asserted, not just counted.
"""

import pytest

SETUP = """
from array import array
import micropython
from mptest import report


from mptest import check_no_alloc as no_alloc
from sim.vclock import VirtualClock
from sim.max30102_sim import SimI2C, Max30102Sim, SyntheticPPG, NACK
from max30102 import Max30102
from acquisition import Acquisition, index_diff


class Check:
    # Consumer: compares every pushed sample with a twin of the chip's source; a reading every `rate` samples.
    def __init__(self, rate, full=0x3FFFF, swap=False):
        self.src = SyntheticPPG()
        self.src.set_rate(rate)
        self.exp = array("i", [0, 0, 0])
        self.rate = rate
        self.full = full
        self.swap = swap
        self.n = 0
        self.bad = 0
        self.first_bad = -1
        self.gaps = 0

    def push(self, red, ir):
        self.src.read(self.exp)
        er = self.exp[0] & self.full
        ei = self.exp[1] & self.full
        if self.swap:
            er, ei = ei, er
        if red != er or ir != ei:
            if self.bad == 0:
                self.first_bad = self.n
            self.bad += 1
        self.n += 1
        return self.n % self.rate == 0

    def gap(self, n):
        # The chip lost the newest n samples: skip them in the twin source too.
        for _ in range(n):
            self.src.read(self.exp)
        self.n += n


def rig(pin=True, ring_len=512, window=None, hop=None, swapped_leds=False, **cfg):
    clk = VirtualClock()
    bus = SimI2C()
    chip = Max30102Sim(clk, swapped_leds=swapped_leds)
    bus.attach(0x57, chip)
    sensor = Max30102(bus, clock=clk)
    sensor.reset()
    sensor.configure(**cfg)
    check = Check(sensor.output_rate, sensor.full_scale, cfg.get("swap_red_ir", False) != swapped_leds)
    acq = Acquisition(sensor, clk, ring_len=ring_len, window=window, hop=hop,
                      pin=chip.pin if pin else None, consumer=check)
    acq.start()
    return clk, bus, chip, sensor, acq, check


def stats(acq, check, chip):
    return dict(index=acq.index, received=acq.received, lost=acq.lost, gaps=acq.gaps, bad=check.bad,
                first_bad=check.first_bad, checked=check.n, produced=chip.produced, readings=acq.readings,
                bus_errors=acq.bus_errors, drains=acq.drains, int_misses=acq.int_misses,
                finger_on=acq.finger_on, saturated=acq.saturated)
"""


@pytest.mark.parametrize(
    ("sample_rate", "averaging", "pulse_width_us", "use_pin"),
    [(100, 1, 411, True), (400, 4, 411, True), (1600, 4, 69, True), (100, 1, 411, False)],
    ids=["100Hz-int", "400Hz-avg4-int", "1600Hz-avg4-int", "100Hz-polled"],
)
def test_ten_simulated_minutes_on_schedule_lose_nothing(mp, sample_rate, averaging, pulse_width_us, use_pin):
    r = mp.json(SETUP + f"""
clk, bus, chip, sensor, acq, check = rig(pin={use_pin}, sample_rate={sample_rate}, averaging={averaging},
                                         pulse_width_us={pulse_width_us})
t0 = clk.elapsed_us
while clk.elapsed_us - t0 < 600 * 1000000:
    acq.wait_and_drain(1000)
report(rate=sensor.output_rate, in_fifo=chip._count, elapsed_us=clk.elapsed_us - t0, **stats(acq, check, chip))
""", timeout=600)
    rate = sample_rate // averaging
    seconds = 600
    assert r["rate"] == rate
    assert r["lost"] == 0 and r["gaps"] == 0 and r["bus_errors"] == 0 and r["int_misses"] == 0
    # Everything the chip converted was delivered, in order, with the source's values, except what is
    # still waiting in the FIFO below the drain threshold.
    assert r["bad"] == 0 and r["first_bad"] == -1
    assert r["received"] == r["index"] == r["checked"]
    assert r["produced"] == r["received"] + r["in_fifo"]
    assert r["elapsed_us"] >= seconds * 1_000_000
    assert r["produced"] == r["elapsed_us"] * rate // 1_000_000  # sampling started with the clock at t0
    assert r["in_fifo"] < 32
    assert r["readings"] == r["received"] // rate
    assert r["finger_on"] is True and r["saturated"] is False


@pytest.mark.parametrize("delay_samples", [33, 50, 63, 100])
def test_late_drain_counts_exactly_the_lost_samples(mp, delay_samples):
    r = mp.json(SETUP + f"""
clk, bus, chip, sensor, acq, check = rig(pin=False)
for _ in range(10):
    clk.advance_ms(100)
    acq.drain()
before = stats(acq, check, chip)
clk.advance_ms({delay_samples} * 10)        # 100 Hz: one sample every 10 ms
n_late = acq.drain()
ovf = sensor.overflow
late = stats(acq, check, chip)
for _ in range(20):
    clk.advance_ms(100)
    acq.drain()
report(before=before, n_late=n_late, ovf=ovf, late=late, after=stats(acq, check, chip))
""")
    expected_lost = delay_samples - 32
    assert r["before"]["lost"] == 0 and r["before"]["received"] == 100
    assert r["n_late"] == 32
    assert r["ovf"] == min(expected_lost, 31)
    assert r["late"]["lost"] == expected_lost
    assert r["late"]["gaps"] == 1
    # The timeline keeps real time: the lost samples occupy their indexes.
    assert r["late"]["index"] == 100 + delay_samples
    after = r["after"]
    assert after["lost"] == expected_lost and after["gaps"] == 1
    assert after["index"] == 100 + delay_samples + 200
    assert after["received"] == 100 + 32 + 200
    # Samples after the gap are the source's samples after the lost ones (checked by Check.gap()).
    assert after["bad"] == 0


def test_lost_samples_beyond_the_saturated_counter_come_from_the_clock(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor, acq, check = rig(pin=False)
clk.advance_ms(100)
acq.drain()
clk.advance_ms(10000)                 # 1000 samples due, 32 fit
acq.drain()
ovf = sensor.overflow
clk.advance_ms(100)
acq.drain()
report(ovf=ovf, **stats(acq, check, chip))
""")
    assert r["ovf"] == 31
    assert r["lost"] == 1000 - 32
    assert r["gaps"] == 1
    assert r["index"] == 10 + 1000 + 10
    assert r["bad"] == 0


def test_drain_and_wait_allocate_nothing(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor, acq, check = rig(pin=True, sample_rate=400, averaging=1, pulse_width_us=411)
def run(seconds=10):
    t0 = clk.elapsed_us
    while clk.elapsed_us - t0 < seconds * 1000000:
        acq.wait_and_drain(1000)
    clk.advance_ms(100)                # late: 40 samples, 8 lost (the chip's overflow counter)
    acq.drain()
    clk.advance_ms(400)                # very late: 160 samples, the counter saturates: lost from the clock
    acq.drain()
    return acq.received
acq.wait_and_drain(1000)               # warm up outside the lock
received = no_alloc(run)
acq2 = Acquisition(sensor, clk, pin=None, consumer=check)
acq2.start()
def polled(k=50):
    for _ in range(k):
        acq2.wait_and_drain(1000)
    return acq2.received
received2 = no_alloc(polled)
report(total=received, polled=received2, **stats(acq, check, chip))
""")
    assert r["lost"] == 8 + (160 - 32) and r["gaps"] == 2  # both overflow paths ran under the lock
    assert r["total"] >= 4000 - 32
    assert r["polled"] > 0
    assert r["bad"] == 0
    assert r["readings"] >= 9


def test_nack_mid_run_raises_then_resumes_without_losing_fifo_samples(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor, acq, check = rig(pin=True)
for _ in range(20):
    acq.wait_and_drain(1000)
clk.advance_ms(120)                    # 12 samples wait in the FIFO
bus.fault = NACK
errno = None
try:
    acq.drain()
except OSError as e:
    errno = e.errno
clk.advance_ms(80)                     # 8 more while the bus is down: 20 in the FIFO
bus.fault = None
reconfigured = sensor.recover()
n = acq.drain()
for _ in range(20):
    acq.wait_and_drain(1000)
report(errno=errno, reconfigured=reconfigured, n=n, **stats(acq, check, chip))
""")
    assert r["errno"] == 19
    assert r["bus_errors"] == 1
    assert r["reconfigured"] is False
    assert r["n"] >= 20
    assert r["lost"] == 0 and r["gaps"] == 0 and r["bad"] == 0
    assert r["received"] == r["index"] == r["checked"]


@pytest.mark.parametrize("days", [2, 5, 8, 30])
def test_a_bus_outage_of_any_length_is_measured_not_wrapped(mp, days):
    """Ticks wrap every 12.4 days and ticks_diff spans half of that: the loss after an outage must come from
    time the acquisition kept counting, not from a stamp taken before it (which reads 0 after 6.2 days)."""
    r = mp.json(SETUP + f"""
clk, bus, chip, sensor, _acq, _check = rig(pin=False)
acq = Acquisition(sensor, clk, pin=None)   # no twin consumer: it would replay every lost sample
acq.start()
for _ in range(10):
    clk.advance_ms(100)
    acq.drain()
bus.fault = NACK
failed = 0
for hour in range({days} * 24):   # the main loop keeps trying (and failing) to drain, here once an hour
    for _ in range(18):            # the chip's us ticks must be followed at < half their period
        clk.advance_ms(200000)
        chip.sync()
    try:
        acq.drain()
    except OSError:
        failed += 1
bus.fault = None
n = acq.drain()
report(failed=failed, n=n, lost=acq.lost, gaps=acq.gaps, ovf=chip._ovf)
""")
    assert r["failed"] == days * 24 and r["gaps"] == 1
    seconds = min(days * 24 * 3600, 0x10000000 // 1000)  # saturates at _MAX_GAP_MS (~3.1 days)
    assert r["lost"] == seconds * 100 - r["n"], r  # 93e28bd, 8 days: 31 (the stamp read as in the future)


def test_a_dead_int_line_degrades_to_polling(mp):
    r = mp.json(SETUP + """
class DeadPin:
    IRQ_FALLING = 2
    def irq(self, handler=None, trigger=2):
        pass
    def value(self):
        return 1
clk, bus, chip, sensor, acq, check = rig(pin=False)
acq = Acquisition(sensor, clk, pin=DeadPin(), consumer=check)
acq.start()
t0 = clk.elapsed_us
while clk.elapsed_us - t0 < 60 * 1000000:
    acq.wait_and_drain(1000)
report(misses=acq.int_misses, **stats(acq, check, chip))
""")
    assert r["lost"] == 0 and r["bad"] == 0 and r["received"] >= 6000 - 32
    assert r["misses"] == r["drains"] > 0


def test_power_cycle_is_recovered_and_counted_as_a_gap(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor, acq, check = rig(pin=False)
for _ in range(10):
    clk.advance_ms(100)
    acq.drain()
chip.power_cycle()
clk.advance_ms(150)
n = acq.drain()
restarted = sensor.restarted
lost = acq.lost
clk.advance_ms(100)
n2 = acq.drain()
report(n=n, n2=n2, restarted=restarted, lost_at_restart=lost, mode=chip._regs[0x09],
       **stats(acq, check, chip))
""")
    assert r["restarted"] is True and r["n"] == 0
    assert r["mode"] == 3  # SpO2 mode re-applied
    assert r["lost_at_restart"] == 15 and r["gaps"] == 1
    assert r["n2"] == 10
    assert r["index"] == 100 + 15 + 10


def test_windows_follow_the_timeline(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor, acq, check = rig(pin=False, ring_len=512, window=200, hop=100)
first = 0x1FFFFFFF - 150               # start just before the index wrap
acq.index = acq._next_window = acq.clean_from = first
twin = SyntheticPPG()
twin.set_rate(100)
expected = array("i", bytearray(4 * 300))
tmp = array("i", [0, 0, 0])
for i in range(300):
    twin.read(tmp)
    expected[i] = tmp[1]
def drains(k):
    for _ in range(k):
        clk.advance_ms(100)
        acq.drain()
def windows():
    out = []
    while True:
        s = acq.next_window()
        if s < 0:
            return out
        out.append(s)
drains(30)                              # 300 samples
starts = windows()
ok = True
for s in starts:
    for i in range(acq.window):
        if acq.ir[(s + i) & acq.mask] != expected[index_diff(s, first) + i]:
            ok = False
wrapped = acq.index < first
clk.advance_ms(600)                    # 60 samples due, 32 fit: 28 lost
acq.drain()
gap_end = index_diff(acq.index, first)
drains(30)
late = [[index_diff(s, first), acq.window_clean(s)] for s in windows()]
drains(100)                            # the window reader lags far behind: overwritten windows are skipped
s = acq.next_window()
report(starts=[index_diff(s, first) for s in starts], ok=ok, wrapped=wrapped, gap_end=gap_end, late=late,
       dropped=acq.windows_dropped, after_lag=index_diff(s, first), index=index_diff(acq.index, first))
""")
    assert r["starts"] == [0, 100]  # 300 samples complete [0, 200) and [100, 300)
    assert r["ok"] is True
    assert r["wrapped"] is True
    assert r["gap_end"] == 300 + 32 + 28
    assert r["late"] == [[200, False], [300, False], [400, True]]  # the gap is at 332..359
    assert r["index"] == 360 + 300 + 1000
    assert r["dropped"] == 7
    assert r["after_lag"] == 1200


def test_finger_off_and_saturation_are_flagged(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor, acq, check = rig(pin=False)
def step():
    clk.advance_ms(100)
    acq.drain()
    return [acq.finger_on, acq.saturated, acq.dc]
on = step()
chip.finger_on = False
step()
off = step()
chip.finger_on = True
step()
back = step()
chip.saturate = True
sat = step()
n_sat = acq.saturated_samples
chip.saturate = False
step()
report(on=on, off=off, back=back, sat=sat, n_sat=n_sat, last=step())
""")
    assert r["on"][:2] == [True, False] and r["on"][2] > 90000
    assert r["off"][:2] == [False, False] and r["off"][2] < 30000  # below finger_threshold
    assert r["back"][:2] == [True, False]
    assert r["sat"][1] is True and r["n_sat"] == 10
    assert r["last"][1] is False


def test_swap_red_ir_matches_the_board_wiring(mp):
    r = mp.json(SETUP + """
out = {}
# (board LED wiring swapped?, swap_red_ir): the Check consumer expects swapped channels when they differ.
for board, setting in ((True, True), (True, False), (False, True)):
    clk, bus, chip, sensor, acq, check = rig(pin=False, swapped_leds=board, swap_red_ir=setting)
    for _ in range(50):
        clk.advance_ms(100)
        acq.drain()
    out["%s-%s" % (board, setting)] = [acq.received, check.bad, acq.red[0] < acq.ir[0]]
report(**out)
""")
    # The source's red DC (90000) is below its IR DC (100000): only a matching setting keeps red < ir.
    assert r == {"True-True": [500, 0, True], "True-False": [500, 0, False], "False-True": [500, 0, False]}


def test_fits_an_esp32_heap(mp):
    r = mp.json(SETUP + """
import gc
gc.collect()
clk, bus, chip, sensor, acq, check = rig(pin=True, ring_len=1024, sample_rate=400, averaging=1)
t0 = clk.elapsed_us
while clk.elapsed_us - t0 < 60 * 1000000:
    acq.wait_and_drain(1000)
gc.collect()
report(free=gc.mem_free(), **stats(acq, check, chip))
""", heapsize="100K")
    assert r["lost"] == 0 and r["bad"] == 0 and r["received"] >= 400 * 60 - 32
    assert r["free"] > 40000


def test_bad_ring_length_is_a_value_error(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor, acq, check = rig(pin=False)
msgs = []
for kw in (dict(ring_len=500), dict(ring_len=256, window=300)):
    try:
        Acquisition(sensor, clk, **kw)
    except ValueError as e:
        msgs.append(str(e))
report(msgs=msgs)
""")
    assert len(r["msgs"]) == 2
    assert "ring_len" in r["msgs"][0] and "power of two" in r["msgs"][0]
    assert "window" in r["msgs"][1]


def test_same_code_runs_on_the_real_clock(mp):
    r = mp.json(SETUP + """
import clock
bus = SimI2C()
chip = Max30102Sim(clock)
bus.attach(0x57, chip)
sensor = Max30102(bus)                 # default: the board clock
sensor.reset()
sensor.configure()
check = Check(100)
acq = Acquisition(sensor, clock, pin=chip.pin, consumer=check)
acq.start()
counts = [acq.wait_and_drain(2000) for _ in range(3)]
report(counts=counts, **stats(acq, check, chip))
""")
    assert all(n >= 17 for n in r["counts"])  # each wait ended on A_FULL (17 samples), not on the timeout
    assert r["lost"] == 0 and r["bad"] == 0 and r["int_misses"] == 0
