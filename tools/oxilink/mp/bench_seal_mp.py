# MicroPython side of `python -m oxilink.bench_seal`: times turning one batch of readings into a sealed
# COSE_Encrypt0, the way the firmware main loop does it. argv: a JSON file with key material, readings and
# the iteration count. Prints one JSON line.
import binascii
import json
import sys
import time

import vfs
from batch import BatchBuilder
from cose import Encrypt0, Sealer
from devicekeys import from_dict
from msgcounter import MessageCounter
from sim.ramblock import RamBlockDev


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    keys = from_dict(cfg["secrets"], "bench")
    readings = cfg["readings"]
    iterations = cfg["iterations"]
    topic = keys.topic("vitals")

    dev = RamBlockDev(block_size=4096, block_count=32)
    vfs.VfsLfs2.mkfs(dev)
    vfs.mount(vfs.VfsLfs2(dev), "/bench")
    builder = BatchBuilder(len(readings), keys.device_id, cfg["fw"], cfg["cfg"])
    plaintext = bytearray(builder.max_encoded_size)
    with open("/bench/ctr.fresh", "w") as f:  # a freshly deployed key (docs/format.md, "Key material")
        f.write(binascii.hexlify(keys.kid).decode())
    sealer = Sealer(keys, MessageCounter("/bench/ctr", keys.kid, reserve=64), max_payload=len(plaintext))
    enc = Encrypt0(keys.key, keys.base_iv, keys.kid, max_payload=len(plaintext))

    add_us, encode_us, seal_us, total_us, cose_us = [], [], [], [], []
    msg = b""
    n = 0
    for i in range(iterations + 5):
        t0 = time.ticks_us()
        builder.clear(cfg["start"])
        for r in readings:
            builder.add(r[0], r[1], r[2], r[3])
        t1 = time.ticks_us()
        n = builder.encode_into(plaintext)
        t2 = time.ticks_us()
        sealed = sealer.seal(topic, memoryview(plaintext)[:n])
        t3 = time.ticks_us()
        enc.seal(i, topic, memoryview(plaintext)[:n])
        t4 = time.ticks_us()
        if i >= 5:  # warm-up rounds excluded
            add_us.append(time.ticks_diff(t1, t0))
            encode_us.append(time.ticks_diff(t2, t1))
            seal_us.append(time.ticks_diff(t3, t2))
            total_us.append(time.ticks_diff(t3, t1))
            cose_us.append(time.ticks_diff(t4, t3))
        msg = bytes(sealed)
    vfs.umount("/bench")
    print(json.dumps({
        "iterations": iterations,
        "encode_seal_us_median": median(total_us),
        "encode_seal_us_mean": sum(total_us) / len(total_us),
        "encode_us_median": median(encode_us),
        "seal_with_counter_us_median": median(seal_us),
        "cose_seal_us_median": median(cose_us),
        "add_30_readings_us_median": median(add_us),
        "counter_reservations": sealer.counter.reservations,
        "last_counter": sealer.last_counter,
        "payload_hex": binascii.hexlify(plaintext[:n]).decode(),
        "message_hex": binascii.hexlify(msg).decode(),
    }))


main()
