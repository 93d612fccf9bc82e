"""The board's clocks, as the LD_PRELOAD shim (clockshim.c) reads them: one 64-byte file per board.

board_realtime = realtime_base + (host_monotonic - anchor) * rate; board_monotonic likewise from mono_base.
The launcher writes it at power-on (RTC at 2000-01-01 or a chosen time, ticks from a chosen start) and when
the rate changes; the board process rewrites realtime_base when its RTC is set (double/mp/_clock.py).
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

MAGIC = 0x4B43584F  # "OXCK"
_FMT = "<IIqqqIIII8s"
SIZE = 64
EPOCH_2000 = 946684800  # 2000-01-01T00:00:00Z in unix seconds: an ESP32's RTC after power-on


@dataclass
class ClockState:
    realtime_base_ns: int
    mono_base_ns: int
    host_anchor_ns: int
    rate_milli: int = 1000
    seq: int = 0

    def pack(self) -> bytes:
        raw = struct.pack(_FMT, MAGIC, self.seq, self.realtime_base_ns, self.mono_base_ns, self.host_anchor_ns,
                          self.rate_milli, 0, self.seq, 0, b"\0" * 8)
        return raw.ljust(SIZE, b"\0")

    @classmethod
    def unpack(cls, raw: bytes) -> ClockState:
        magic, seq, rt, mono, anchor, rate, _p1, seq_end, _p2, _s = struct.unpack_from(_FMT, raw)
        if magic != MAGIC or seq != seq_end:
            raise ValueError("clock file: torn or not a board clock")
        return cls(rt, mono, anchor, rate, seq)

    def _elapsed(self, host_now_ns: int) -> int:
        return (host_now_ns - self.host_anchor_ns) * self.rate_milli // 1000

    def realtime_ns(self, host_now_ns: int | None = None) -> int:
        return self.realtime_base_ns + self._elapsed(time.monotonic_ns() if host_now_ns is None else host_now_ns)

    def monotonic_ns(self, host_now_ns: int | None = None) -> int:
        return self.mono_base_ns + self._elapsed(time.monotonic_ns() if host_now_ns is None else host_now_ns)


class BoardClock:
    """The clock file of one board."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> ClockState:
        for _ in range(100):
            try:
                return ClockState.unpack(self.path.read_bytes())
            except ValueError:
                continue
        raise ValueError(f"{self.path}: not a board clock file")

    def write(self, state: ClockState) -> None:
        state.seq = (state.seq + 1) & 0xFFFFFFFF
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, state.pack(), 0)
        finally:
            os.close(fd)

    def power_on(self, realtime_s: float = EPOCH_2000, ticks_ms: int = 0, rate: float = 1.0) -> None:
        """The board's clocks after a power-on (or any hard reset): RTC at realtime_s, ticks at ticks_ms."""
        seq = self.read().seq if self.path.exists() else 0
        self.write(ClockState(int(realtime_s * 1e9), ticks_ms * 1_000_000, time.monotonic_ns(),
                              max(1, round(rate * 1000)), seq))

    def set_rate(self, rate: float) -> None:
        """Change how fast board time runs from now on (both clocks keep their current values)."""
        s = self.read()
        now = time.monotonic_ns()
        self.write(ClockState(s.realtime_ns(now), s.monotonic_ns(now), now, max(1, round(rate * 1000)), s.seq))

    def set_realtime(self, realtime_s: float) -> None:
        s = self.read()
        now = time.monotonic_ns()
        s.realtime_base_ns += int(realtime_s * 1e9) - s.realtime_ns(now)
        self.write(s)

    def realtime(self) -> float:
        return self.read().realtime_ns() / 1e9

    def ticks_ms(self) -> int:
        return self.read().monotonic_ns() // 1_000_000

    def rate(self) -> float:
        return self.read().rate_milli / 1000
