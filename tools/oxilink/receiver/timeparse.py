"""Times on the command line: ISO 8601 (naive means UTC), unix seconds, or an age such as 2h, 30m, 7d."""

from __future__ import annotations

import datetime as dt
import re
import time

_AGE = re.compile(r"^-?(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str | float | int, now: float | None = None) -> float:
    """Unix seconds for `text`; raises ValueError naming the accepted forms."""
    if isinstance(text, int | float):
        return float(text)
    s = text.strip()
    if m := _AGE.match(s):
        return (time.time() if now is None else now) - float(m.group(1)) * _UNITS[m.group(2)]
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    try:
        d = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r}: use ISO 8601 (2026-11-21T08:00:00Z), unix seconds, "
                         "or an age such as 2h, 30m, 7d") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d.timestamp()
