# Flash-queue benchmark on the unix port (driven by `python -m oxilink.bench_queue`; prints one JSON line).
# argv: number of random scenarios to sweep.
import sys
import time
import json
import vfs
import queue_scenarios as qs
from flashqueue import FlashQueue

M = "/b"
P = M + "/q"


def ms_since(t0):
    return time.ticks_diff(time.ticks_us(), t0) / 1000


def sweep(n_random):
    tally = qs.new_tally()
    qs.sweep(qs.realistic_ops(), tally)
    for seed in range(n_random):
        qs.sweep(qs.random_ops(1000 + seed, 80), tally)
    return tally


def throughput():
    qs.mount_new(M, blocks=256)
    q = FlashQueue(P, 262144)
    rec = bytes(128)
    n = 1000
    t0 = time.ticks_us()
    for _ in range(n):
        q.put(rec)
    put_s = ms_since(t0) / 1000
    batch = [bytes(64)] * 30
    t0 = time.ticks_us()
    for _ in range(100):
        q.put_many(batch)
    many_s = ms_since(t0) / 1000
    acks = 0
    t0 = time.ticks_us()
    while True:
        b = q.peek_batch(30, 4096)
        if not b:
            break
        q.ack(b)
        acks += 1
    ack_s = ms_since(t0) / 1000
    q.close()
    vfs.umount(M)
    return {"put_per_s": round(n / put_s), "put_many_records_per_s": round(3000 / many_s),
            "ack_per_s": round(acks / ack_s), "ack_records_per_s": round((n + 3000) / ack_s)}


def amplification(single, record_size, per_batch, rounds, ack=True):
    dev = qs.mount_new(M, blocks=128)
    q = FlashQueue(P, 262144)
    batch = [bytes(record_size)] * per_batch
    for _ in range(10):  # steady state: segments and metadata already exist
        q.put(batch[0]) if single else q.put_many(batch)
    q.ack(q.peek_batch(1000, 1 << 20))
    start = dev.bytes_programmed
    put_bytes = 0
    for i in range(rounds):
        if single:
            q.put(batch[0])
        else:
            q.put_many(batch)
        if ack and i % 2:
            put_bytes = dev.bytes_programmed - start
            q.ack(q.peek_batch(1000, 1 << 20))
    total = dev.bytes_programmed - start
    q.close()
    vfs.umount(M)
    payload = rounds * (1 if single else per_batch) * record_size
    return round(total / payload, 3), round(put_bytes / payload, 3)


def recovery_full():
    dev = qs.mount_new(M, blocks=256)
    q = FlashQueue(P, 262144)
    for _ in range(200):  # > 256 KB of batches: the queue is full and has dropped its oldest
        q.put_many([bytes(64)] * 30)
    st = q.stats()
    q.close()
    vfs.umount(M)
    times = []
    for _ in range(5):
        d = qs.QuietRamDev(block_count=256, data=dev.data)
        t0 = time.ticks_us()
        vfs.mount(vfs.VfsLfs2(d), M)
        q = FlashQueue(P, 262144)
        times.append(ms_since(t0))
        depth = q.depth()
        q.close()
        vfs.umount(M)
    times.sort()
    return {"recovery_ms_full": round(times[len(times) // 2], 2), "recovery_ms_max": round(times[-1], 2),
            "recovery_queue_bytes": st["bytes"], "recovery_queue_depth": depth, "recovery_segments": st["segments"]}


def main():
    n_random = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    t0 = time.ticks_us()
    tally = sweep(n_random)
    out = {"sweep_s": round(ms_since(t0) / 1000, 1), "scenarios": 1 + n_random}
    out["failures"] = tally.pop("failures")
    info = ("cut_points", "lost_records", "corrupt_returned", "ack_repeats", "ack_cuts_old_head",
            "ack_cuts_new_head", "scenario_dropped")
    out["other_violations"] = sum(v for k, v in tally.items() if k not in info)  # order, partial batches...
    out.update(tally)
    out.update(throughput())
    out["write_amplification"], out["write_amplification_put_only"] = amplification(False, 64, 30, 200)
    out["write_amplification_single_128_online"], _ = amplification(True, 128, 1, 600)
    out["write_amplification_single_128_backlog"], _ = amplification(True, 128, 1, 600, ack=False)
    out["write_amplification_batch30_backlog"], _ = amplification(False, 64, 30, 60, ack=False)
    out.update(recovery_full())
    print(json.dumps(out))


main()
