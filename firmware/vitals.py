# Per-second stage of the vitals pipeline: heart rate, SpO2, perfusion index and signal quality.
#
# Usage (the acquisition core feeds raw counts, already un-swapped if the board says so):
#     v = Vitals(fs, cfg["vitals"])
#     v.push(red, ir)                    # per sample, allocation-free (vitals_filter.PulseFilter)
#     v.gap(n)                           # n samples lost (FIFO overflow): allocation-free
#     while v.pending():                 # one reading per second of the timeline, lost seconds included
#         hr_x10, spo2_x10, pi_x100, quality = v.reading()
# (push() also returns True when it completes a second, for callers that never see gaps.)
# A value is None when it is not trustworthy; `quality` is a bitmask of the reasons (0 = good). When `motion`
# is set, `v.gate` says which criterion of the motion/signal-quality gate withheld the values (GATE_* bits).
# reading() works on fixed-size rings: it may allocate transiently, nothing that grows with run time.
from array import array

from micropython import const

import vitals_filter as vf

NO_FINGER = const(1)
SATURATED = const(2)
MOTION = const(4)  # motion or noise: beats do not form a consistent rhythm, or red and IR disagree
LOW_PERFUSION = const(8)
IRREGULAR = const(16)
WARMING_UP = const(32)
CHANNELS_SWAPPED = const(64)
LOST = const(128)  # samples of this second were lost (FIFO overflow), or its reading was not taken in time
# Motion / signal-quality gate: which criterion withheld the values (Vitals.gate; docs/vitals.md explains each).
GATE_LOST = const(1)  # no beat and no pulse-sized swing for 3 s, or no beats 10 s after the finger arrived
GATE_PERIODICITY = const(2)  # spectral concentration: under 30 % of the window's power is periodic at any lag
GATE_RHYTHM = const(4)  # beat intervals and autocorrelation disagree, and the periodicity is not strong alone
GATE_OCTAVE = const(8)  # the rhythm repeats at half its period: its rate is ambiguous (gait, arm swing)
GATE_DC_SHIFT = const(16)  # sudden DC shift (the sensor moved on the skin): the interval window restarts
GATE_RED_IR = const(32)  # red and IR pulsatile signals disagree (correlation < 0.8)
GATE_PEAKS = const(64)  # twice as many prominent peaks as beats: a faster rhythm rides on the one measured
GATES = (
    (GATE_LOST, "pulse_lost"),
    (GATE_PERIODICITY, "aperiodic"),
    (GATE_RHYTHM, "rhythm"),
    (GATE_OCTAVE, "octave"),
    (GATE_DC_SHIFT, "dc_shift"),
    (GATE_RED_IR, "red_ir"),
    (GATE_PEAKS, "extra_peaks"),
)
REASONS = (
    (NO_FINGER, "no_finger"),
    (SATURATED, "saturated"),
    (MOTION, "motion"),
    (LOW_PERFUSION, "low_perfusion"),
    (IRREGULAR, "irregular"),
    (WARMING_UP, "warming_up"),
    (CHANNELS_SWAPPED, "channels_swapped"),
    (LOST, "lost"),
)

DEFAULTS = {
    "spo2_curve": [110.0, -25.0, 0.0],
    "finger_min_counts": 10000,
    "min_pi_pct": 0.1,
}

