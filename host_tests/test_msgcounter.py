"""firmware/msgcounter.py: the persisted message counter never hands out the same value twice, whatever
instant the power is cut at (swept over every flash write on LittleFS over sim.ramblock), and it is bound to
its key: a key without counter state starts at 0 only once, with the deploy's marker."""

from __future__ import annotations

import pytest

# Shared MicroPython prelude: a LittleFS on a small RamBlockDev, mounted at /c, and a helper that boots a
# counter on a device, takes `steps` counters and returns them (stopping at the power cut, if any).
PRELUDE = """
import vfs
from sim.ramblock import RamBlockDev
from msgcounter import MessageCounter, CounterLost, KeyNotFresh, record
from mptest import report

KID = bytes([0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18])

def deploy_marker(kid=KID):
    with open("/c/ctr.fresh", "w") as f:
        f.write("".join("%02x" % b for b in kid))

def formatted(fresh=True):
    # An erased flash, deployed with a fresh key (the marker) unless fresh is False.
    dev = RamBlockDev(block_size=256, block_count=32)
    vfs.VfsLfs2.mkfs(dev)
    if fresh:
        mount(dev)
        deploy_marker()
        unmount()
    return dev

def mount(dev):
    vfs.mount(vfs.VfsLfs2(dev), "/c")

def unmount():
    try:
        vfs.umount("/c")
    except OSError:
        pass

RESUMED = []  # resumed_at of every boot

def boot_and_take(dev, steps, reserve, got):
    # Appends every counter handed out to got; returns True when the power was cut.
    mount(dev)
    try:
        c = MessageCounter("/c/ctr", KID, reserve=reserve)
        RESUMED.append(c.resumed_at)
        for _ in range(steps):
            got.append(c.next())
        return False
    except OSError:
        if not dev.dead:
            raise
        return True
    finally:
        unmount()
"""


@pytest.mark.parametrize("torn_bytes, lives_before", [(0, 1), (5, 1), (11, 1), (0, 0), (11, 0)])
def test_power_cut_sweep_never_repeats_a_counter(mp, torn_bytes: int, lives_before: int) -> None:
    """Cut the power after every possible number of flash writes during a run that makes several
    reservations; after the reboot the counter must continue strictly above everything handed out. With no
    life before, the sweep starts at the first boot after a deploy: the key's binding and the marker's removal
    are cut too."""
    out = mp.json(PRELUDE + f"""
RESERVE = 3
STEPS = 12 * RESERVE + 2  # 13 reservations
TORN = {torn_bytes}

base = formatted()
# A previous life of the device, so the sweep starts from existing records.
history = []
if {lives_before}:
    boot_and_take(base, 5, RESERVE, history)

probe = base.survivor()
start = probe.writes
boot_and_take(probe, STEPS, RESERVE, [])
total_writes = probe.writes - start

cuts = 0
violations = []
for k in range(total_writes + 1):
    dev = base.survivor()
    dev.cut_after = k
    dev.torn_bytes = TORN
    before = list(history)
    cut = boot_and_take(dev, STEPS, RESERVE, before)
    cuts += cut
    after = []
    if boot_and_take(dev.survivor(), 2 * RESERVE + 1, RESERVE, after):
        violations.append((k, "cut after reboot"))
    if len(set(before)) != len(before):
        violations.append((k, "repeat before cut"))
    if before and min(after) <= max(before):
        violations.append((k, "reused", max(before), min(after)))
report(total_writes=total_writes, cuts=cuts, violations=violations)
""", timeout=600)
    assert out["total_writes"] >= 13, "every reservation writes to flash"
    assert out["cuts"] == out["total_writes"], "every cut point but the last must interrupt the run"
    assert out["violations"] == []


def test_chained_power_cuts_keep_every_counter_unique(mp) -> None:
    """Many lives in a row, each cut at a pseudo-random write: all counters ever handed out are distinct
    and each boot wastes at most one reservation: it resumes at most `reserve` above where the previous
    boot resumed or the last counter used, whichever is higher."""
    out = mp.json(PRELUDE + """
import random
random.seed(5)
RESERVE = 8
dev = formatted()
used = []
max_waste = 0
for life in range(60):
    dev = dev.survivor()
    if life:  # the first boot after the deploy binds the key (the sweep above cuts that one too)
        dev.cut_after = dev.writes + random.randrange(0, 4)
        dev.torn_bytes = random.choice((0, 3, 12))
    floor = max(used[-1] + 1 if used else 0, RESUMED[-1] if RESUMED else 0)
    boot_and_take(dev, random.randrange(1, 30), RESERVE, used)
    max_waste = max(max_waste, RESUMED[-1] - floor)
report(used=len(used), distinct=len(set(used)), increasing=used == sorted(used), boots=len(RESUMED),
       max_waste=max_waste)
""", timeout=600)
    assert out["used"] > 100
    assert out["distinct"] == out["used"]
    assert out["increasing"]
    assert out["boots"] == 60
    assert 0 < out["max_waste"] <= 8


def test_resumes_above_reserved_block_and_counts_writes(mp) -> None:
    out = mp.json(PRELUDE + """
dev = formatted()
mount(dev)
c = MessageCounter("/c/ctr", KID, reserve=16)
first = [c.next() for _ in range(20)]
writes = c.reservations
unmount()
mount(dev.survivor())
c2 = MessageCounter("/c/ctr", KID, reserve=16)
report(first=first, writes=writes, resumed=c2.resumed_at, next=c2.next())
unmount()
""")
    assert out["first"] == list(range(20))
    assert out["writes"] == 3  # the key bound at 0, then blocks [0, 16) and [16, 32)
    assert out["resumed"] == 32
    assert out["next"] == 32


