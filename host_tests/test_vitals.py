"""Per-second stage (vitals.Vitals): absent values on bad input, SpO2 from the ratio, recovery, bounded memory."""

from __future__ import annotations

from test_vitals_filter import GEN


def test_no_finger_saturated_and_noise_report_nothing(mp):
    r = mp.json(GEN + """
import random
from mptest import report
res = {}
for case in ("no_finger", "saturated", "noise", "flat"):
    v = vitals.Vitals(100)
    out = []
    random.seed(3)
    for n in range(100 * 30):
        if case == "no_finger":
            red, ir = 400 + random.getrandbits(6), 700 + random.getrandbits(6)
        elif case == "saturated":
            red, ir = 262143, 262143 - (n % 50) // 40
        elif case == "noise":
            red, ir = 80000 + random.getrandbits(9), 100000 + random.getrandbits(9)
        else:
            red, ir = 80000, 100000
        if v.push(red, ir):
            out.append(v.reading())
    res[case] = out
report(**res)
""")
    for case, out in r.items():
        assert len(out) == 30
        assert all(o[0] is None and o[1] is None for o in out), (case, out)
    assert all(o[3] & vitals_bits()["NO_FINGER"] for o in r["no_finger"])
    assert all(o[3] & vitals_bits()["SATURATED"] for o in r["saturated"])
    assert all(o[3] & vitals_bits()["MOTION"] for o in r["noise"][10:])


def vitals_bits() -> dict[str, int]:
    return {"NO_FINGER": 1, "SATURATED": 2, "MOTION": 4, "LOW_PERFUSION": 8, "IRREGULAR": 16,
            "WARMING_UP": 32, "CHANNELS_SWAPPED": 64, "LOST": 128}


def test_reason_constants_match_the_interface(mp):
    r = mp.json("""
import vitals
from mptest import report
report(**{name.upper(): bit for bit, name in vitals.REASONS})
""")
    assert r == vitals_bits()


def test_spo2_follows_the_ratio_and_the_board_curve(mp):
    r = mp.json(GEN + """
import boardconf
from mptest import report
cfg = boardconf.validate({"board": "x", "platform": "unix", "vitals": {"spo2_curve": [104.0, -17.0, 0.0]}})
res = []
for ratio in (0.5, 0.8, 1.2):
    for c in (None, cfg["vitals"]):
        v = vitals.Vitals(100, c)
        out = feed(v, 20, 100, 72, ac=1500, red_ratio=ratio)
        res.append([ratio, c is not None, out[-1]])
report(res=res)
""")
    for ratio, custom, (hr, spo2, pi, q) in r["res"]:
        c0, c1 = (104.0, -17.0) if custom else (110.0, -25.0)
        assert spo2 is not None and abs(spo2 / 10 - (c0 + c1 * ratio)) <= 1.0, (ratio, custom, spo2, q)
        assert abs(hr / 10 - 72) <= 1.0
        assert 1.0 <= pi / 100 <= 1.6  # 1.5 % peak to peak, read through the band-pass
        assert q == 0


def test_swapped_channels_are_flagged(mp):
    r = mp.json(GEN + """
from mptest import report
v = vitals.Vitals(100)
out = feed(v, 20, 100, 72, ac=600, red_ratio=2.2, dc_red=60000)
report(out=out[-5:])
""")
    for hr, spo2, _pi, q in r["out"]:
        assert q & 64 and spo2 is None and hr is not None


def test_recovers_after_the_finger_returns(mp):
    r = mp.json(GEN + """
from mptest import report
v = vitals.Vitals(100)
out = feed(v, 20, 100, 80)
for n in range(100 * 10):  # finger off: ambient light only
    if v.push(300, 500):
        out.append(v.reading())
out += feed(v, 20, 100, 80)
report(out=out)
""")
    out = r["out"]
    assert out[19][0] is not None
    assert all(o[0] is None and o[3] & 1 for o in out[21:30])
    back = [k for k, o in enumerate(out[30:]) if o[0] is not None]
    assert back and back[0] <= 7, out[30:]  # HR again within 7 s of the finger's return
    assert all(abs(o[0] / 10 - 80) <= 1.0 for o in out[30 + back[0]:])
    # SpO2 from the first value on: the ratio's window holds only seconds since the finger returned
    assert all(o[1] is not None and abs(o[1] / 10 - 97.5) <= 0.5 for o in out[30 + back[0]:]), out[30:]


