# The sensor on the board double's I2C wires: firmware/sim/max30102_sim.py's register-level MAX30102, plus what
# a test watches: every sample the chip could not store (its FIFO was full), reported to the launcher, and
# faults the launcher injects (a NACKing or stuck bus, finger off, saturation). Both go over the link at most
# every 100 ms, from the bus transactions themselves (no thread).
import _builtin
import _link
from sim.max30102_sim import CsvSource, Max30102Sim, SyntheticPPG

_t = _builtin.load("time")
_REPORT_MS = 100


class BoardChip(Max30102Sim):
    def __init__(self, source, part_id):
        self.overflowed = 0  # samples lost to a full FIFO since this run began (the chip's OVF_COUNTER, unsaturated)
        self.bus_fault = None  # errno every transaction raises (19 NACK, 116 stuck), set by the launcher
        self._reported = _t.ticks_ms()
        Max30102Sim.__init__(self, _t, source, part_id=part_id)

    def report(self, force=False):
        """Tell the launcher the counters and take its faults, at most every 100 ms (bus transactions and INT
        pin reads call this; a soft reset forces it). A hard reset may lose the last 100 ms of counts."""
        now = _t.ticks_ms()
        if not force and _t.ticks_diff(now, self._reported) < _REPORT_MS:
            return
        self._reported = now
        r = _link.get().call("sensor", overflowed=self.overflowed, produced=self.produced)
        self.bus_fault = r.get("bus_fault")
        self.finger_on = r.get("finger_on", True)
        self.saturate = r.get("saturate", False)

    def _convert(self):
        if self._count >= 32:
            self.overflowed += 1
        Max30102Sim._convert(self)


def _source(spec):
    if spec["kind"] == "csv":
        return CsvSource(spec["path"], loop=spec.get("loop", True))
    return SyntheticPPG(hr_bpm=spec.get("hr_bpm", 72), ratio=spec.get("ratio", 0.6), seed=spec.get("seed", 1))


def build(spec):
    return BoardChip(_source(spec["source"]), spec.get("part_id", 0x15))