def test_damaged_records(mp) -> None:
    out = mp.json(PRELUDE + """
import struct

def case(a, b, marker=None):
    dev = formatted(fresh=False)
    mount(dev)
    for path, data in (("/c/ctr.a", a), ("/c/ctr.b", b)):
        if data is not None:
            with open(path, "wb") as f:
                f.write(data)
    if marker is not None:
        deploy_marker(marker)
    try:
        c = MessageCounter("/c/ctr", KID, reserve=4)
        res = c.next()
        # The write after loading must not overwrite the only valid record; the marker is gone after one use.
        c2 = MessageCounter("/c/ctr", KID, reserve=4)
        res = [res, c2.value]
    except KeyNotFresh as e:
        res = "not fresh"
    except CounterLost as e:
        res = "lost"
    unmount()
    return res

bad = record(KID, 500)[:-1] + b"\\x00"
old = b"older key"
legacy = struct.pack(">4sII", b"OXC1", 300, 300 ^ 0xFFFFFFFF)  # before counters were bound to a key
report(
    erased=case(None, None),
    erased_deployed=case(None, None, KID),
    torn_first=case(b"OXC", None, KID),
    a_only=case(record(KID, 100), None),
    newer_b=case(record(KID, 100), record(KID, 164)),
    newer_a=case(record(KID, 228), record(KID, 164)),
    a_bad_b_good=case(bad, record(KID, 164)),
    a_good_b_bad=case(record(KID, 100), bad),
    both_bad=case(bad, b""),
    both_bad_deployed=case(bad, b"", KID),
    other_key=case(record(old, 900), record(old, 964)),
    other_key_redeployed=case(record(old, 900), record(old, 964), KID),
    marker_for_another_key=case(None, None, old),
    marker_beside_own_records=case(record(KID, 100), None, KID),
    legacy=case(legacy, None),
    legacy_redeployed=case(legacy, None, KID),
)
""")
    assert out["erased"] == "not fresh"  # the same key copied again after an erase: refused
    assert out["erased_deployed"] == [0, 4]
    assert out["torn_first"] == [0, 4]
    assert out["a_only"] == [100, 104]
    assert out["newer_b"] == [164, 168]
    assert out["newer_a"] == [228, 232]
    assert out["a_bad_b_good"] == [164, 168]
    assert out["a_good_b_bad"] == [100, 104]
    assert out["both_bad"] == "not fresh"
    assert out["both_bad_deployed"] == [0, 4]
    assert out["other_key"] == "not fresh"  # a key this flash never counted for, deployed without its marker
    assert out["other_key_redeployed"] == [0, 4]  # a redeploy without erase: the new key starts at 0
    assert out["marker_for_another_key"] == "not fresh"
    assert out["marker_beside_own_records"] == [100, 104]  # a stale marker never restarts a counted key
    assert out["legacy"] == "not fresh" and out["legacy_redeployed"] == [0, 4]


def test_a_key_is_fresh_once(mp) -> None:
    """The marker is consumed when the key is bound: a second board start from an erased flash with the same
    secrets and without a new marker is refused; the counter state survives as long as the flash does."""
    out = mp.json(PRELUDE + """
dev = formatted()
mount(dev)
c = MessageCounter("/c/ctr", KID, reserve=4)
got = [c.next() for _ in range(6)]
import os
marker_left = "ctr.fresh" in os.listdir("/c")
unmount()
mount(dev.survivor())
again = MessageCounter("/c/ctr", KID, reserve=4).next()
unmount()
# the same secrets on an erased flash (or a second board), without a new deploy
dev2 = formatted(fresh=False)
mount(dev2)
try:
    MessageCounter("/c/ctr", KID)
    refused = ""
except KeyNotFresh as e:
    refused = str(e)
unmount()
report(got=got, marker_left=marker_left, again=again, refused=refused)
""")
    assert out["got"] == list(range(6)) and not out["marker_left"]
    assert out["again"] == 8
    assert "a1b2c3d4e5f60718" in out["refused"] and "may already have been used from counter 0" in out["refused"]


def test_failed_reservation_hands_out_nothing(mp) -> None:
    """A full filesystem makes next() raise; once writable again the sequence continues without repeats."""
    out = mp.json(PRELUDE + """
dev = formatted()
mount(dev)
c = MessageCounter("/c/ctr", KID, reserve=2)
got = [c.next(), c.next()]
dev.enospc = True
errors = 0
for _ in range(3):
    try:
        got.append(c.next())
    except OSError:
        errors += 1
dev.enospc = False
got += [c.next(), c.next(), c.next()]
unmount()
report(got=got, errors=errors)
""")
    assert out["errors"] == 3
    assert out["got"] == [0, 1, 2, 3, 4]


def test_exhaustion_is_an_error(mp) -> None:
    out = mp.json(PRELUDE + """
import struct
from msgcounter import CounterExhausted, MAX_COUNTER
dev = formatted()
mount(dev)
with open("/c/ctr.a", "wb") as f:
    f.write(record(KID, MAX_COUNTER - 2))
c = MessageCounter("/c/ctr", KID, reserve=64)
got = [c.next(), c.next()]
try:
    c.next()
    exhausted = False
except CounterExhausted:
    exhausted = True
unmount()
report(got=got, exhausted=exhausted, max=MAX_COUNTER)
""")
    assert out["got"] == [out["max"] - 2, out["max"] - 1]
    assert out["exhausted"]
