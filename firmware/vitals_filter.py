# Per-sample stage of the vitals pipeline: DC tracking, band-pass, beat detection and per-second sums.
#
# `PulseFilter.push(red, ir)` is a viper method: integer-only, allocation-free, called at the output rate
# with raw 18-bit counts. It keeps all state in one preallocated array('i') and returns True once per second
# of samples (counted in st[READY] until the per-second stage takes it); the per-second stage (vitals.Vitals)
# then reads the second's sums and the beat ring. `skip(n)` moves the second counter over n lost samples and
# restarts every filter at the next sample, so no PPG is spliced across the hole.
#
# Fixed-point ranges (ESP32 small ints and viper words are 32-bit: every intermediate stays within +-2**30):
#   x        raw counts, clamped to 0..2**18-1
#   dc       Q8 counts, < 2**26;   (x << 8) - dc  within +-2**26
#   hp       x - dc, clamped to +-HP_MAX = 2**14 counts (larger = transient; beyond SNAP the state restarts)
#   v        hp in Q4, within +-2**18
#   lp1, lp2, base, base2   one-pole filter states in Q14 (Q4 signal << 10): lp1, lp2 within +-2**28,
#            update (input - state>>10) * a, |diff| <= 2**19, a <= 768 (Q10): < 2**28.6, sum < 2**29.3
#   hp1      lp2 - base (Q14), |hp1| <= 2**29 since both are averages of the same +-2**28 signal and of
#            opposite-sign excursions at most; base2 follows hp1 >> 10 (within +-2**19): same bound as lp
#   bp       band-passed signal in Q4 = (hp1 - base2) >> 10, within +-2**19
#   beat interpolation  (-prev << 8) // (cur - prev): numerator < 2**27
#   interval Q8 samples <= (MAXI + 1) * 256 <= 2**19 at 400 Hz
#   AC products: bp >> shift (shift chosen per second so |value| < 512, clamped to +-1023),
#            products < 2**20, per-second sums over <= 400 samples < 2**28.7
#   per-second sums of raw counts: <= 400 * 2**18 < 2**26.7
#   autocorrelate(): sum of |ring| <= 256 * 2**14 = 2**22 (times _ACF_CLIP = 2: 2**23); winsorised values
#            scaled to |v| < 1024, products < 2**20, sums over <= 256 lags' overlap < 2**28
import micropython
from array import array
from micropython import const

ADC_MAX = const(262143)
SAT_LEVEL = const(262000)  # at or above: the ADC is (nearly) saturated
_HP_MAX = const(16384)
_SNAP = const(32768)
_ACMAX = const(1023)
_THR_FLOOR = const(4)  # slope of 1/4 count per sample (Q4): below this nothing counts as a beat

