"""MAX30102 driver (firmware/max30102.py) against the register-level simulated chip."""

SETUP = """
from array import array
import micropython
from mptest import report
from sim.vclock import VirtualClock
from sim.max30102_sim import SimI2C, Max30102Sim, SyntheticPPG, NACK, STUCK
from max30102 import Max30102


from mptest import check_no_alloc as no_alloc


def rig(part_id=0x15, swapped_leds=False, **cfg):
    clk = VirtualClock()
    bus = SimI2C()
    chip = Max30102Sim(clk, part_id=part_id, swapped_leds=swapped_leds)
    bus.attach(0x57, chip)
    sensor = Max30102(bus, clock=clk)
    sensor.reset()
    sensor.configure(**cfg)
    return clk, bus, chip, sensor


def twin(rate):
    src = SyntheticPPG()
    src.set_rate(rate)
    return src, array("i", [0, 0, 0])


def error(fn):
    try:
        fn()
    except (OSError, ValueError) as e:
        return [type(e).__name__, e.errno if isinstance(e, OSError) else None, str(e)]
    return None
"""


def test_absent_chip_nack_and_wrong_part_id_raise_a_clear_oserror(mp):
    r = mp.json(SETUP + """
clk = VirtualClock()
empty = SimI2C()
nacking = SimI2C()
nacking.attach(0x57, Max30102Sim(clk))
nacking.fault = NACK
other = SimI2C()
other.attach(0x57, Max30102Sim(clk, part_id=0x11))
report(absent=error(lambda: Max30102(empty, clock=clk)),
       nack=error(lambda: Max30102(nacking, clock=clk)),
       wrong=error(lambda: Max30102(other, clock=clk)),
       other_address=error(lambda: Max30102(other, address=0x58, clock=clk)))
""")
    for key in ("absent", "nack", "wrong"):
        assert r[key][0] == "OSError"
        assert r[key][2].startswith("no MAX30102 at 0x57")
    assert "bus error 19" in r["absent"][2] and "bus error 19" in r["nack"][2]
    assert "part ID 0x11" in r["wrong"][2]
    assert r["other_address"][2].startswith("no MAX30102 at 0x58")


def test_configure_from_board_config_writes_the_registers(mp):
    r = mp.json(SETUP + """
import boardconf
cfg = boardconf.validate({"board": "x", "platform": "unix", "sensor": {
    "model": "max30105", "mode": "multi", "sample_rate": 400, "averaging": 4, "pulse_width_us": 215,
    "adc_range_na": 8192, "led_red_ma": 12.6, "led_ir_ma": 25.0, "led_green_ma": 3.2, "fifo_almost_full": 10}})
clk, bus, chip, sensor = rig()
sensor.configure_from(cfg["sensor"])
regs = chip._regs
report(fifo=regs[0x08], mode=regs[0x09], spo2=regs[0x0A], led=[regs[0x0C], regs[0x0D], regs[0x0E]],
       slots=[regs[0x11], regs[0x12]], rate=sensor.output_rate, channels=sensor.channels,
       almost_full=sensor.almost_full, full_scale=sensor.full_scale)
""")
    assert r["fifo"] == (2 << 5) | 10  # SMP_AVE 4, rollover off, A_FULL 10
    assert r["mode"] == 7
    assert r["spo2"] == (2 << 5) | (3 << 2) | 2  # 8192 nA, 400 sps, 215 us
    assert r["led"] == [63, 125, 16]  # 0.2 mA steps
    assert r["slots"] == [0x21, 0x03]  # slot1 LED1 (red), slot2 LED2 (IR), slot3 LED3 (green)
    assert r["rate"] == 100 and r["channels"] == 3
    assert r["almost_full"] == 22
    assert r["full_scale"] == 0x3FFFE  # 17-bit resolution, left-justified


