# Store-and-forward queue of sealed records on a LittleFS directory; survives power loss at any instant.
#
# Files in the queue directory (docs/queue.md has the full format and the recovery argument):
#   sXXXXXXXX  segment: records (queuerecord format) appended in sequence order; the name is the hex
#              sequence number of its first record. Only the newest segment (the tail) is ever appended to.
#   head       28 bytes rewritten by ack(): first unacknowledged sequence number, its position, and the
#              dropped/corrupt totals. LittleFS commits a file's new contents atomically on close.
#
# A put is durable when its flush (lfs_file_sync) returns: LittleFS publishes the new file size and data in
# one metadata commit, so a cut leaves either the old or the new segment, never a torn record.

import os
import struct
from array import array
from micropython import const
from queuerecord import RecordCodec, HEADER_SIZE, MAX_PAYLOAD, MAGIC

_EEXIST = const(17)
_ENOSPC = const(28)
_HEAD_MAGIC = const(0x5148)
_HEAD_VERSION = const(1)
_HEAD_BYTES = const(28)
_SCAN_CHUNK = const(256)


class Batch:
    """Records returned by peek_batch(); pass it back to ack() once every record is delivered."""

    def __init__(self, seqs, records, end_seq, end_segment, end_offset, corrupt):
        self.seqs = seqs
        self.records = records
        self.end_seq = end_seq  # first sequence number after this batch
        self.end_segment = end_segment  # first sequence number of the segment holding the end position
        self.end_offset = end_offset
        self.corrupt = corrupt  # corrupt records skipped inside this batch

    def __len__(self):
        return len(self.records)