# Configuration (written once by __init__, except SHIFT which the per-second stage sets).
_KDC = const(0)
_ALP = const(1)
_AHP = const(2)
_FS = const(3)
REFR = const(4)  # refractory in samples: 60/220 s, raised by the per-second stage when the period is clear
_MAXI = const(5)
SHIFT = const(6)
_KDECAY = const(7)
# Channel filter state: IR at 8..12, red at 13..17; offsets within a channel block.
_IR = const(8)
_RED = const(13)
_C_DC = const(0)
_C_LP1 = const(1)
_C_LP2 = const(2)
_C_BASE = const(3)
_C_BASE2 = const(4)
# Beat detector state (on the IR channel, pulse-up: s = -bp).
_PPL = const(18)  # peak-to-peak of the last cycle (Q4)
_DECAY_AFTER = const(19)  # samples without a beat after which the threshold decays
_PREV = const(20)
_ARMED = const(21)
_SMIN = const(22)
_SMAX = const(23)
_SINCE = const(24)
_LASTFRAC = const(25)
_LASTOK = const(26)
AMP = const(27)  # tracked peak upstroke slope (Q4 per sample)
_PREVD = const(28)
_DMAX = const(29)
# Per-second accumulators; the previous second is copied to the same layout at LAST.
_N = const(30)
ACC = const(31)
LAST = const(41)
S_SUM_IR = const(0)
S_SUM_RED = const(1)
S_RI = const(2)
S_II = const(3)
S_RR = const(4)
S_MAX_IR = const(5)
S_MAX_RED = const(6)
S_SAT = const(7)
S_CLIP = const(8)
S_PEAKS = const(9)  # prominent maxima of the pulse-up signal (rise and fall of at least PK_H each)
_NSUMS = const(10)
LAST_SHIFT = const(51)
BEATS = const(52)  # beats recorded so far (wraps at 2**30)
RESETS = const(53)  # state restarts (finger placed/removed, large jumps)
RESET_BEAT = const(54)  # BEATS at the last restart
# Beat ring: RING_SIZE entries of (interval in Q8 samples, peak-to-peak of the IR cycle in Q4).
RING = const(64)
RING_SIZE = const(64)
_RING_MASK = const(63)
# Decimated pulse-up signal (counts, ~20-40 Hz) for the autocorrelation that guards against halving/doubling.
ACF_RING = const(192)
ACF_LEN = const(256)
_ACF_MASK = const(255)
ACF_OUT = const(448)  # autocorrelation per lag, written by autocorrelate()
ACF_MAX_LAGS = const(96)
_DEC = const(55)  # decimation factor
_DCNT = const(56)
APOS = const(57)  # samples written to ACF_RING (wraps at 2**30)
_H30 = const(58)  # holds 2**30 for the sign extension
_SLOPE_RING = const(544)  # the last 32 pulse-up samples, for the slope
_SPOS = const(59)
READY = const(60)  # seconds completed by push() and not yet taken by the per-second stage
_RESTART = const(61)  # 1: restart every filter at the next sample (samples were lost)
PK_H = const(62)  # prominence a maximum needs to count in S_PEAKS (Q4), set by the per-second stage
_PK_X = const(63)  # the running extreme of the peak counter: a maximum while rising, a minimum while falling
_ACF_TMP = const(576)  # the window, winsorised and scaled, for autocorrelate()
_ACF_CLIP = const(2)
_PK_UP = const(832)  # 1: the peak counter is rising (looking for a maximum)
_STATE_LEN = const(833)

MAX_BPM = const(220)
MIN_BPM = const(25)


def _shift_for(fs, tau_s):
    """Smallest k with 2**k >= fs * tau_s: a one-pole y += (x - y) >> k has a time constant of ~2**k / fs."""
    k = 0
    while (1 << k) < fs * tau_s:
        k += 1
    return k


def _alpha_q10(fs, fc):
    """Q10 coefficient of a one-pole low-pass with cut-off fc (Hz), capped at 0.75 for the range proof."""
    import math

    a = 1.0 - math.exp(-2.0 * math.pi * fc / fs)
    return max(1, min(768, int(a * 1024 + 0.5)))


