# Sets the board's RTC: rewrites realtime_base in the clock file the LD_PRELOAD shim reads
# (tools/oxilink/double/clockshim.c, clockstate.py). The file is opened before the flash replaces the host's
# filesystem at "/".
import os
import struct

import _builtin

_t = _builtin.load("time")
_FMT = "<IIqqqIIII8s"
_f = open(os.getenv("OXILINK_CLOCK_FILE"), "r+b")


def set_realtime_ns(target_ns):
    """Make the board's realtime clock read target_ns (nanoseconds since 1970) now."""
    for _ in range(100):
        _f.seek(0)
        raw = _f.read(64)
        magic, seq, rt, mono, anchor, rate, p1, seq_end, p2, spare = struct.unpack(_FMT, raw)
        if seq == seq_end:
            break
    rt += target_ns - _t.time_ns()
    seq = (seq + 1) & 0xFFFFFFFF
    _f.seek(0)
    _f.write(struct.pack(_FMT, magic, seq, rt, mono, anchor, rate, p1, seq, p2, spare))