def test_bad_settings_name_the_field(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor = rig()
report(errors=[error(lambda: sensor.configure(sample_rate=123)),
               error(lambda: sensor.configure(led_red_ma=60)),
               error(lambda: sensor.configure(mode="fast")),
               error(lambda: sensor.configure(led_green_ma=5)),
               error(lambda: sensor.configure(fifo_almost_full=16))])
""")
    fields = ["sensor.sample_rate", "sensor.led_red_ma", "sensor.mode", "sensor.led_green_ma",
              "sensor.fifo_almost_full"]
    assert len(r["errors"]) == len(fields)
    for err, field in zip(r["errors"], fields, strict=True):
        assert err[0] == "ValueError" and err[2].startswith(field)
    assert "allowed: 50, 100, 200" in r["errors"][0][2]


def test_read_fifo_reads_everything_in_one_transaction_across_pointer_wrap(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor = rig()
src, exp = twin(100)
counts = []
transactions = []
bad = 0
for step in range(40):
    clk.advance_ms(10 * (1 + step % 29))         # 1..29 samples per read: the pointers wrap many times
    t = bus.transactions
    n = sensor.read_fifo()
    transactions.append(bus.transactions - t)
    counts.append(n)
    for i in range(n):
        src.read(exp)
        if sensor.red[i] != exp[0] or sensor.ir[i] != exp[1]:
            bad += 1
report(counts=counts, transactions=sorted(set(transactions)), bad=bad, total=sum(counts),
       produced=chip.produced)
""")
    assert r["counts"] == [1 + step % 29 for step in range(40)]
    assert r["transactions"] == [2]  # status burst + one FIFO burst
    assert r["bad"] == 0 and r["total"] == r["produced"]


def test_full_fifo_with_equal_pointers_is_full_not_empty(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor = rig()
src, exp = twin(100)
sensor.read_fifo()
clk.advance_ms(320)                 # exactly 32 samples: WR == RD and OVF == 0, only PPG_RDY tells
ptrs = [chip._wr, chip._rd, chip._ovf]
n_exact = sensor.read_fifo()
ok = True
for i in range(n_exact):
    src.read(exp)
    ok = ok and sensor.red[i] == exp[0]
clk.advance_ms(320)
sensor.recover()                    # a status read in between clears PPG_RDY on the chip
n_after_status_read = sensor.read_fifo()
empty = sensor.read_fifo()
clk.advance_ms(400)                 # 40 samples: 8 lost
n_over = sensor.read_fifo()
report(ptrs=ptrs, n_exact=n_exact, ok=ok, n_after_status_read=n_after_status_read, empty=empty,
       n_over=n_over, ovf=sensor.overflow)
""")
    assert r["ptrs"][0] == r["ptrs"][1] and r["ptrs"][2] == 0
    assert r["n_exact"] == 32 and r["ok"] is True
    assert r["n_after_status_read"] == 32
    assert r["empty"] == 0
    assert r["n_over"] == 32 and r["ovf"] == 8


def test_read_fifo_allocates_nothing(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor = rig(mode="multi", model="max30105", led_green_ma=5.0)
def run():
    total = 0
    for step in range(200):
        clk.advance_ms(10 * (1 + step % 40))     # includes overflowing reads
        total += sensor.read_fifo()
    return total
report(total=no_alloc(run))
""")
    assert r["total"] > 200 * 10


def test_modes_and_channel_layout(mp):
    r = mp.json(SETUP + """
out = {}
for name, cfg in (("hr", dict(mode="hr")),
                  ("swap", dict(swap_red_ir=True, led_red_ma=3.0, led_ir_ma=7.0, swapped_leds=True)),
                  ("green", dict(mode="multi", model="max30101", led_green_ma=7.0))):
    clk, bus, chip, sensor = rig(**cfg)
    src, exp = twin(100)
    clk.advance_ms(50)
    n = sensor.read_fifo()
    src.read(exp)
    out[name] = dict(n=n, channels=sensor.channels, red=sensor.red[0], ir=sensor.ir[0], green=sensor.green[0],
                     exp=list(exp), led=[chip._regs[0x0C], chip._regs[0x0D]])
report(**out)
""")
    hr = r["hr"]
    assert hr["n"] == 5 and hr["channels"] == 1
    assert hr["red"] == hr["exp"][0] and hr["ir"] == 0 and hr["green"] == 0
    swap = r["swap"]
    # LED1 drives the IR LED on this board: it gets the IR current, and its data is reported as ir.
    assert swap["led"] == [35, 15]
    assert swap["ir"] == swap["exp"][1] and swap["red"] == swap["exp"][0] * 15 // 35 > 0
    green = r["green"]
    assert green["channels"] == 3 and green["green"] == green["exp"][2]
    assert green["red"] == green["exp"][0] and green["ir"] == green["exp"][1]