_SECONDS = const(16)  # per-second ring length
_HR_WINDOW_S = const(10)
_SPO2_WINDOW_S = const(6)
_SAT_HOLD_S = const(3)
_WARMUP_S = const(3)
_SETTLE_S = const(1)
_QUIET_S = const(3)  # seconds without a beat (and without a pulse-sized swing): the pulse is lost
_WARMUP_MAX_S = const(10)  # fewer than 3 intervals this long after the finger arrived: no pulse, not warm-up
_LOST_SHARE = const(8)  # a swing (|AC| peak) below 1/8 of the median cycle's peak-to-peak is no pulse
_MIN_INTERVALS = const(3)
_TOLERANCE = 0.2  # an interval (or k of them) matches k periods within this fraction of a period
_ACF_MIN_BPM = const(30)
_ACF_FIRST_BPM = const(45)  # the first estimates after a restart cover rates down to this
_MIN_PERIODICITY = 0.3  # autocorrelation peak (normalised) below this: no pulse, only noise
_PEAK_SHARE = 0.8  # the shortest lag whose peak reaches this share of the highest is the period
_PEAK_SHARE_MIN = 0.5  # autocorrelation peaks at least this share of the highest are period candidates
_MAX_DETECTIONS = 1.5  # detections per period above which unpaired beats veto a period on its own
_HALF_MAX = 0.0  # any reported period needs an anti-phase autocorrelation at half of it (no octave doubt)
_EXTRA_PEAKS = 2.3  # prominent peaks per beat of the reported rate above which another rhythm is present
_PEAK_PROMINENCE = const(3)  # a peak counts when it rises and falls by 1/3 of the typical swing (1/6 of p-p)
_DC_SHIFT = 6  # DC step between two seconds above this many median pulse heights: the sensor moved
_STRONG_PERIODICITY = 0.4  # periodicity this strong gives a HR on its own when the beats do not
_MIN_DIRECT = 0.5  # below: the rhythm holds only by joining detections (a multiple of the period)
_STEADY = 0.6  # share of the window in directly matched intervals for the median to stand on its own
_DIRECT_MARGIN = 0.1  # candidates within this share of the best explain the beats equally well
_MIN_KEPT = 0.6  # below: no rhythm (motion/noise)
_REGULAR_KEPT = 0.85  # below: irregular rhythm (value still reported)
_MIN_CORR = 0.8  # red/IR pulsatile correlation below this is motion or noise
_REFR_SHARE = 0.6  # no beat sooner than this share of a clear autocorrelation period (dicrotic waves)
_REFR_RHO = 0.5  # autocorrelation peak needed for the period to set the refractory
_SWAP_R = 1.8  # ratio of ratios above this looks like red and IR swapped (SpO2 would read < ~65 %)


def reasons(quality):
    return [name for bit, name in REASONS if quality & bit]


def gates(gate):
    return [name for bit, name in GATES if gate & bit]


def _bitlen(v):
    n = 0
    while v:
        v >>= 1
        n += 1
    return n


