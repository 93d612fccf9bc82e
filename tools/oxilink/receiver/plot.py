"""HR and SpO2 trends for one device, for a person who would rather look than read.

Two panels sharing the time axis (UTC). Seconds whose reading carries quality flags are shaded behind the
curves (light for flags that still come with a value, such as irregular rhythm; darker where the device
withheld the value: no finger, motion, warming up); gaps in a curve are seconds without a valid value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from .store import Reading  # noqa: E402


def _spans(times: list[dt.datetime], flags: list[bool], step: dt.timedelta) -> list[tuple[dt.datetime, dt.datetime]]:
    spans, begin = [], None
    for t, on in zip(times, flags, strict=True):
        if on and begin is None:
            begin = t
        elif not on and begin is not None:
            spans.append((begin, t))
            begin = None
    if begin is not None:
        spans.append((begin, times[-1] + step))
    return spans


def plot_trends(readings: Iterable[Reading], out: Path, title: str) -> int:
    """Writes a PNG; returns the number of readings drawn (0: nothing to draw, no file written)."""
    rows = sorted(readings, key=lambda r: r.t)
    if not rows:
        return 0
    times = [dt.datetime.fromtimestamp(r.t, dt.UTC) for r in rows]
    step = (times[-1] - times[0]) / max(len(times) - 1, 1) if len(times) > 1 else dt.timedelta(seconds=1)
    hr = [r.hr_bpm if r.hr_bpm is not None else float("nan") for r in rows]
    spo2 = [r.spo2_pct if r.spo2_pct is not None else float("nan") for r in rows]
    flagged = [bool(r.quality) and (r.hr_bpm is not None or r.spo2_pct is not None) for r in rows]
    withheld = [bool(r.quality) and r.hr_bpm is None and r.spo2_pct is None for r in rows]

    fig, (ax_hr, ax_spo2) = plt.subplots(2, 1, sharex=True, figsize=(11, 6), constrained_layout=True)
    for ax, values, label, color, limits in ((ax_hr, hr, "heart rate (/min)", "tab:red", (30, 200)),
                                             (ax_spo2, spo2, "SpO2 (%)", "tab:blue", (80, 100))):
        for a, b in _spans(times, withheld, step):
            ax.axvspan(a, b, color="0.6", alpha=0.45, lw=0)
        for a, b in _spans(times, flagged, step):
            ax.axvspan(a, b, color="gold", alpha=0.3, lw=0)
        ax.plot(times, values, color=color, lw=1.2)
        ax.set_ylabel(label)
        present = [v for v in values if v == v]
        if present:
            ax.set_ylim(min(limits[0], min(present) - 2), max(limits[1], max(present) + 2))
        ax.grid(True, alpha=0.3)
    ax_hr.set_title(title)
    ax_spo2.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d\n%H:%M:%S"))
    ax_spo2.set_xlabel("time (UTC)")
    handles = [plt.Rectangle((0, 0), 1, 1, color="gold", alpha=0.3),
               plt.Rectangle((0, 0), 1, 1, color="0.6", alpha=0.45)]
    ax_hr.legend(handles, ["quality flags (value kept)", "no valid value"], loc="upper right", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return len(rows)
