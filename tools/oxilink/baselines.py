"""Reference methods scored beside the firmware in the DSP bench: HeartPy and a plain FFT/ratio baseline.

Both emit one value per output second (t = whole seconds from the start, like `analyze`), from a trailing
window ending at t: HeartPy over 10 s, the FFT peak over 8 s. HeartPy reports no value when it fails or
rejects the window; the FFT baseline always answers.
"""

from __future__ import annotations

import warnings

import numpy as np

HEARTPY_WINDOW_S = 10.0
FFT_WINDOW_S = 8.0
HR_BAND_HZ = (0.5, 3.7)  # 30..222 bpm


def heartpy_hr(ir: np.ndarray, fs: float, window_s: float = HEARTPY_WINDOW_S) -> tuple[np.ndarray, np.ndarray]:
    """HeartPy's bpm over sliding trailing windows (band-passed 0.7-3.5 Hz first, as its docs advise)."""
    import heartpy as hp

    pulse_up = -np.asarray(ir, dtype=float)  # sensor counts dip at each pulse; HeartPy wants peaks
    filtered = hp.filter_signal(pulse_up, cutoff=[0.7, 3.5], sample_rate=fs, order=3, filtertype="bandpass")
    n = int(round(window_s * fs))
    seconds = int(len(ir) / fs)
    t = np.arange(1, seconds + 1, dtype=float)
    out = np.full(seconds, np.nan)
    for k, tk in enumerate(t):
        end = int(round(tk * fs))
        if end < n:
            continue
        seg = filtered[end - n:end]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _wd, m = hp.process(hp.scale_data(seg), fs)
            bpm = float(m["bpm"])
        except Exception:  # HeartPy raises BadSignalWarning and assorted errors on poor windows
            continue
        if np.isfinite(bpm) and 30 <= bpm <= 220:
            out[k] = bpm
    return t, out


def _fft_peak_hz(seg: np.ndarray, fs: float) -> float:
    seg = seg - np.mean(seg)
    nfft = 1 << max(12, int(np.ceil(np.log2(len(seg)))))
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), nfft))
    f = np.fft.rfftfreq(nfft, 1.0 / fs)
    band = (f >= HR_BAND_HZ[0]) & (f <= HR_BAND_HZ[1])
    return float(f[band][np.argmax(spec[band])])


def fft_hr(ir: np.ndarray, fs: float, window_s: float = FFT_WINDOW_S) -> tuple[np.ndarray, np.ndarray]:
    """Peak of the spectrum in 30-222 bpm over a trailing window; defined from the first full window on."""
    n = int(round(window_s * fs))
    seconds = int(len(ir) / fs)
    t = np.arange(1, seconds + 1, dtype=float)
    out = np.full(seconds, np.nan)
    x = np.asarray(ir, dtype=float)
    for k, tk in enumerate(t):
        end = int(round(tk * fs))
        if end >= n:
            out[k] = 60.0 * _fft_peak_hz(x[end - n:end], fs)
    return t, out


def ratio_spo2(red: np.ndarray, ir: np.ndarray, fs: float, window_s: float = FFT_WINDOW_S,
               curve: tuple[float, float, float] = (110.0, -25.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Textbook SpO2 = 110 - 25 R, R = (AC_red/DC_red)/(AC_ir/DC_ir), AC = standard deviation of the window."""
    n = int(round(window_s * fs))
    seconds = int(len(ir) / fs)
    t = np.arange(1, seconds + 1, dtype=float)
    out = np.full(seconds, np.nan)
    red = np.asarray(red, dtype=float)
    ir = np.asarray(ir, dtype=float)
    for k, tk in enumerate(t):
        end = int(round(tk * fs))
        if end < n:
            continue
        r, i = red[end - n:end], ir[end - n:end]
        if np.std(i) <= 0 or np.mean(r) <= 0:
            continue
        ratio = (np.std(r) / np.mean(r)) / (np.std(i) / np.mean(i))
        out[k] = curve[0] + curve[1] * ratio + curve[2] * ratio * ratio
    return t, out