def test_a_lost_pulse_is_reported_absent_and_its_rate_is_not_kept(mp):
    r = mp.json(GEN + """
from mptest import report
v = vitals.Vitals(100)
out = feed(v, 20, 100, 72)
for n in range(100 * 12):  # finger in place, pulse gone (no jump in DC: no restart)
    if v.push(80000, 100000):
        out.append(v.reading())
out += feed(v, 20, 100, 90)
report(out=out)
""")
    out = r["out"]
    assert all(o[0] is not None and abs(o[0] / 10 - 72) <= 1 for o in out[10:20])
    lost = out[20:32]
    assert all(o[0] is None and o[1] is None for o in lost[3:]), lost  # gone within 4 s of the last beat
    assert all(o[3] & 4 and not o[3] & 32 for o in lost[3:]), lost  # motion/no pulse, not warming up
    back = [k for k, o in enumerate(out[32:]) if o[0] is not None]
    assert back and back[0] <= 6, out[32:]
    new = [o[0] / 10 for o in out[32 + back[0]:]]
    assert all(abs(x - 90) <= 4 for x in new) and all(abs(x - 90) <= 1 for x in new[5:]), new  # not the old 72


def test_a_flat_signal_is_not_reported_as_warming_up_forever(mp):
    r = mp.json(GEN + """
from mptest import report
v = vitals.Vitals(50)
out = []
for n in range(50 * 20):
    if v.push(80000, 100000 + (n & 1)):
        out.append(v.reading())
report(out=out)
""")
    q = [o[3] for o in r["out"]]
    assert all(x & 32 for x in q[:3]) and all(x & 4 and not x & 32 for x in q[11:]), q


def test_memory_after_an_hour_equals_after_a_minute(mp):
    r = mp.json(GEN + """
import gc
from mptest import report
fs = 100
v = vitals.Vitals(fs)
step = int(70 * 65536 / 60 / fs)

def run(seconds, ph):
    for n in range(seconds * fs):
        p = TABLE[(ph >> 8) & 255]
        if v.push(80000 - p * 150 // 1000, 100000 - p * 300 // 1000):
            v.reading()
        ph = (ph + step) & 0xFFFFFF
    return ph

ph = run(60, 0)
gc.collect()
after_minute = gc.mem_alloc()
ph = run(3540, ph)
gc.collect()
after_hour = gc.mem_alloc()
report(minute=after_minute, hour=after_hour, hr=v.reading()[0])
""", heapsize="100K", timeout=600)
    assert abs(r["hour"] - r["minute"]) <= 256, r


def test_a_large_first_transient_does_not_blind_the_beat_detector(mp):
    # A camera settling (or a finger pressed hard) gives one huge swing first; the slope threshold it leaves
    # behind must decay so that the normal pulses that follow are found.
    r = mp.json(GEN + """
from mptest import report
v = vitals.Vitals(30)
out = []
for n in range(30 * 3):  # a slow 20000-count settling swing, below the restart jump
    ir = 100000 + int(20000 * math.sin(math.pi * n / 30))
    if v.push(80000 + (ir - 100000) * 8 // 10, ir):
        out.append(v.reading())
out += feed(v, 30, 30, 72, ac=300)
report(hr=[o[0] for o in out])
""")
    tail = r["hr"][-15:]
    assert all(h is not None and abs(h / 10 - 72) <= 1.5 for h in tail), r["hr"]


def _alternating(fs, bpm, seconds, ac_a, ac_b, extra=""):
    return GEN + f"""
from mptest import report
fs = {fs}
v = vitals.Vitals(fs)
step = int({bpm} * 65536 / 60 / fs)
ph = 0
out = []
for n in range(fs * {seconds}):
    a = {ac_a} if (ph >> 16) & 1 == 0 else {ac_b}
    p = TABLE[(ph >> 8) & 255]
    {extra}
    if v.push(80000 - p * a // 2000, 100000 - p * a // 1000):
        out.append(v.reading())
    ph += step
report(hr=[o[0] for o in out], q=[o[3] for o in out])
"""


def test_alternating_pulse_amplitudes_do_not_halve_the_rate(mp):
    # Pulsus alternans: every other pulse is half as large, so the autocorrelation repeats over two beats.
    # The beats are steady and every one is found: the rate is the beat rate, not half of it.
    r = mp.json(_alternating(100, 90, 40, 400, 200))
    tail = r["hr"][-20:]
    assert all(h is not None and abs(h / 10 - 90) <= 1.5 for h in tail), r


def test_a_strong_dicrotic_wave_does_not_double_the_rate(mp):
    # A second wave 0.4 times the pulse, 0.6 of a period later: the detector fires on both. The
    # autocorrelation (anti-phase at half the period) says which is the pulse period.
    r = mp.json(GEN + """
from mptest import report
fs = 30
v = vitals.Vitals(fs)
step = int(52 * 65536 / 60 / fs)
ph = 0
out = []
for n in range(fs * 60):
    p = TABLE[(ph >> 8) & 255] + 4 * TABLE[((ph >> 8) + 150) & 255] // 10
    if v.push(80000 - p * 300 // 2000, 100000 - p * 300 // 1000):
        out.append(v.reading())
    ph += step
report(hr=[o[0] for o in out])
""")
    reported = [h for h in r["hr"][10:] if h is not None]
    assert len(reported) >= 40, r["hr"]
    assert all(abs(h / 10 - 52) <= 2.0 for h in reported), reported
