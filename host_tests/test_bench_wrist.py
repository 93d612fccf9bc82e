"""The wrist spectral-ceiling bench (issue 16) on signals whose answer is known: a weak pulse under a strong
motion rhythm that the accelerometer sees."""

import numpy as np

from oxilink import bench_wrist, ppgdata

FS = 256.0


def _tone(bpm, seconds, amp):
    t = np.arange(int(seconds * FS)) / FS
    return amp * np.sin(2 * np.pi * bpm / 60.0 * t)


def _rows(pulse_bpm, motion_bpm, seconds=40):
    motion = _tone(motion_bpm, seconds, 300.0) + _tone(2 * motion_bpm, seconds, 120.0)
    ppg = 100_000.0 - _tone(pulse_bpm, seconds, 150.0) - motion
    acc = [_tone(motion_bpm, seconds, 2.0), _tone(2 * motion_bpm, seconds, 1.0), np.zeros(int(seconds * FS))]
    ref = ppgdata.Series(np.arange(seconds, dtype=float), np.full(seconds, float(pulse_bpm)))
    return bench_wrist.per_second(bench_wrist.to_32hz(ppg, FS), [bench_wrist.to_32hz(a, FS) for a in acc], ref)


def test_a_pulse_under_stronger_motion_is_second_and_the_oracle_finds_it():
    rows = _rows(pulse_bpm=150, motion_bpm=84)
    assert [r["t"] for r in rows] == [float(t) for t in range(8, 40)]
    f = bench_wrist.figures(rows)
    assert f["seconds"] == 32
    assert f["top_k_within5_pct"][1] == 0.0  # the motion is the strongest peak in every window
    assert f["top_k_within5_pct"][2] == 100.0  # the pulse is the second one
    assert f["accelerometer_oracle_within5_pct"] == 100.0
    assert all(abs(r["bpm"][0] - 84) <= 1.0 for r in rows)


def test_the_oracle_removes_motion_harmonics_only():
    assert bench_wrist.is_motion(168.5, np.array([84.0]))  # second harmonic
    assert bench_wrist.is_motion(42.0, np.array([84.0]))  # half
    assert not bench_wrist.is_motion(150.0, np.array([84.0]))


def test_a_clean_pulse_is_the_strongest_peak():
    rows = _rows(pulse_bpm=72, motion_bpm=0.0001)
    f = bench_wrist.figures(rows)
    assert f["top_k_within5_pct"][1] == 100.0


def test_most_confident_share_and_held_seconds():
    score = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    right = np.array([True, False, True, True, True, True, True, True, True, True])
    assert bench_wrist.right_among_most_confident(score, right, 0.1) == 1.0
    assert bench_wrist.right_among_most_confident(score, right, 0.2) == 0.5
    rows = [{"t": t, "bpm": np.array([b])} for t, b in [(8.0, 80.0), (9.0, 82.0), (10.0, 90.0), (12.0, 90.0)]]
    assert list(bench_wrist.held_seconds(rows)) == [0.0, 1.0, 0.0, 0.0]