class PulseFilter:
    LP_HZ = 4.5  # each of the two low-pass poles
    HP_HZ = 0.6  # baseline (respiration, wander) removal

    def __init__(self, fs):
        if type(fs) is not int or not 25 <= fs <= 400:
            raise ValueError("vitals: sample rate %r Hz is not supported; allowed: 25..400" % (fs,))
        self.fs = fs
        st = array("i", bytearray(4 * _STATE_LEN))
        st[_KDC] = _shift_for(fs, 1.0)
        st[_ALP] = _alpha_q10(fs, self.LP_HZ)
        st[_AHP] = _alpha_q10(fs, self.HP_HZ)
        st[_FS] = fs
        st[REFR] = (60 * fs) // MAX_BPM
        st[_MAXI] = (60 * fs) // MIN_BPM
        st[_KDECAY] = max(1, _shift_for(fs, 0.3))
        st[_DECAY_AFTER] = st[_MAXI]
        st[_H30] = 1 << 30
        st[_DEC] = max(1, fs // 20)
        self.acf_rate = fs / st[_DEC]
        self._st = st

    # A ptr32 load is zero-extended on 64-bit hosts (the unix port), so each read is sign-extended with
    # ((v + 2**30) & (2**31 - 1)) - 2**30, exact for |v| < 2**30 on 32- and 64-bit machines alike.
    @micropython.viper
    def push(self, red: int, ir: int) -> bool:
        s = ptr32(self._st)
        h30 = int(s[_H30])  # 2**30, from the array: as a literal it is not a small int on the ESP32
        m31 = (h30 << 1) - 1  # 2**31 - 1 (wraps correctly on 32-bit machines)
        if ir < 0:
            ir = 0
        elif ir > ADC_MAX:
            ir = ADC_MAX
        if red < 0:
            red = 0
        elif red > ADC_MAX:
            red = ADC_MAX
        if ir >= SAT_LEVEL or red >= SAT_LEVEL:
            s[ACC + S_SAT] += 1
        s[ACC + S_SUM_IR] += ir
        s[ACC + S_SUM_RED] += red
        d_ir = ir - ((((int(s[_IR + _C_DC]) + h30) & m31) - h30) >> 8)
        d_red = red - ((((int(s[_RED + _C_DC]) + h30) & m31) - h30) >> 8)
        if d_ir > _SNAP or d_ir < 0 - _SNAP or d_red > _SNAP or d_red < 0 - _SNAP or int(s[_RESTART]) != 0:
            # Finger placed or removed, a jump no filter should follow, or samples lost: restart from this sample.
            s[_RESTART] = 0
            for o in range(_IR, _RED + 5):
                s[o] = 0
            s[_IR + _C_DC] = ir << 8
            s[_RED + _C_DC] = red << 8
            s[_ARMED] = 0
            s[_LASTOK] = 0
            s[_SMIN] = 0
            s[_SMAX] = 0
            s[_PREV] = 0
            s[_PREVD] = 0
            s[_DMAX] = 0
            s[_PPL] = 0
            s[AMP] = 0
            s[_DECAY_AFTER] = int(s[_MAXI])
            s[REFR] = (60 * int(s[_FS])) // MAX_BPM  # nothing measured before the restart carries over
            for o in range(_SLOPE_RING, _SLOPE_RING + 32):
                s[o] = 0
            s[_DCNT] = 0
            s[_PK_X] = 0
            s[_PK_UP] = 0
            s[APOS] = 0
            s[RESETS] = ((((int(s[RESETS]) + h30) & m31) - h30) + 1) & 0x3FFFFFFF
            s[RESET_BEAT] = (((int(s[BEATS]) + h30) & m31) - h30)
        kdc = (((int(s[_KDC]) + h30) & m31) - h30)
        alp = (((int(s[_ALP]) + h30) & m31) - h30)
        ahp = (((int(s[_AHP]) + h30) & m31) - h30)
        sh = (((int(s[SHIFT]) + h30) & m31) - h30)
        bp_ir = 0
        bp_red = 0
        for c in range(2):
            o = _IR if c == 0 else _RED
            x = ir if c == 0 else red
            dc = (((int(s[o + _C_DC]) + h30) & m31) - h30)
            hp = x - (dc >> 8)
            s[o + _C_DC] = dc + (((x << 8) - dc) >> kdc)
            if hp > _HP_MAX:
                hp = _HP_MAX
                s[ACC + S_CLIP] += 1
            elif hp < 0 - _HP_MAX:
                hp = 0 - _HP_MAX
                s[ACC + S_CLIP] += 1
            lp1 = (((int(s[o + _C_LP1]) + h30) & m31) - h30)
            lp1 += ((hp << 4) - (lp1 >> 10)) * alp
            s[o + _C_LP1] = lp1
            lp2 = (((int(s[o + _C_LP2]) + h30) & m31) - h30)
            lp2 += ((lp1 >> 10) - (lp2 >> 10)) * alp
            s[o + _C_LP2] = lp2
            base = (((int(s[o + _C_BASE]) + h30) & m31) - h30)
            base += ((lp2 >> 10) - (base >> 10)) * ahp
            s[o + _C_BASE] = base
            hp1 = lp2 - base
            base2 = (((int(s[o + _C_BASE2]) + h30) & m31) - h30)
            base2 += ((hp1 >> 10) - (base2 >> 10)) * ahp
            s[o + _C_BASE2] = base2
            bp = (hp1 - base2) >> 10
            if c == 0:
                bp_ir = bp
            else:
                bp_red = bp
        # Per-second sums for the ratio of ratios, on values scaled to |v| < 1024.
        ai = bp_ir >> sh
        ar = bp_red >> sh
        if ai > _ACMAX:
            ai = _ACMAX
        elif ai < 0 - _ACMAX:
            ai = 0 - _ACMAX
        if ar > _ACMAX:
            ar = _ACMAX
        elif ar < 0 - _ACMAX:
            ar = 0 - _ACMAX
        s[ACC + S_RI] += ar * ai
        s[ACC + S_II] += ai * ai
        s[ACC + S_RR] += ar * ar
        mag = bp_ir if bp_ir >= 0 else 0 - bp_ir
        if mag > (((int(s[ACC + S_MAX_IR]) + h30) & m31) - h30):
            s[ACC + S_MAX_IR] = mag
        mag = bp_red if bp_red >= 0 else 0 - bp_red
        if mag > (((int(s[ACC + S_MAX_RED]) + h30) & m31) - h30):
            s[ACC + S_MAX_RED] = mag
        # Beat detection on the slope of the pulse-up signal: a beat is the moment the systolic upstroke's
        # slope rises through 5/8 of the slope of recent upstrokes (interpolated to 1/256 sample), while the
        # signal is still low (below half the last pulse height above its mean: a dicrotic wave rises from
        # higher up) and at least REFR samples after the last beat (60/220 s, or 0.6 of the pulse period when
        # the per-second stage sees it clearly). Slope detection is insensitive to baseline wander; the
        # threshold follows the amplitude both ways.
        sd = 0 - bp_ir
        dec = (((int(s[_DEC]) + h30) & m31) - h30)
        dn = (((int(s[_DCNT]) + h30) & m31) - h30) + 1
        if dn >= dec:
            dn = 0
            pos = (((int(s[APOS]) + h30) & m31) - h30)
            v = sd >> 4
            if v > 16383:
                v = 16383
            elif v < -16383:
                v = -16383
            s[ACF_RING + (pos & _ACF_MASK)] = v
            s[APOS] = (pos + 1) & 0x3FFFFFFF
        s[_DCNT] = dn
        # Prominent maxima (hysteresis PK_H both ways): a pulse gives one per beat (two with a dicrotic wave),
        # a faster rhythm riding on it (motion) more.
        h = (((int(s[PK_H]) + h30) & m31) - h30)
        x = (((int(s[_PK_X]) + h30) & m31) - h30)
        if int(s[_PK_UP]) != 0:
            if sd > x:
                s[_PK_X] = sd
            elif sd < x - h:
                s[ACC + S_PEAKS] += 1
                s[_PK_UP] = 0
                s[_PK_X] = sd
        elif sd < x:
            s[_PK_X] = sd
        elif sd > x + h:
            s[_PK_UP] = 1
            s[_PK_X] = sd
        # slope over D = fs // 20 samples (a 50 ms step whatever the rate): quantisation-proof at 400 Hz
        spos = (((int(s[_SPOS]) + h30) & m31) - h30)
        d = sd - (((int(s[_SLOPE_RING + ((spos - dec) & 31)]) + h30) & m31) - h30)
        s[_SLOPE_RING + (spos & 31)] = sd
        s[_SPOS] = (spos + 1) & 0x3FFFFFFF
        s[_PREV] = sd
        prev_d = (((int(s[_PREVD]) + h30) & m31) - h30)
        s[_PREVD] = d
        if sd < (((int(s[_SMIN]) + h30) & m31) - h30):
            s[_SMIN] = sd
        if sd > (((int(s[_SMAX]) + h30) & m31) - h30):
            s[_SMAX] = sd
        if d > (((int(s[_DMAX]) + h30) & m31) - h30):
            s[_DMAX] = d
        since = (((int(s[_SINCE]) + h30) & m31) - h30) + 1
        amp = (((int(s[AMP]) + h30) & m31) - h30)
        maxi = (((int(s[_MAXI]) + h30) & m31) - h30)
        if since > maxi:
            s[_LASTOK] = 0  # no beat for too long: the next one starts a new interval
            since = maxi
        if since >= (((int(s[_DECAY_AFTER]) + h30) & m31) - h30):
            # beats are being missed: lower the threshold (>=: since is held at MAXI, the longest DECAY_AFTER)
            amp -= amp >> (((int(s[_KDECAY]) + h30) & m31) - h30)
            s[AMP] = amp
        s[_SINCE] = since
        thr = (amp >> 1) + (amp >> 3)  # 5/8: a dicrotic upstroke is flatter than the systolic one
        if thr < _THR_FLOOR:
            thr = _THR_FLOOR
        if (((int(s[_ARMED]) + h30) & m31) - h30) == 0:
            if d <= 0:
                s[_ARMED] = 1  # past the systolic peak
        elif d >= thr and prev_d < thr and sd < ((((int(s[_PPL]) + h30) & m31) - h30) >> 1) and since >= (((int(s[REFR]) + h30) & m31) - h30):
            frac = ((thr - prev_d) << 8) // (d - prev_d)
            pp = (((int(s[_SMAX]) + h30) & m31) - h30) - (((int(s[_SMIN]) + h30) & m31) - h30)
            s[_PPL] = pp
            if (((int(s[_LASTOK]) + h30) & m31) - h30):
                k = (((int(s[BEATS]) + h30) & m31) - h30)
                idx = RING + ((k & _RING_MASK) << 1)
                s[idx] = (since << 8) + frac - (((int(s[_LASTFRAC]) + h30) & m31) - h30)
                s[idx + 1] = pp
                s[BEATS] = (k + 1) & 0x3FFFFFFF
                dlim = since << 1
                if dlim > maxi:
                    dlim = maxi
                s[_DECAY_AFTER] = dlim
            s[_LASTOK] = 1
            s[_LASTFRAC] = frac
            s[_SINCE] = 0
            s[_ARMED] = 0
            s[_SMIN] = sd
            s[_SMAX] = sd
            # The upstroke slope peaks just after the crossing: it was tracked over the cycle that ends here.
            pk = (((int(s[_DMAX]) + h30) & m31) - h30)
            s[_DMAX] = d
            if pk > 3 * amp and amp > 0:
                pk = 3 * amp
            if pk > amp:
                amp += (pk - amp) >> 1
            else:
                amp += (pk - amp) >> 2
            s[AMP] = amp
        n = (((int(s[_N]) + h30) & m31) - h30) + 1
        if n >= (((int(s[_FS]) + h30) & m31) - h30):
            for j in range(_NSUMS):
                s[LAST + j] = (((int(s[ACC + j]) + h30) & m31) - h30)
                s[ACC + j] = 0
            s[LAST_SHIFT] = sh
            s[_N] = 0
            s[READY] += 1
            return True
        s[_N] = n
        return False


    def skip(self, n):
        """n samples were lost: they still take their place in the second they fall in, and every filter
        restarts at the next sample. Returns the seconds the hole completed. Allocation-free."""
        st = self._st
        total = st[_N] + n  # n <= 2**28 (acquisition caps it): a small int on the ESP32
        k = total // self.fs
        st[_N] = total - k * self.fs
        st[_RESTART] = 1
        return k


@micropython.viper
def autocorrelate(st, lo: int, hi: int) -> int:
    """Autocorrelation of the decimated ring for lags lo..hi into st[ACF_OUT + lag - lo]; returns r(0).

    The window is winsorised first at _ACF_CLIP x its robust mean |v| (the mean of |v| clipped at _ACF_CLIP x
    the plain mean), so a motion spike cannot dominate it, then scaled to |v| < 1024 into st[_ACF_TMP...]:
    sum |v| < 256 * 2**14 = 2**22, every product is < 2**20 and every sum < 2**28.
    """
    s = ptr32(st)
    h30 = int(s[_H30])
    m31 = (h30 << 1) - 1
    pos = (((int(s[APOS]) + h30) & m31) - h30)
    n = pos if pos < ACF_LEN else ACF_LEN
    # Winsorise at _ACF_CLIP x the mean |v| so a motion spike cannot dominate the window's autocorrelation.
    sa = 0
    for i in range(n):
        v = (((int(s[ACF_RING + i]) + h30) & m31) - h30)
        sa += v if v >= 0 else 0 - v
    nn = n if n > 0 else 1
    mx = (sa * _ACF_CLIP) // nn
    # second pass: the mean |v| of the values clipped at the first level, so the spike's own share drops out
    sa = 0
    for i in range(n):
        v = (((int(s[ACF_RING + i]) + h30) & m31) - h30)
        if v < 0:
            v = 0 - v
        sa += v if v < mx else mx
    mx = (sa * _ACF_CLIP) // nn
    if mx < 1:
        mx = 1
    sh = 0
    while (mx >> sh) > 1023:
        sh += 1
    first = pos - n
    for j in range(first, pos):
        v = (((int(s[ACF_RING + (j & _ACF_MASK)]) + h30) & m31) - h30)
        if v > mx:
            v = mx
        elif v < 0 - mx:
            v = 0 - mx
        s[_ACF_TMP + (j & _ACF_MASK)] = v >> sh
    r0 = 0
    for j in range(first, pos):
        v = (((int(s[_ACF_TMP + (j & _ACF_MASK)]) + h30) & m31) - h30)
        r0 += v * v
    if hi - lo >= ACF_MAX_LAGS:
        hi = lo + ACF_MAX_LAGS - 1
    for lag in range(lo, hi + 1):
        r = 0
        for j in range(first + lag, pos):
            r += ((((int(s[_ACF_TMP + (j & _ACF_MASK)]) + h30) & m31) - h30)) * ((((int(s[_ACF_TMP + ((j - lag) & _ACF_MASK)]) + h30) & m31) - h30))
        s[ACF_OUT + lag - lo] = r
    return r0
