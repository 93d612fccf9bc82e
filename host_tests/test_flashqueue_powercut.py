"""Power-cut sweeps of the flash queue: cut at every block write of a scenario, remount, check the model.

Each test is one MicroPython process (host_tests/mp/queue_scenarios.py does the work). A cut write may be
torn. After every cut: no durable record lost, no corrupt record returned, order kept, a put_many all or
nothing, acknowledged records never again unless their own ack was cut, sequence numbers keep growing.
"""

from __future__ import annotations

# Tally keys that are information, not violations.
INFO = {"cut_points", "failures", "ack_repeats", "ack_cuts_old_head", "ack_cuts_new_head", "scenario_dropped"}

SWEEP = """
import json
import queue_scenarios as qs
from flashqueue import FlashQueue
tally = qs.new_tally()
"""

# The sweep holds RAM block devices and snapshots of them: that is the harness's memory, not the device's, and
# it outgrows the unix port's 1 MiB default heap on a 32-bit build.
SWEEP_HEAP = "8M"


def violations(tally: dict) -> dict:
    return {k: v for k, v in tally.items() if k not in INFO and v}


def test_sweep_every_write_of_a_realistic_scenario(mp):
    t = mp.json(SWEEP + """
writes = qs.sweep(qs.realistic_ops(), tally)
tally["writes"] = writes
print(json.dumps(tally))
""", timeout=600, heapsize=SWEEP_HEAP)
    assert violations({k: v for k, v in t.items() if k != "writes"}) == {}, t["failures"]
    assert t["cut_points"] == t["writes"] >= 250
    assert t["scenario_dropped"] > 0  # the scenario fills the queue past capacity
    # cuts inside ack() left the old head (batch delivered again) and the new one, both seen
    assert t["ack_cuts_old_head"] > 0 and t["ack_cuts_new_head"] > 0


def test_sweep_every_write_of_random_scenarios(mp):
    t = mp.json(SWEEP + """
for seed in (11, 12, 13):
    qs.sweep(qs.random_ops(seed, 60), tally)
print(json.dumps(tally))
""", timeout=900, heapsize=SWEEP_HEAP)
    assert violations(t) == {}, t["failures"]
    assert t["cut_points"] >= 1000
    assert t["ack_cuts_old_head"] > 0 and t["ack_cuts_new_head"] > 0


# The sweep must be able to fail: three broken queues, each caught.
BROKEN = """
class NoFlush:
    def __init__(self, f):
        self.f = f
    def write(self, b):
        return self.f.write(b)
    def flush(self):
        pass

class Lazy(FlashQueue):
    # put() returns before its data is committed (committed at the next peek)
    def _tail_for(self, nbytes):
        return NoFlush(FlashQueue._tail_for(self, nbytes))
    def peek_batch(self, *a):
        if self._tail is not None:
            self._tail.flush()
        return FlashQueue.peek_batch(self, a[0], a[1])

class Piecewise(FlashQueue):
    # put_many() commits record by record
    def _write_record(self, f, seq, payload):
        FlashQueue._write_record(self, f, seq, payload)
        f.flush()

class TwoStepHead(FlashQueue):
    # ack() removes the old head file before writing the new one
    def _write_head(self, *fields):
        try:
            os.remove(self._head_path())
        except OSError:
            pass
        FlashQueue._write_head(self, fields[0], fields[1], fields[2], fields[3], fields[4])
"""


def test_the_sweep_catches_broken_queues(mp):
    t = mp.json(SWEEP + "import os\n" + BROKEN + """
out = {}
ops = qs.realistic_ops()
for cls in (Lazy, Piecewise, TwoStepHead):
    t = qs.new_tally()
    qs.sweep(ops, t, cuts=range(300), queue_class=cls)
    out[cls.__name__] = t
print(json.dumps(out))
""", timeout=600, heapsize=SWEEP_HEAP)
    assert t["Lazy"]["lost_records"] > 0
    assert t["Piecewise"]["partial_batches"] > 0
    assert t["TwoStepHead"]["redelivered_acked"] > 0