class FlashQueue:
    def __init__(self, path, capacity_bytes, segment_bytes=4096):
        self.path = path.rstrip("/") or "/"
        self.capacity = capacity_bytes
        try:
            os.mkdir(self.path)
        except OSError as e:
            if e.errno != _EEXIST:
                raise
        # One erase block (statvfs would tell, but on LittleFS it walks every block of every file).
        self.segment_bytes = min(segment_bytes, capacity_bytes // 4)
        # The tail never exceeds max_batch_bytes, so dropping every older segment always makes room.
        self.max_batch_bytes = capacity_bytes // 4
        self._codec = RecordCodec()
        self._hdr = bytearray(HEADER_SIZE)
        self._head_buf = bytearray(_HEAD_BYTES)
        self._head_crc = memoryview(self._head_buf)[24:28]
        self._chunk = bytearray(_SCAN_CHUNK)
        slots = 2 * capacity_bytes // self.segment_bytes + 8
        self._seg_first = array("i", bytes(4 * slots))
        self._seg_size = array("i", bytes(4 * slots))
        self._nseg = 0
        self._tail = None  # append handle on the last segment, kept open between puts
        self._sealed = False  # last segment ends in garbage: next put starts a new segment
        self._used = 0
        self._head_seq = 0
        self._head_idx = 0  # segment index (into _seg_*) of the head position
        self._head_off = 0
        self._next_seq = 0
        self._dropped = 0
        self._corrupt_acked = 0
        self._corrupt_pending = 0
        self._recover()

    # ---- writing -------------------------------------------------------------------------------------

    def put(self, record):
        """Append one record durably; returns its sequence number, or -1 if the filesystem had no room."""
        n = len(record)
        if n > MAX_PAYLOAD or HEADER_SIZE + n > self.max_batch_bytes:
            raise ValueError("record of %d bytes is too large for the queue" % n)
        return self._append(record, None, HEADER_SIZE + n, 1)

    def put_many(self, records):
        """Append records as one durable step (all or none survive a cut); returns the first seq or -1."""
        total = 0
        count = len(records)
        for i in range(count):
            n = len(records[i])
            if n > MAX_PAYLOAD:
                raise ValueError("record of %d bytes is too large for the queue" % n)
            total += HEADER_SIZE + n
        if total > self.max_batch_bytes:
            raise ValueError("batch of %d bytes exceeds max_batch_bytes %d" % (total, self.max_batch_bytes))
        if not count:
            return self._next_seq
        return self._append(None, records, total, count)

    def _append(self, one, many, nbytes, count):
        first = self._next_seq
        while True:
            try:
                while self._used + nbytes > self.capacity and self._nseg > 1:
                    self._drop_oldest()
                f = self._tail_for(nbytes)
                if one is not None:
                    self._write_record(f, first, one)
                else:
                    for i in range(count):
                        self._write_record(f, first + i, many[i])
                f.flush()
                break
            except OSError as e:
                if e.errno != _ENOSPC:
                    raise
                self._close_tail()  # the handle holds the failed write; the committed file is unchanged
                if not self._drop_for_space():
                    self._dropped += count  # the filesystem is full of something else: lose the newest
                    return -1
        self._seg_size[self._nseg - 1] += nbytes
        self._used += nbytes
        self._next_seq = first + count
        return first

    def _write_record(self, f, seq, payload):
        f.write(self._codec.seal(seq, payload))
        f.write(payload)

    def _tail_for(self, nbytes):
        last = self._nseg - 1
        if last >= 0 and not self._sealed:
            size = self._seg_size[last]
            if size == 0 or size + nbytes <= self.segment_bytes:
                if self._tail is None:
                    self._tail = open(self._segment_path(self._seg_first[last]), "ab")
                return self._tail
        self._close_tail()
        f = open(self._segment_path(self._next_seq), "ab")
        self._sealed = False
        self._push_segment(self._next_seq, 0)
        self._tail = f
        return f

    def _drop_for_space(self):
        if self._nseg < 2:
            return False
        try:
            self._drop_oldest()
        except OSError as e:
            if e.errno != _ENOSPC:
                raise
            return False
        return True

    def _drop_oldest(self):
        """Delete the oldest segment (never the tail) and count its unacknowledged records as dropped."""
        os.remove(self._segment_path(self._seg_first[0]))
        if self._head_idx == 0:
            nxt = self._seg_first[1]
            if nxt > self._head_seq:
                self._dropped += nxt - self._head_seq
                self._head_seq = nxt
            self._head_off = 0
        else:
            self._head_idx -= 1
        self._pop_front()

    # ---- reading and acknowledging -------------------------------------------------------------------

    def peek_batch(self, max_records=30, max_bytes=4096):
        """The oldest unacknowledged records, at most max_records and max_bytes of payload (at least one)."""
        while True:
            batch = self._scan(max_records, max_bytes)
            self._corrupt_pending = batch.corrupt
            if batch.records or batch.end_seq == self._head_seq:
                return batch
            self.ack(batch)  # only corrupt records in front: step over them durably

    def ack(self, batch):
        """Remove batch's records for good; a stale batch (already acknowledged or dropped) is ignored."""
        if batch.end_seq <= self._head_seq:
            return
        idx = self._segment_index(batch.end_segment)
        if idx < 0:
            return
        off = batch.end_offset
        if off >= self._seg_size[idx] and idx < self._nseg - 1:
            idx += 1
            off = 0
        corrupt = self._corrupt_acked + batch.corrupt
        self._write_head(batch.end_seq, self._seg_first[idx], off, self._dropped, corrupt)
        self._corrupt_acked = corrupt
        self._corrupt_pending = 0
        self._head_seq = batch.end_seq
        self._head_idx = idx
        self._head_off = off
        self._discard_acked()

    def _discard_acked(self):
        while self._head_idx > 0:
            os.remove(self._segment_path(self._seg_first[0]))
            self._pop_front()
            self._head_idx -= 1
        if self._nseg == 1 and self._head_seq >= self._next_seq and self._head_off >= self._seg_size[0]:
            self._close_tail()  # everything acknowledged: the next put starts a fresh segment
            os.remove(self._segment_path(self._seg_first[0]))
            self._pop_front()
            self._head_off = 0
            self._sealed = False

    def _scan(self, max_records, max_bytes):
        codec = self._codec
        hdr = self._hdr
        seqs = []
        records = []
        idx = self._head_idx
        off = self._head_off
        expect = self._head_seq
        corrupt = 0
        nbytes = 0
        f = None
        try:
            while idx < self._nseg and len(records) < max_records:
                size = self._seg_size[idx]
                if off >= size:
                    if f is not None:
                        f.close()
                        f = None
                    idx += 1
                    off = 0
                    if idx < self._nseg and self._seg_first[idx] > expect:
                        corrupt += self._seg_first[idx] - expect  # lost from the end of the last segment
                        expect = self._seg_first[idx]
                    continue
                if f is None:
                    f = open(self._segment_path(self._seg_first[idx]), "rb")
                n = self._read_header(f, off, size)
                if n < 0:
                    off = self._resync(f, off + 1, size, expect)
                    continue
                seq = codec.seq_of(hdr)
                if seq < expect:  # stale copy of a record already passed: never deliver out of order
                    off += HEADER_SIZE + n
                    continue
                if seq > expect:
                    corrupt += seq - expect
                    expect = seq
                if records and nbytes + n > max_bytes:
                    break
                payload = f.read(n)
                off += HEADER_SIZE + n
                expect = seq + 1
                if len(payload) != n or not codec.check_payload(hdr, payload):
                    corrupt += 1
                    continue
                seqs.append(seq)
                records.append(payload)
                nbytes += n
        finally:
            if f is not None:
                f.close()
        if idx >= self._nseg:
            if self._next_seq > expect:
                corrupt += self._next_seq - expect  # unreadable records at the very end
                expect = self._next_seq
            idx = self._nseg - 1
            off = self._seg_size[idx] if idx >= 0 else 0
        end_segment = self._seg_first[idx] if idx >= 0 else expect
        return Batch(seqs, records, expect, end_segment, off, corrupt)

    def _read_header(self, f, off, size):
        """Payload length of the intact record at off that fits in the segment, else -1."""
        if off + HEADER_SIZE > size:
            return -1
        f.seek(off)
        if f.readinto(self._hdr) != HEADER_SIZE:
            return -1
        n = self._codec.check_header(self._hdr)
        if n < 0 or off + HEADER_SIZE + n > size:
            return -1
        return n

    def _resync(self, f, start, size, min_seq):
        """Offset of the next intact record with seq >= min_seq at or after start, else size."""
        chunk = self._chunk
        pos = start
        while pos < size:
            f.seek(pos)
            got = f.readinto(chunk)
            if not got:
                break
            for i in range(got):
                if chunk[i] == MAGIC:
                    cand = pos + i
                    if self._read_header(f, cand, size) >= 0 and self._codec.seq_of(self._hdr) >= min_seq:
                        return cand
            pos += got
        return size

    # ---- state ---------------------------------------------------------------------------------------

    def depth(self):
        return self._next_seq - self._head_seq

    def stats(self):
        pending = -self._head_off
        for i in range(self._head_idx, self._nseg):
            pending += self._seg_size[i]
        return {
            "depth": self._next_seq - self._head_seq,
            "pending_bytes": pending,
            "bytes": self._used,
            "capacity": self.capacity,
            "segments": self._nseg,
            "dropped": self._dropped,
            "corrupt_skipped": self._corrupt_acked + self._corrupt_pending,
            "head_seq": self._head_seq,
            "next_seq": self._next_seq,
        }

    def close(self):
        self._close_tail()

    def _close_tail(self):
        f = self._tail
        self._tail = None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass  # a failed write left it dirty; its committed contents are what counts

    # ---- files ---------------------------------------------------------------------------------------

    def _segment_path(self, first):
        return "%s/s%08x" % (self.path, first)

    def _head_path(self):
        return self.path + "/head"

    def _write_head(self, seq, segment, off, dropped, corrupt):
        buf = self._head_buf
        struct.pack_into("<HHIIIII", buf, 0, _HEAD_MAGIC, _HEAD_VERSION, seq, segment, off, dropped, corrupt)
        self._codec.crc_into(buf, 24, self._head_crc)
        with open(self._head_path(), "wb") as f:
            f.write(buf)

    def _read_head(self):
        try:
            with open(self._head_path(), "rb") as f:
                n = f.readinto(self._head_buf)
        except OSError:
            return None
        buf = self._head_buf
        if n != _HEAD_BYTES or not self._codec.crc_matches(buf, 24, 24):
            return None
        fields = struct.unpack_from("<HHIIIII", buf)
        if fields[0] != _HEAD_MAGIC or fields[1] != _HEAD_VERSION:
            return None
        return fields[2:]

    def _push_segment(self, first, size):
        n = self._nseg
        if n == len(self._seg_first):  # only if a larger queue was left on flash by an older config
            self._seg_first.extend(array("i", bytes(4 * n)))
            self._seg_size.extend(array("i", bytes(4 * n)))
        self._seg_first[n] = first
        self._seg_size[n] = size
        self._nseg = n + 1

    def _pop_front(self):
        self._used -= self._seg_size[0]
        n = self._nseg - 1
        for i in range(n):
            self._seg_first[i] = self._seg_first[i + 1]
            self._seg_size[i] = self._seg_size[i + 1]
        self._nseg = n

    def _segment_index(self, first):
        for i in range(self._nseg):
            if self._seg_first[i] == first:
                return i
        return -1

    # ---- recovery ------------------------------------------------------------------------------------

    def _recover(self):
        found = []
        for entry in os.ilistdir(self.path):
            name = entry[0]
            if len(name) == 9 and name[0] == "s":
                try:
                    found.append((int(name[1:], 16), entry[3]))
                except ValueError:
                    pass  # not ours
        found.sort()
        for first, size in found:
            self._push_segment(first, size)
            self._used += size
        head = self._read_head()
        if head is None:
            head_seq = found[0][0] if found else 0
            hint_seg = hint_off = -1
            if not found:
                self._write_head(0, 0, 0, 0, 0)  # from now on every head update is an atomic rewrite
        else:
            head_seq, hint_seg, hint_off, self._dropped, self._corrupt_acked = head
        if found and found[0][0] > head_seq:
            self._dropped += found[0][0] - head_seq  # segments dropped after the last head write
            head_seq = found[0][0]
        self._next_seq = head_seq
        if found:
            self._recover_tail()
        self._head_seq = head_seq
        self._locate_head(hint_seg, hint_off)
        self._discard_acked()

    def _recover_tail(self):
        """Find the next sequence number by walking the headers of the last segment only."""
        last = self._nseg - 1
        first = self._seg_first[last]
        size = self._seg_size[last]
        top = first - 1
        end = 0
        off = 0
        with open(self._segment_path(first), "rb") as f:
            while off < size:
                n = self._read_header(f, off, size)
                if n >= 0 and self._codec.seq_of(self._hdr) > top:
                    top = self._codec.seq_of(self._hdr)
                    off += HEADER_SIZE + n
                    end = off
                else:
                    off = self._resync(f, off + 1, size, top + 1)
        if end != size:
            # Garbage at the end (corruption, never a power cut): never append after it, and never reuse a
            # sequence number it may hide: every hidden record started with a 16-byte header in it.
            self._sealed = True
            top += (size - end + HEADER_SIZE - 1) // HEADER_SIZE
        self._next_seq = max(self._next_seq, top + 1)

    def _locate_head(self, hint_seg, hint_off):
        idx = self._nseg - 1
        while idx > 0 and self._seg_first[idx] > self._head_seq:
            idx -= 1
        if idx < 0:
            self._head_idx = self._head_off = 0
            return
        self._head_idx = idx
        size = self._seg_size[idx]
        if hint_seg == self._seg_first[idx] and 0 <= hint_off <= size:
            if hint_off == size and self._head_seq >= self._next_seq:
                self._head_off = hint_off
                return
            with open(self._segment_path(hint_seg), "rb") as f:
                if self._read_header(f, hint_off, size) >= 0 and self._codec.seq_of(self._hdr) == self._head_seq:
                    self._head_off = hint_off
                    return
        off = 0
        with open(self._segment_path(self._seg_first[idx]), "rb") as f:
            while off < size:
                n = self._read_header(f, off, size)
                if n >= 0 and self._codec.seq_of(self._hdr) >= self._head_seq:
                    break
                off = off + HEADER_SIZE + n if n >= 0 else self._resync(f, off + 1, size, self._head_seq)
        self._head_off = off


def from_board(cfg):
    """The queue described by a validated board config (boardconf)."""
    q = cfg["queue"]
    return FlashQueue(q["path"], q["capacity_bytes"])
