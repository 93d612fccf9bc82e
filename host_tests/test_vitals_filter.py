"""Per-sample stage (vitals_filter.PulseFilter): allocation-free, and beats found across rates and conditions.

Signals are generated inside MicroPython from a precomputed pulse table so nothing allocates per sample.
"""

from __future__ import annotations

import pytest

# A pulse-shaped waveform (fast upstroke, slower decay, mild dicrotic wave) as sensor counts: the pulse is a dip.
GEN = """
import math
from array import array
import vitals_filter as vf
import vitals

def pulse_table(n=256):
    t = array('i', bytearray(4 * n))
    for k in range(n):
        ph = k / n
        # systolic peak at 0.2 (upstroke ~0.12 of a beat), a mild dicrotic wave at 0.5, diastolic decay
        up = math.exp(-((ph - 0.2) / 0.09) ** 2) if ph < 0.2 else math.exp(-((ph - 0.2) / 0.2) ** 2)
        notch = 0.12 * math.exp(-((ph - 0.5) / 0.1) ** 2)
        t[k] = int(1000 * (up + notch))
    return t

TABLE = pulse_table()

def feed(v, seconds, fs, bpm, dc=100000, ac=300, red_ratio=0.5, dc_red=80000, wander=0, amp_at=None):
    # Yields nothing; returns readings list. Phase accumulator in 1/65536 of a beat.
    step = int(bpm * 65536 / 60 / fs)
    ph = 0
    out = []
    for n in range(int(seconds * fs)):
        a = ac if amp_at is None or n < amp_at[0] * fs else amp_at[1]
        p = TABLE[(ph >> 8) & 255]
        w = 0
        if wander:
            w = int(wander * math.sin(2 * math.pi * 0.25 * n / fs))
        ir = dc + w - p * a // 1000
        red = dc_red + w * dc_red // dc - p * a * red_ratio * dc_red // dc // 1000
        ph += step
        if v.push(int(red), int(ir)):
            out.append(v.reading())
    return out
"""


def test_push_allocates_nothing(mp):
    r = mp.json(GEN + """
from mptest import check_no_alloc, report
fs = 100
v = vitals.Vitals(fs)
feed(v, 20, fs, 72)
samples = array('i', bytearray(4 * 2 * fs * 30))
ph = 0
for n in range(fs * 30):
    p = TABLE[(ph >> 8) & 255]
    samples[2 * n] = 80000 - p * 150 // 1000 if n < 1500 or n > 1700 else 900
    samples[2 * n + 1] = 100000 - p * 300 // 1000 if n < 1500 or n > 1700 else 1000
    ph += int(72 * 65536 / 60 / fs)

def run(v, samples, count):
    ready = 0
    for j in range(0, 2 * count, 2):
        if v.push(samples[j], samples[j + 1]):
            ready += 1
    return ready

ready = check_no_alloc(lambda: run(v, samples, fs * 30))
report(ready=ready, resets=v._st[vf.RESETS], beats=v._st[vf.BEATS])
""")
    assert r["ready"] == 30  # one per second of samples, finger off and on again included
    assert r["resets"] >= 2  # the finger removal and return restarted the filters
    assert r["beats"] > 20


# At 25 Hz a beat above ~130 bpm spans fewer than 12 samples: the low-pass smears the upstroke (documented).
CASES = [(fs, bpm) for fs in (25, 50, 100, 125, 200, 400) for bpm in (42, 75, 120, 150, 200) if fs > 25 or bpm <= 120]


@pytest.mark.parametrize(("fs", "bpm"), CASES)
def test_heart_rate_across_rates(mp, fs, bpm):
    r = mp.json(GEN + f"""
from mptest import report
v = vitals.Vitals({fs})
out = feed(v, 40, {fs}, {bpm})
report(hr=[o[0] for o in out], q=[o[3] for o in out])
""")
    tail = r["hr"][-10:]
    assert all(h is not None for h in tail), r
    assert max(abs(h / 10 - bpm) for h in tail) <= 1.0, tail


def test_baseline_wander_and_amplitude_steps(mp):
    r = mp.json(GEN + """
from mptest import report
v = vitals.Vitals(100)
# respiratory wander as large as the pulse, then the pulse halves at 30 s
out = feed(v, 60, 100, 66, ac=800, wander=800, amp_at=(30, 400))
report(hr=[o[0] for o in out])
""")
    hr = r["hr"]
    reported = [h for h in hr[8:] if h is not None]
    assert all(abs(h / 10 - 66) <= 1.5 for h in reported), reported  # never a wrong value
    assert sum(h is not None for h in hr[10:30]) >= 18, hr
    assert sum(h is not None for h in hr[40:]) >= 16, hr  # back within a few seconds of the step


def test_rejects_unsupported_rates(mp):
    r = mp.json("""
import vitals
from mptest import report
bad = []
for fs in (24, 401, 30.0):
    try:
        vitals.Vitals(fs)
    except ValueError as e:
        bad.append(str(e))
report(bad=bad)
""")
    assert len(r["bad"]) == 3 and "25..400" in r["bad"][0]
