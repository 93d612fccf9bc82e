# time on the board double: the ESP32 port's time module. Its epoch is 2000-01-01 (ports/esp32 builds with
# MICROPY_EPOCH_IS_2000): time() counts seconds from there, gmtime(0) is 2000-01-01, and there is no time zone.
# ticks_* are the port's own (the clock shim makes them the board's time since boot).
import _builtin

_t = _builtin.load("time")
_EPOCH_2000 = 946684800
_g = globals()
for _n in dir(_t):
    if not _n.startswith("_") and _n not in _g:
        _g[_n] = getattr(_t, _n)
del _g, _n


def time_ns():
    return _t.time_ns() - _EPOCH_2000 * 1000000000


def time():
    return _t.time_ns() // 1000000000 - _EPOCH_2000


def gmtime(secs=None):
    if secs is None:
        secs = time()
    return _t.gmtime(int(secs) + _EPOCH_2000)


localtime = gmtime


def _days_from_civil(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def mktime(t):
    """Seconds since 2000-01-01 for (year, month, mday, hour, minute, second, ...); fields may overflow."""
    y, mo = t[0], t[1]
    y += (mo - 1) // 12
    mo = (mo - 1) % 12 + 1
    return (_days_from_civil(y, mo, 1) + t[2] - 1) * 86400 + t[3] * 3600 + t[4] * 60 + t[5] - _EPOCH_2000