class Vitals(vf.PulseFilter):
    def __init__(self, fs, cfg=None, swap_detect=True, use_red=True):
        vf.PulseFilter.__init__(self, fs)
        cfg = cfg or {}
        curve = cfg.get("spo2_curve", DEFAULTS["spo2_curve"])
        if type(curve) not in (list, tuple) or len(curve) != 3:
            raise ValueError("vitals.spo2_curve: expected a list of 3 numbers, got %r" % (curve,))
        self._c0, self._c1, self._c2 = float(curve[0]), float(curve[1]), float(curve[2])
        self._finger_min = cfg.get("finger_min_counts", DEFAULTS["finger_min_counts"])
        self._min_pi = float(cfg.get("min_pi_pct", DEFAULTS["min_pi_pct"]))
        self._swap_detect = swap_detect
        self._use_red = use_red
        # Per-second rings.
        self._dc_ir = array("f", bytearray(4 * _SECONDS))
        self._dc_red = array("f", bytearray(4 * _SECONDS))
        self._ri = array("f", bytearray(4 * _SECONDS))
        self._ii = array("f", bytearray(4 * _SECONDS))
        self._rr = array("f", bytearray(4 * _SECONDS))
        self._flags = array("i", bytearray(4 * _SECONDS))
        self._peak = array("i", bytearray(4 * _SECONDS))  # largest |band-passed IR| of each second (Q4)
        self._npk = array("i", bytearray(4 * _SECONDS))  # prominent maxima counted in each second
        self._sec = 0  # seconds seen (ring position)
        self._valid_s = 0  # consecutive seconds with a finger and no restart
        self._resets = 0
        self._beat_start = 0
        self._last_beats = 0
        self._quiet_s = 0  # consecutive seconds in which no beat was recorded
        self._lost = 0  # GATE_LOST / GATE_DC_SHIFT: the interval window restarted; until 3 new intervals the pulse
        # is missing (that gate), not warming up
        self._resettle = False  # the interval window restarted: discard the next second's beats too
        self._pp = 0  # median cycle peak-to-peak behind the last reported heart rate (Q4), for the DC-shift gate
        self.gate = 0  # gate criteria that withheld the last reading (GATE_* bits)
        self.lost = 0  # samples reported lost through gap() (wraps at 2**30)
        self._owed = 0  # seconds the holes completed, not yet read (they follow the READY ones before them)
        self._gap_first = 0  # timeline seconds _gap_first.._gap_last hold lost samples: their readings are null
        self._gap_last = -1
        self._acf = (1, [], 1.0)  # (first lag, normalised autocorrelation per lag, samples per lag) of _periods()
        self._last_r = None  # ratio of ratios of the last reading (for calibration tools)
        self._refr0 = self._st[vf.REFR]

    # -- lost samples ------------------------------------------------------------------------------------

    def gap(self, n):
        """n samples were lost before the next push() (the acquisition core's drain path: allocation-free).

        Every second that holds lost samples gives a reading without values (quality LOST), in its place on
        the timeline, so every later reading keeps its true second; the filters and the interval window
        restart at the next sample, so no PPG is spliced across the hole."""
        if n <= 0:
            return
        st = self._st
        first = self._sec + st[vf.READY] + self._owed  # the second the hole starts in
        if self._gap_last < self._sec:
            self._gap_first = first  # (otherwise the previous hole is not read yet: one range)
        k = self.skip(n)
        self._owed += k
        self._gap_last = first + k  # the hole ends in the second that is still filling
        self.lost = (self.lost + n) & 0x3FFFFFFF

    def pending(self):
        """Readings due: one per second of samples (lost ones included) not yet taken with reading()."""
        return self._st[vf.READY] + self._owed

    def lost_due(self):
        """How many of the readings due next are lost seconds in a row (a hole reading() is about to report)."""
        return self._owed if self._owed and self._sec >= self._gap_first else 0

    def drop_lost(self):
        """Take the lost seconds due next without their readings (a hole too long to send as nulls: the caller
        ends its batch there); returns how many. Allocation-free, one pass over the ring at most."""
        k = self.lost_due()
        for _ in range(min(k, _SECONDS)):
            self._lost_second()
        if k > _SECONDS:
            self._sec += k - _SECONDS
        self._owed -= k
        return k

    def _lost_second(self):
        i = self._sec % _SECONDS
        self._npk[i] = 0
        self._dc_ir[i] = self._dc_red[i] = 0.0
        self._ri[i] = self._ii[i] = self._rr[i] = 0.0
        self._peak[i] = 0
        self._flags[i] = LOST
        self._sec += 1
        self._valid_s = 0
        return None, None, None, LOST

    # -- per-second ring ---------------------------------------------------------------------------------

    def _take_second(self):
        st = self._st
        last = vf.LAST
        fs = self.fs
        i = self._sec % _SECONDS
        scale = float(1 << (2 * st[vf.LAST_SHIFT]))
        self._dc_ir[i] = st[last + vf.S_SUM_IR] / fs
        self._dc_red[i] = st[last + vf.S_SUM_RED] / fs
        self._ri[i] = st[last + vf.S_RI] * scale
        self._ii[i] = st[last + vf.S_II] * scale
        self._rr[i] = st[last + vf.S_RR] * scale
        self._peak[i] = st[last + vf.S_MAX_IR]
        self._npk[i] = st[last + vf.S_PEAKS]
        flags = 0
        if st[last + vf.S_SAT]:
            flags |= SATURATED
        if self._dc_ir[i] < self._finger_min:
            flags |= NO_FINGER
        self._flags[i] = flags
        self._sec += 1
        # The peak counter's prominence follows the typical swing of the last 5 s.
        sw = sorted(self._peak[(self._sec - k) % _SECONDS] for k in range(1, min(5, self._sec) + 1))
        st[vf.PK_H] = max(4, sw[len(sw) // 2] // _PEAK_PROMINENCE)
        # Scale next second's AC products so |bp >> shift| stays below 512.
        peak = max(st[last + vf.S_MAX_IR], st[last + vf.S_MAX_RED] if self._use_red else 0)
        st[vf.SHIFT] = max(0, _bitlen(peak) - 9)
        # Beats while the filters settle do not count, nor those of the second after the interval window
        # restarted (the detector is still finding the pulse again).
        settle = self._resettle
        self._resettle = False
        if st[vf.RESETS] != self._resets or flags & NO_FINGER:
            self._resets = st[vf.RESETS]
            self._valid_s = 0
            self._lost = 0
            self._pp = 0
        else:
            self._valid_s += 1
            # A DC step far larger than the pulse: the sensor moved on the skin, and every beat around it is
            # distorted. The interval window restarts (3 new intervals are needed, as after a lost pulse).
            step = self._dc_ir[i] - self._dc_ir[(self._sec - 2) % _SECONDS]
            if self._valid_s > _SETTLE_S and self._pp and abs(step) * 16 > _DC_SHIFT * self._pp:
                self._lost = GATE_DC_SHIFT
                self._resettle = settle = True
        if settle or self._valid_s < _SETTLE_S:
            self._beat_start = st[vf.BEATS]
        if st[vf.BEATS] != self._last_beats:
            self._last_beats = st[vf.BEATS]
            self._quiet_s = 0
        else:
            self._quiet_s += 1
        return flags

    def _window_flags(self, seconds):
        f = 0
        n = min(seconds, self._sec)
        for k in range(1, n + 1):
            f |= self._flags[(self._sec - k) % _SECONDS]
        return f

    # -- heart rate from beat intervals ------------------------------------------------------------------

    def _intervals(self):
        """Beat intervals (Q8 samples) and cycle amplitudes of the trailing window, newest first."""
        st = self._st
        beats = st[vf.BEATS]
        avail = (beats - self._beat_start) & 0x3FFFFFFF
        avail = min(avail, vf.RING_SIZE)
        limit = _HR_WINDOW_S * self.fs * 256
        total = 0
        ivs = []
        pps = []
        for j in range(1, avail + 1):
            idx = vf.RING + (((beats - j) & (vf.RING_SIZE - 1)) << 1)
            iv = st[idx]
            if total + iv > limit and len(ivs) >= _MIN_INTERVALS:
                break
            total += iv
            ivs.append(iv)
            pps.append(st[idx + 1])
        return ivs, pps

    def _periods(self):
        """Candidate pulse periods from the autocorrelation of the trailing ~8-12 s.

        Returns (peaks, best): peaks = [(period in samples, normalised autocorrelation), ...] for every local
        maximum that reaches _PEAK_SHARE_MIN of the highest one (shortest lag first); empty if aperiodic.
        """
        fd = self.acf_rate
        lo = max(1, int(fd * 60 / vf.MAX_BPM))
        hi = min(lo + vf.ACF_MAX_LAGS - 1, int(fd * 60 / _ACF_MIN_BPM) + 1)
        st = self._st
        n = min(st[vf.APOS], vf.ACF_LEN)
        hi = min(hi, n // 2)  # lags up to half the window: shorter while the ring fills after a restart
        if hi < int(fd * 60 / _ACF_FIRST_BPM):
            return [], 0.0
        r0 = vf.autocorrelate(st, lo, hi)
        if r0 <= 0:
            return [], 0.0
        best = 0.0
        norm = []
        for lag in range(lo, hi + 1):
            v = st[vf.ACF_OUT + lag - lo] / r0
            norm.append(v)
            if v > best:
                best = v
        self._acf = (lo, norm, self.fs / fd)
        peaks = []
        if best < _MIN_PERIODICITY:
            return peaks, best
        scale = self.fs / fd
        for i in range(1, len(norm) - 1):
            a, b, c = norm[i - 1], norm[i], norm[i + 1]
            if b > a and b >= c and b >= _PEAK_SHARE_MIN * best:
                den = a - 2 * b + c
                off = 0.5 * (a - c) / den if den < 0 else 0.0
                peaks.append(((lo + i + off) * scale, b))
        return peaks, best

    def _extra_peaks(self, bpm):
        """True when the signal held over _EXTRA_PEAKS prominent peaks per beat of bpm in the HR window."""
        w = min(_HR_WINDOW_S, self._valid_s - _SETTLE_S)
        if w < 3:
            return False
        n = 0
        for k in range(1, w + 1):
            n += self._npk[(self._sec - k) % _SECONDS]
        return n * 60 > _EXTRA_PEAKS * bpm * w

    def _acf_at(self, period):
        """Normalised autocorrelation at a period in samples (linear interpolation; 0 outside the lags)."""
        lo, norm, scale = self._acf
        x = period / scale - lo
        i = int(x)
        if x < 0 or i + 1 >= len(norm):
            return 0.0
        return norm[i] + (x - i) * (norm[i + 1] - norm[i])

    def _recent_peak(self, seconds):
        m = 0
        for k in range(1, min(seconds, self._sec) + 1):
            m = max(m, self._peak[(self._sec - k) % _SECONDS])
        return m

    @staticmethod
    def _count(ivs, t):
        """(pulse periods, Q8 samples accepted, Q8 samples matched directly) of the intervals that span a whole
        number of periods t (Q8) within the tolerance; an interval that does not (an extra detection) is joined
        to the next one, and the joined sum is accepted but not counted as matched directly."""
        tol = _TOLERANCE * t
        n = 0
        total = 0
        single = 0
        carry = 0
        for iv in ivs:
            x = carry + iv
            k = int(x / t + 0.5)
            if k >= 1 and abs(x - k * t) <= tol:
                n += k
                total += x
                if carry == 0:
                    single += x
                carry = 0
            elif x > 3.5 * t:
                carry = 0
            else:
                carry = x
        return n, total, single

    def _set_refractory(self, peaks, best):
        """Hold off the beat detector for _REFR_SHARE of the pulse period when the autocorrelation shows it
        clearly (the shortest peak reaching _PEAK_SHARE of the highest, >= _REFR_RHO, anti-phase at half of
        it: not a multiple of the true period), so a dicrotic wave rising through the slope threshold is not a
        second beat. The autocorrelation does not depend on the detections, so there is no feedback loop."""
        refr = self._refr0
        if best >= _REFR_RHO:
            for period, rho in peaks:
                if rho >= _PEAK_SHARE * best:
                    if self._acf_at(period / 2) <= _HALF_MAX:
                        refr = max(refr, int(_REFR_SHARE * period))
                    break
        self._st[vf.REFR] = refr

    def _heart_rate(self):
        """(bpm or None, quality bits, median cycle amplitude in Q4).

        Beat intervals give the precise rate; the autocorrelation says how many pulse periods each interval
        spans, so a missed beat (2 periods) or an extra one (two parts of one period) cannot halve or double
        the rate. Octave errors are resolved both ways: a period candidate too long leaves most intervals
        unexplained, one too short has a weak autocorrelation. When the beats do not form a rhythm but the
        periodicity is strong, the rate comes from the autocorrelation period.
        """
        st = self._st
        st[vf.REFR] = self._refr0
        ivs, pps = self._intervals()
        if len(ivs) < _MIN_INTERVALS:
            if self._lost or self._valid_s >= _WARMUP_MAX_S:
                self.gate |= self._lost or GATE_LOST
                return None, MOTION, 0
            return None, WARMING_UP, 0
        self._lost = 0
        pps.sort()
        pp = pps[len(pps) // 2]
        if self._quiet_s >= _QUIET_S and self._recent_peak(_QUIET_S) * _LOST_SHARE < pp:
            # Pulse lost: no beat, and no swing of even a quarter of the pulses', for 3 s. Nothing from before
            # the gap may stand for the current rate.
            self._beat_start = st[vf.BEATS]
            st[vf.APOS] = 0  # and the autocorrelation forgets what it saw before the pulse was lost
            self._lost = GATE_LOST
            self._resettle = True
            self.gate |= GATE_LOST
            return None, MOTION, 0
        srt = sorted(ivs)
        med = srt[len(srt) // 2]
        peaks, best = self._periods()
        self._set_refractory(peaks, best)
        if not peaks:
            self.gate |= GATE_PERIODICITY
            return None, MOTION, pp
        # Candidate reference periods: the median interval and the clear autocorrelation peaks. Each is scored
        # by the share of the window's time in intervals that span a whole number of its periods directly
        # (without joining extra detections): a period too long explains the beats only by joining them.
        # Among candidates that explain the beats about equally well (a period and its multiples or
        # fractions), the autocorrelation decides: the shortest lag whose peak reaches _PEAK_SHARE of the best.
        # The median counts without an autocorrelation peak only when the beats are steady on their own and the
        # signal is not anti-phase at that lag (detections alternating between the pulse and a dicrotic wave).
        span = sum(ivs)
        cands = []
        med_rho = None
        for period, rho in peaks:
            p256 = period * 256
            cands.append((p256, rho, self._count(ivs, p256)))
            if abs(med - p256) <= _TOLERANCE * p256:
                med_rho = rho if med_rho is None or rho > med_rho else med_rho
        c = self._count(ivs, med)
        if med_rho is not None or (c[2] >= _STEADY * span and self._acf_at(med / 256) > 0):
            cands.append((med, med_rho, c))
        choice = None
        if cands:
            dmax = max(c[2][2] for c in cands)
            tied = [c for c in cands if c[2][2] >= dmax - _DIRECT_MARGIN * span]
            top = max((c[1] for c in tied if c[1] is not None), default=None)
            if top is None:
                choice = tied[0]
            else:
                for c in sorted(tied, key=lambda c: c[0]):
                    if c[1] is not None and c[1] >= _PEAK_SHARE * top:
                        choice = c
                        break
        n, total, direct = choice[2]
        kept = total / span
        if n >= _MIN_INTERVALS and kept >= _MIN_KEPT and direct >= _MIN_DIRECT * span:
            # Octave check: a pulse is anti-phase with itself half a period later. A rhythm that repeats at half
            # its period (gait: arm swing and steps) leaves its own rate in doubt.
            if self._acf_at(total / n / 512) > _HALF_MAX:
                self.gate |= GATE_OCTAVE
                return None, MOTION, pp
            bpm = 60.0 * self.fs * 256 * n / total
            if self._extra_peaks(bpm):
                self.gate |= GATE_PEAKS
                return None, MOTION, pp
            return bpm, (IRREGULAR if kept < _REGULAR_KEPT else 0), pp
        paired = n >= _MIN_INTERVALS and kept >= _MIN_KEPT  # the detections add up to whole periods
        if not paired and choice[0] * len(ivs) > _MAX_DETECTIONS * span:
            self.gate |= GATE_RHYTHM
            return None, MOTION, pp  # beats come faster than the period but do not add up to it: not its multiple
        strong = _STRONG_PERIODICITY
        if choice[1] is not None and choice[1] >= strong:
            if self._acf_at(choice[0] / 512) <= _HALF_MAX:
                bpm = 60.0 * self.fs * 256 / choice[0]
                if self._extra_peaks(bpm):
                    self.gate |= GATE_PEAKS
                    return None, MOTION, pp
                return bpm, IRREGULAR, pp
            self.gate |= GATE_OCTAVE
            return None, MOTION, pp
        self.gate |= GATE_RHYTHM
        return None, MOTION, pp

    # -- SpO2 from the ratio of ratios -------------------------------------------------------------------

    def _ratio(self):
        """(R, red/IR correlation) over the SpO2 window, or (None, 0)."""
        # Only seconds after the last restart (finger placed) and after the filters settled.
        n = min(_SPO2_WINDOW_S, self._valid_s - _SETTLE_S)
        ri = ii = rr = dci = dcr = 0.0
        for k in range(1, n + 1):
            i = (self._sec - k) % _SECONDS
            ri += self._ri[i]
            ii += self._ii[i]
            rr += self._rr[i]
            dci += self._dc_ir[i]
            dcr += self._dc_red[i]
        if ii <= 0 or rr <= 0 or dcr <= 0 or dci <= 0:
            return None, 0.0
        corr = ri / (ii * rr) ** 0.5
        return (ri / ii) * (dci / dcr), corr

    def spo2_from_ratio(self, r):
        return self._c0 + self._c1 * r + self._c2 * r * r

    # -- the per-second reading --------------------------------------------------------------------------

    def reading(self):
        """(hr_x10, spo2_x10, pi_x100, quality) of the oldest second due: integers in 0.1 bpm, 0.1 %, 0.01 %,
        or None when not valid."""
        self.gate = 0
        st = self._st
        sec = self._sec
        if self._owed and sec >= self._gap_first:
            self._owed -= 1  # a second the hole completed
            return self._lost_second()
        ready = st[vf.READY]
        if ready:
            st[vf.READY] = ready - 1
            if ready > 1:
                return self._lost_second()  # a later second overwrote its sums before it was read
        if self._gap_first <= sec <= self._gap_last:
            return self._lost_second()  # the second the hole ended in: part of its samples are missing
        flags = self._take_second()
        self._last_r = None
        quality = self._window_flags(_SAT_HOLD_S) & SATURATED
        if flags & NO_FINGER:
            return None, None, None, quality | NO_FINGER
        if quality:
            return None, None, None, quality
        bpm, hq, pp = self._heart_rate()
        quality |= hq
        if self._valid_s < _WARMUP_S:
            quality |= WARMING_UP
        dc = self._dc_ir[(self._sec - 1) % _SECONDS]
        pi = pp / 16.0 / dc * 100.0 if pp and dc > 0 else None
        if pi is not None and pi < self._min_pi:
            quality |= LOW_PERFUSION
        if quality & (WARMING_UP | MOTION):
            return None, None, None, quality
        spo2 = None
        if self._use_red:
            r, corr = self._ratio()
            if r is None or corr < _MIN_CORR:
                # Red and IR see the same pulse; motion moves them differently (or one has no pulse at all).
                self.gate |= GATE_RED_IR
                return None, None, None, quality | MOTION
            if self._swap_detect and r > _SWAP_R:
                quality |= CHANNELS_SWAPPED
            elif not quality & LOW_PERFUSION:
                self._last_r = r
                s = self.spo2_from_ratio(r)
                if 50.0 <= s <= 102.0:
                    spo2 = min(100.0, s)
        if bpm is not None:
            self._pp = pp
        hr_x10 = int(bpm * 10 + 0.5) if bpm is not None else None
        spo2_x10 = int(spo2 * 10 + 0.5) if spo2 is not None else None
        pi_x100 = int(pi * 100 + 0.5) if pi is not None else None
        return hr_x10, spo2_x10, pi_x100, quality

    def last_ratio(self):
        """Ratio of ratios behind the last reading (None if there was none): what `oxilink calibrate` fits."""
        return self._last_r