def test_die_temperature(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor = rig()
chip.die_temp_c16 = 36 * 16 + 5
warm = sensor.temperature()
chip.die_temp_c16 = -7 * 16 + 8       # -6.5 degC: TINT is two's complement, TFRAC adds
cold = sensor.temperature_c16()
report(warm=warm, cold=cold, busy=chip._regs[0x21])
""")
    assert r["warm"] == 36 + 5 / 16
    assert r["cold"] == -7 * 16 + 8
    assert r["busy"] == 0


def test_nack_and_stuck_bus_surface_as_oserror_then_reads_resume(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor = rig()
src, exp = twin(100)
clk.advance_ms(100)
first = sensor.read_fifo()
for i in range(first):
    src.read(exp)
clk.advance_ms(100)
errors = []
for fault in (NACK, STUCK):
    bus.fault = fault
    errors.append(error(sensor.read_fifo))
    clk.advance_ms(50)
bus.fault = None
n = sensor.read_fifo()
ok = True
for i in range(n):
    src.read(exp)
    ok = ok and sensor.red[i] == exp[0] and sensor.ir[i] == exp[1]
report(errors=errors, n=n, ok=ok, ovf=sensor.overflow)
""")
    assert [e[1] for e in r["errors"]] == [19, 116]
    assert r["n"] == 20 and r["ok"] is True and r["ovf"] == 0


def test_power_cycle_is_detected_and_the_configuration_restored(mp):
    r = mp.json(SETUP + """
clk, bus, chip, sensor = rig(sample_rate=200, averaging=2, led_red_ma=10.0)
image = [chip._regs[a] for a in (0x08, 0x09, 0x0A, 0x0C, 0x0D)]
clk.advance_ms(100)
sensor.read_fifo()
chip.power_cycle()
defaults = [chip._regs[a] for a in (0x08, 0x09, 0x0A, 0x0C, 0x0D)]
via_read = [sensor.read_fifo(), sensor.restarted, [chip._regs[a] for a in (0x08, 0x09, 0x0A, 0x0C, 0x0D)]]
clk.advance_ms(100)
n = sensor.read_fifo()
chip.power_cycle()
bus.fault = NACK
failed = error(sensor.recover)
bus.fault = None
recovered = sensor.recover()
again = sensor.recover()
clk.advance_ms(100)
report(image=image, defaults=defaults, via_read=via_read, n=n, failed=failed, recovered=recovered, again=again,
       after=[chip._regs[a] for a in (0x08, 0x09, 0x0A, 0x0C, 0x0D)], n2=sensor.read_fifo(),
       restarts=sensor.restarts)
""")
    assert r["defaults"] == [0, 0, 0, 0, 0]
    assert r["via_read"] == [0, True, r["image"]]
    assert r["n"] == 10
    assert r["failed"][0] == "OSError" and r["failed"][2].startswith("no MAX30102 at 0x57")
    assert r["recovered"] is True and r["again"] is False
    assert r["after"] == r["image"] and r["n2"] == 10
    assert r["restarts"] == 2


def test_reset_and_temperature_waits_are_bounded(mp):
    r = mp.json(SETUP + """
class StuckChip:
    # Answers the part ID, but its RESET and TEMP_EN bits never clear.
    def read_into(self, reg, buf):
        for i in range(len(buf)):
            buf[i] = {0xFF: 0x15, 0x09: 0x40, 0x21: 0x01}.get(reg + i, 0)
    def write_from(self, reg, buf):
        pass
clk = VirtualClock()
bus = SimI2C()
bus.attach(0x57, StuckChip())
sensor = Max30102(bus, clock=clk)
t0 = clk.elapsed_us
reset = error(sensor.reset)
temp = error(sensor.temperature)
report(reset=reset, temp=temp, waited_ms=(clk.elapsed_us - t0) // 1000)
""")
    assert r["reset"][:2] == ["OSError", 116] and "reset" in r["reset"][2]
    assert r["temp"][:2] == ["OSError", 116] and "temperature" in r["temp"][2]
    assert r["waited_ms"] < 1000
