# Power-cut scenarios for the flash queue, run on the unix port (tests and `make bench-queue`).
#
# A scenario is a list of operations. sweep() runs it once uncut to count the block-device writes W, then
# once per cut point c in 0..W-1: the c-th write is the last that lands (possibly torn), a fresh LittleFS is
# mounted over the surviving bytes, the queue is re-opened, drained and checked against a model of what was
# durably put and acknowledged. Everything runs in one MicroPython process.

import micropython
import random
import struct
import vfs
from sim.ramblock import RamBlockDev, PowerCut
from flashqueue import FlashQueue

BLOCKS = 32
CAPACITY = 16384
CUT_MOUNT = "/cut"
REC_MOUNT = "/rec"


class ModelError(Exception):
    pass


@micropython.viper
def _copy(dst: ptr8, dst_at: int, src: ptr8, src_at: int, n: int):
    for i in range(n):
        dst[dst_at + i] = src[src_at + i]


@micropython.viper
def _fill(dst: ptr8, at: int, n: int, value: int):
    for i in range(n):
        dst[at + i] = value


class QuietRamDev(RamBlockDev):
    """RamBlockDev whose reads and erases allocate nothing (like the ESP32's flash driver, so heap_lock tests
    measure the queue, not the simulator) and which is detached after a cut: from then on it is a working
    device over the abandoned bytes, so the abandoned filesystem's file finalisers (run by the GC with the
    heap locked) complete quietly instead of raising from inside LittleFS. The survivor is copied first."""

    detached = False

    def readblocks(self, block, buf, offset=0):
        _copy(buf, 0, self.data, block * self.block_size + offset, len(buf))

    def _erase(self, block):
        _fill(self.data, block * self.block_size, self.block_size, 0xFF)
        self.erases += 1

    def writeblocks(self, block, buf, offset=None):
        if self.detached:
            if offset is None:
                _fill(self.data, block * self.block_size, len(buf), 0xFF)
                offset = 0
            _copy(self.data, block * self.block_size + offset, buf, 0, len(buf))
            return
        RamBlockDev.writeblocks(self, block, buf, offset)

    def ioctl(self, op, arg):
        if self.detached and op == 6:
            self._erase(arg)
            return 0
        return RamBlockDev.ioctl(self, op, arg)


def formatted_image(blocks=BLOCKS):
    dev = RamBlockDev(block_count=blocks)
    vfs.VfsLfs2.mkfs(dev)
    return bytes(dev.data)


def payload(r, size):
    """Record number r: its number, then a pattern that depends on r (checkable after a remount)."""
    b = bytearray(size)
    for j in range(4, size):
        b[j] = (r * 131 + j * 7) & 0xFF
    struct.pack_into("<I", b, 0, r)
    return bytes(b)


# ---- scenarios ---------------------------------------------------------------------------------------

def realistic_ops():
    """Puts, peeks, acks, put_many, a clean reboot, a full queue with drops, draining to empty and refill."""
    ops = [("put", 120), ("put", 200), ("put", 90), ("peek", 2, 4096), ("ack",)]
    ops += [("many", 30, 64), ("peek", 10, 4096), ("ack",), ("many", 30, 64), ("put", 150)]
    ops += [("peek", 30, 1000), ("put", 60), ("ack",), ("reopen",), ("peek", 40, 4096), ("ack",)]
    ops += [("many", 20, 180)] * 4  # beyond capacity: the oldest segments are dropped
    ops += [("peek", 15, 4096), ("many", 12, 100), ("ack",), ("peek", 40, 8192), ("ack",)]
    ops += [("peek", 40, 8192), ("ack",), ("peek", 40, 8192), ("ack",), ("peek", 40, 8192), ("ack",)]
    ops += [("put", 100), ("put", 250), ("peek", 5, 4096), ("ack",), ("reopen",), ("many", 5, 300)]
    return ops


