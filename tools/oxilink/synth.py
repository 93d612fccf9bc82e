"""Synthetic MAX30102-like red/IR from the real BIDMC PLETH waveforms at a known SpO2.

The pulse shape and rhythm are real (one PLETH recording); the two channels are built so that the ratio of
ratios equals the inverse of the calibration curve at the chosen SpO2: red AC/DC = R * IR AC/DC. Added on
top, as a fingertip sensor shows them: different DC levels per channel, slow DC drift and respiratory
baseline wander (multiplicative, the same in both channels), ambient light leaking through (additive, the
same counts in both), white noise, and integer quantisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ppgdata

DEFAULT_CURVE = (110.0, -25.0, 0.0)


def ratio_for_spo2(spo2: np.ndarray | float, curve=DEFAULT_CURVE) -> np.ndarray:
    """Inverse of SpO2 = c0 + c1 R + c2 R^2 on the branch that gives R in 0..3."""
    c0, c1, c2 = curve
    s = np.asarray(spo2, dtype=float)
    if abs(c2) < 1e-12:
        return (s - c0) / c1
    disc = np.sqrt(np.maximum(c1 * c1 - 4 * c2 * (c0 - s), 0.0))
    r1 = (-c1 + disc) / (2 * c2)
    r2 = (-c1 - disc) / (2 * c2)
    return np.where((r1 >= 0) & (r1 <= 3), r1, r2)


def spo2_profile(seconds: int, rng: np.random.Generator, lo: float = 70.0, hi: float = 100.0,
                 plateau_s: float = 40.0, ramp_s: float = 15.0) -> np.ndarray:
    """Per-second SpO2: plateaus at random levels in lo..hi joined by linear ramps (covering the range)."""
    levels = [hi - 1.0]
    while len(levels) * (plateau_s + ramp_s) < seconds + plateau_s:
        levels.append(float(rng.uniform(lo, hi)))
    out: list[float] = []
    for a, b in zip(levels, levels[1:] + [levels[-1]], strict=True):
        out += [a] * int(plateau_s)
        out += list(np.linspace(a, b, int(ramp_s), endpoint=False))
    return np.array(out[:seconds])


@dataclass
class SynthOptions:
    dc_ir: float = 100_000.0
    dc_red: float = 80_000.0
    pi_ir_pct: float = 1.5  # IR AC (peak to peak) / DC
    noise_counts: float = 8.0  # white noise, standard deviation per channel
    ambient_counts: float = 300.0  # ambient light left after the chip's cancellation
    wander_pct: float = 0.5  # respiratory baseline wander, peak amplitude relative to DC
    drift_pct: float = 1.0  # slow DC drift over the recording


def synth_red_ir(pleth: np.ndarray, fs: float, spo2_per_s: np.ndarray, rng: np.random.Generator,
                 opts: SynthOptions | None = None, curve=DEFAULT_CURVE) -> tuple[np.ndarray, np.ndarray]:
    """(red, ir) integer counts; spo2_per_s gives the true SpO2 for each second of the signal."""
    o = opts or SynthOptions()
    n = len(pleth)
    t = np.arange(n) / fs
    p = pleth - np.median(pleth)
    lo, hi = np.percentile(p, [5, 95])
    pulse = p / max(hi - lo, 1e-9)  # about unit peak-to-peak, pulse-up
    spo2 = np.interp(t, np.arange(len(spo2_per_s)) + 0.5, spo2_per_s)
    ratio = ratio_for_spo2(spo2, curve)
    resp_hz = rng.uniform(0.15, 0.35)
    wander = 1.0 + o.wander_pct / 100 * np.sin(2 * np.pi * resp_hz * t + rng.uniform(0, 6.3))
    drift = 1.0 + o.drift_pct / 100 * np.sin(2 * np.pi * t / max(t[-1], 1.0) + rng.uniform(0, 6.3))
    base = wander * drift
    pi_ir = o.pi_ir_pct / 100
    ir = o.dc_ir * base * (1.0 - pi_ir * pulse)
    red = o.dc_red * base * (1.0 - ratio * pi_ir * pulse)
    ir = ir + o.ambient_counts + rng.normal(0, o.noise_counts, n)
    red = red + o.ambient_counts + rng.normal(0, o.noise_counts, n)
    return np.clip(np.rint(red), 0, 262143), np.clip(np.rint(ir), 0, 262143)


def synthetic_recording(rec_id: str, seed: int, opts: SynthOptions | None = None, curve=DEFAULT_CURVE,
                        seconds: float | None = None, lo: float = 70.0, hi: float = 100.0) -> ppgdata.Recording:
    """A BIDMC PLETH turned into red/IR with a known SpO2 profile (the reference) and the ECG HR reference."""
    rng = np.random.default_rng(seed)
    pleth, fs = ppgdata.bidmc_pleth(rec_id)
    if seconds is not None:
        pleth = pleth[: int(seconds * fs)]
    n_s = int(np.ceil(len(pleth) / fs))
    profile = spo2_profile(n_s, rng, lo, hi)
    red, ir = synth_red_ir(pleth, fs, profile, rng, opts, curve)
    src = ppgdata.bidmc(rec_id)
    ref_spo2 = ppgdata.Series(np.arange(n_s) + 0.5, profile)
    return ppgdata.Recording(f"synth_{rec_id}", "synthetic", fs, ir, red, src.ref_hr, ref_spo2)
