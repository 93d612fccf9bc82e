# The sensor on the board double's I2C wires: firmware/sim/max30102_sim.py's register-level MAX30102, plus what
# a test watches: every sample the chip could not store (its FIFO was full), reported to the launcher, and
# faults the launcher injects (a NACKing or stuck bus, finger off, saturation), polled every 100 ms.
import micropython

import _builtin
import _link
from sim.max30102_sim import CsvSource, Max30102Sim, SyntheticPPG

_t = _builtin.load("time")
_thread = _builtin.load("_thread")


class BoardChip(Max30102Sim):
    def __init__(self, source, part_id):
        self.overflowed = 0  # samples lost to a full FIFO since this run began (the chip's OVF_COUNTER, unsaturated)
        self.bus_fault = None  # errno every transaction raises (19 NACK, 116 stuck), set by the launcher
        Max30102Sim.__init__(self, _t, source, part_id=part_id)

    def _convert(self):
        if self._count >= 32:
            self.overflowed += 1
        Max30102Sim._convert(self)


def _source(spec):
    if spec["kind"] == "csv":
        return CsvSource(spec["path"], loop=spec.get("loop", True))
    return SyntheticPPG(hr_bpm=spec.get("hr_bpm", 72), ratio=spec.get("ratio", 0.6), seed=spec.get("seed", 1))


class _Reporter:
    pending = False

    def __init__(self, chip):
        self.chip = chip
        self.sent = (-1, -1)

    def loop(self):
        while True:
            _t.sleep_ms(100)
            if not self.pending:
                self.pending = True
                try:
                    micropython.schedule(self.tick, None)
                except RuntimeError:
                    self.pending = False

    def tick(self, _):
        self.pending = False
        c = self.chip
        r = _link.get().call("sensor", overflowed=c.overflowed, produced=c.produced)
        c.bus_fault = r.get("bus_fault")
        c.finger_on = r.get("finger_on", True)
        c.saturate = r.get("saturate", False)


def build(spec):
    chip = BoardChip(_source(spec["source"]), spec.get("part_id", 0x15))
    _thread.start_new_thread(_Reporter(chip).loop, ())
    return chip