def random_ops(seed, n_ops):
    rng = random.Random(seed) if hasattr(random, "Random") else None
    if rng is None:
        random.seed(seed)
        rng = random
    ops = []
    for _ in range(n_ops):
        k = rng.getrandbits(5)
        if k < 9:
            ops.append(("put", 4 + rng.getrandbits(8)))
        elif k < 15:
            size = 8 + rng.getrandbits(7)
            count = 1 + rng.getrandbits(5)
            ops.append(("many", max(1, min(count, 4000 // (16 + size))), size))
        elif k < 22:
            ops.append(("peek", 1 + rng.getrandbits(5), 64 + rng.getrandbits(12)))
        elif k < 30:
            ops.append(("ack",))
        else:
            ops.append(("reopen",))
    return ops


def payload_table(ops):
    """Every payload a scenario will put, generated once and reused by every cut point."""
    table = []
    for op in ops:
        if op[0] == "put":
            table.append(payload(len(table), op[1]))
        elif op[0] == "many":
            for _ in range(op[1]):
                table.append(payload(len(table), op[2]))
    return table


# ---- model -------------------------------------------------------------------------------------------

class Model:
    def __init__(self, payloads):
        self.payloads = payloads
        self.record_of = {}  # seq -> record number, for every record put (or being put)
        self.pending = []  # seqs durably put, not acknowledged, not dropped, in order
        self.acked = set()
        self.dropped = 0
        self.next_seq = 0
        self.max_seq = -1
        self.next_record = 0
        self.batch = None
        self.inflight = None  # ("put", seqs) | ("ack", end_seq) | ("reopen",)

    def start(self, q):
        st = q.stats()
        self.next_seq = st["next_seq"]
        self.dropped = st["dropped"]

    def put_done(self, q, first, records):
        if first != self.next_seq or first <= self.max_seq:
            raise ModelError("put returned seq %d, expected %d" % (first, self.next_seq))
        for i in range(len(records)):
            self.pending.append(first + i)
        self.next_seq = first + len(records)
        self.max_seq = self.next_seq - 1
        dropped = q.stats()["dropped"]
        k = dropped - self.dropped
        if k < 0 or k > len(self.pending):
            raise ModelError("dropped count went from %d to %d" % (self.dropped, dropped))
        del self.pending[:k]  # the oldest records go first
        self.dropped = dropped

    def check_batch(self, batch, max_records, max_bytes):
        want = self.pending[:len(batch.seqs)]
        if batch.seqs != want or (self.pending and not batch.seqs):
            raise ModelError("peek returned %r, model expects %r" % (batch.seqs[:8], self.pending[:8]))
        if len(batch) > max_records or (len(batch) > 1 and sum(len(r) for r in batch.records) > max_bytes):
            raise ModelError("peek exceeded its limits")
        for s, rec in zip(batch.seqs, batch.records):
            if rec != self.payloads[self.record_of[s]]:
                raise ModelError("peek returned wrong bytes for seq %d" % s)
        if batch.corrupt:
            raise ModelError("corrupt records found without any corruption")

    def ack_done(self, end_seq):
        while self.pending and self.pending[0] < end_seq:
            self.acked.add(self.pending.pop(0))


def run_ops(make_queue, ops, model):
    q = make_queue()
    model.start(q)
    for op in ops:
        kind = op[0]
        if kind in ("put", "many"):
            n = 1 if kind == "put" else op[1]
            records = model.payloads[model.next_record:model.next_record + n]
            seqs = list(range(model.next_seq, model.next_seq + n))
            for i in range(n):
                model.record_of[seqs[i]] = model.next_record + i
            model.inflight = ("put", seqs)
            first = q.put(records[0]) if kind == "put" else q.put_many(records)
            model.next_record += n
            model.put_done(q, first, records)
        elif kind == "peek":
            model.batch = q.peek_batch(op[1], op[2])
            model.check_batch(model.batch, op[1], op[2])
        elif kind == "ack":
            if model.batch is None:
                continue
            model.inflight = ("ack", model.batch.end_seq)
            q.ack(model.batch)
            model.ack_done(model.batch.end_seq)
            model.batch = None
        elif kind == "reopen":
            model.inflight = ("reopen",)
            q.close()
            q = make_queue()
            model.batch = None
        model.inflight = None
    return q


# ---- recovery check ----------------------------------------------------------------------------------

def drain(q, max_records=25, max_bytes=3000):
    out = []
    while True:
        b = q.peek_batch(max_records, max_bytes)
        if not b:
            return out
        for s, r in zip(b.seqs, b.records):
            out.append((s, r))
        q.ack(b)


def check_recovery(model, q, tally, cut):
    """Drain the re-opened queue and compare with the model; add violations to tally."""
    st = q.stats()
    got = drain(q)
    seqs = [s for s, _ in got]
    bad = {}
    for s, rec in got:
        r = model.record_of.get(s)
        if r is None or model.payloads[r] != rec:
            bad["corrupt_returned"] = bad.get("corrupt_returned", 0) + 1
    for i in range(1, len(seqs)):
        if seqs[i] <= seqs[i - 1]:
            bad["order_errors"] = bad.get("order_errors", 0) + 1
    inflight = model.inflight or ("none",)
    put_seqs = inflight[1] if inflight[0] == "put" else []
    got_set = set(seqs)
    if inflight[0] == "ack" and model.pending:
        key = "ack_cuts_old_head" if model.pending[0] in got_set else "ack_cuts_new_head"
        tally[key] = tally.get(key, 0) + 1
    arrived = [s for s in put_seqs if s in got_set]
    if arrived and len(arrived) != len(put_seqs):
        bad["partial_batches"] = 1
    main = [s for s in seqs if s not in put_seqs]
    expected = model.pending
    start = expected.index(main[0]) if main and main[0] in expected else len(expected)
    if main and main[0] not in expected:
        start = 0
    lost = sum(1 for s in expected[start:] if s not in got_set)
    if inflight[0] == "ack":
        ack_end = inflight[1]
        legit = start == 0 or all(s < ack_end for s in expected[:start])
    elif inflight[0] == "put":
        legit = st["dropped"] == model.dropped + start  # the put may have dropped the oldest first
    else:
        legit = start == 0
    if not legit:
        lost += start
    if lost:
        bad["lost_records"] = lost
    again = sum(1 for s in main if s in model.acked)  # their ack() returned: never again
    if again:
        bad["redelivered_acked"] = again
    if inflight[0] == "ack" and start == 0:  # the cut ack's own batch comes again: allowed
        repeats = sum(1 for s in expected if s < inflight[1] and s in got_set)
        tally["ack_repeats"] = tally.get("ack_repeats", 0) + repeats
    if st["depth"] != len(seqs):
        bad["depth_errors"] = 1
    if st["corrupt_skipped"]:
        bad["corrupt_skipped"] = st["corrupt_skipped"]
    if inflight[0] != "put" and st["dropped"] != model.dropped:
        bad["dropped_count_errors"] = 1
    # sequence numbers keep growing across the reboot
    top = max([model.max_seq] + seqs)
    after = q.put(b"after-recovery")
    if after <= top:
        bad["seq_errors"] = 1
    for k, v in bad.items():
        tally[k] = tally.get(k, 0) + v
        if len(tally["failures"]) < 5:
            tally["failures"].append("cut %d (%r): %s=%d" % (cut, inflight, k, v))
    return after


def new_tally():
    return {"cut_points": 0, "lost_records": 0, "corrupt_returned": 0, "failures": []}


def sweep(ops, tally, cuts=None, torn=True, blocks=BLOCKS, capacity=CAPACITY, queue_class=FlashQueue):
    """Cut the scenario at every write (or at the given cut points); returns the uncut write count."""
    image = formatted_image(blocks)
    payloads = payload_table(ops)

    def make_queue():
        return queue_class(CUT_MOUNT + "/q", capacity)

    dev = QuietRamDev(block_count=blocks, data=image)
    vfs.mount(vfs.VfsLfs2(dev), CUT_MOUNT)
    model = Model(payloads)
    q = run_ops(make_queue, ops, model)
    q.close()
    tally["scenario_dropped"] = tally.get("scenario_dropped", 0) + model.dropped
    vfs.umount(CUT_MOUNT)
    total = dev.writes
    snapshot = bytearray(len(image))
    for cut in cuts if cuts is not None else range(total):
        dev = QuietRamDev(block_count=blocks, data=image)
        dev.cut_after = cut
        dev.torn_bytes = (cut * 97) % 300 if torn and cut % 3 else 0
        vfs.mount(vfs.VfsLfs2(dev), CUT_MOUNT)
        model = Model(payloads)
        try:
            run_ops(make_queue, ops, model).close()
        except PowerCut:
            pass
        # Copy the surviving bytes without allocating (no GC can run the abandoned files' finalisers in
        # between), then detach, then build the survivor (which allocates).
        _copy(snapshot, 0, dev.data, 0, len(snapshot))
        dev.detached = True
        survivor = QuietRamDev(block_count=blocks, data=snapshot)
        vfs.umount(CUT_MOUNT)
        if not dev.dead:
            model.inflight = None  # the scenario finished before this cut point
        vfs.mount(vfs.VfsLfs2(survivor), REC_MOUNT)
        q = FlashQueue(REC_MOUNT + "/q", capacity)
        after = check_recovery(model, q, tally, cut)
        q.close()
        q = FlashQueue(REC_MOUNT + "/q", capacity)  # a second reboot: only the new record is left
        b = q.peek_batch(10, 4096)
        if b.seqs != [after] or q.depth() != 1:
            tally["reboot_errors"] = tally.get("reboot_errors", 0) + 1
        q.close()
        vfs.umount(REC_MOUNT)
        tally["cut_points"] += 1
    return total


# ---- helpers for the unit tests and the benchmark ----------------------------------------------------

def mount_new(mount, blocks=BLOCKS):
    dev = QuietRamDev(block_count=blocks)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), mount)
    return dev


def reboot(dev, mount):
    """Unmount and mount a fresh LittleFS object over the same bytes (close the queue first)."""
    vfs.umount(mount)
    dev = QuietRamDev(dev.block_size, dev.block_count, dev.data)
    vfs.mount(vfs.VfsLfs2(dev), mount)
    return dev
