"""Benchmark: a 30-second batch of 1 Hz readings, sealed on the MicroPython unix port, against the same
readings as JSON lines. Run as `python -m oxilink.bench_seal`; writes build/bench/seal.json.

seal_us_per_batch is the median time to encode the buffered readings as CBOR, take a message counter
(including its amortised flash reservation on a RAM LittleFS) and seal the COSE_Encrypt0. The sealed
message is opened again with `cryptography` to prove the benchmark measured a valid one.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from . import mprun, paths, sealed

SCRIPT = Path(__file__).parent / "mp" / "bench_seal_mp.py"
SECONDS = 30
START = 1767225600  # 2026-01-01T00:00:00Z
DEVICE_ID = "dev-3f9a2c"
FW = "0.1.0"
CFG = 1
TARGET_SIZE_RATIO = 0.25
TARGET_SEAL_US = 1000


def readings(seed: int = 30) -> list[tuple[int | None, int | None, int | None, int]]:
    """A plausible half-minute: HR drifting around 72 bpm, SpO2 around 97.5 %, PI around 2.5 %, and two
    seconds of motion where HR and SpO2 are not valid."""
    rng = random.Random(seed)
    hr, spo2, pi = 720, 975, 250
    out: list[tuple[int | None, int | None, int | None, int]] = []
    for i in range(SECONDS):
        hr = min(max(hr + rng.randint(-6, 6), 550), 950)
        spo2 = min(max(spo2 + rng.randint(-2, 2), 950), 995)
        pi = min(max(pi + rng.randint(-4, 4), 150), 400)
        if i in (17, 18):
            out.append((None, None, pi, 4))
        else:
            out.append((hr, spo2, pi, 0))
    return out


def json_lines(rows: list[tuple[int | None, int | None, int | None, int]]) -> bytes:
    """The baseline: one compact JSON object per second with keys t, hr, spo2, pi, q."""
    def scaled(v: int | None, s: int) -> float | None:
        return None if v is None else v / s

    return b"".join(
        json.dumps({"t": START + i, "hr": scaled(h, 10), "spo2": scaled(s, 10), "pi": scaled(p, 100), "q": q},
                   separators=(",", ":")).encode() + b"\n"
        for i, (h, s, p, q) in enumerate(rows))


def run(iterations: int, keys: tuple[bytes, bytes, bytes] | None = None) -> dict:
    """keys: (key, base_iv, kid) to seal under; random by default. The report carries the sealed message."""
    key, base_iv, kid = keys or (os.urandom(16), os.urandom(13), os.urandom(8))
    rows = readings()
    config = {"secrets": {"device_id": DEVICE_ID, "kid": kid.hex(), "key": key.hex(), "base_iv": base_iv.hex()},
              "readings": rows, "iterations": iterations, "start": START, "fw": FW, "cfg": CFG}
    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "bench_seal.json"
        cfg_path.write_text(json.dumps(config))
        proc = mprun.run(SCRIPT, [str(cfg_path)], timeout=600, cwd=tmp)
    if proc.returncode != 0:
        raise RuntimeError(f"MicroPython benchmark failed:\n{proc.stderr}{proc.stdout}")
    mp = json.loads(proc.stdout.strip().splitlines()[-1])

    message = bytes.fromhex(mp["message_hex"])
    topic = f"oxilink/{DEVICE_ID}/vitals"
    opened = sealed.open_encrypt0(message, topic, lambda k: [(key, base_iv)] if k == kid else [])
    batch = sealed.decode_batch(opened.payload)
    expected = sealed.decode_batch(sealed.encode_batch(DEVICE_ID, START, 1000, FW, CFG, rows))
    if batch != expected:
        raise RuntimeError("the benchmarked message does not decode to the benchmarked readings")

    baseline = json_lines(rows)
    result = {
        "readings": SECONDS,
        "seal_us_per_batch": mp["encode_seal_us_median"],
        "bytes_per_reading": round(len(message) / SECONDS, 2),
        "json_bytes_per_reading": round(len(baseline) / SECONDS, 2),
        "sealed_bytes": len(message),
        "payload_bytes": len(bytes.fromhex(mp["payload_hex"])),
        "json_bytes": len(baseline),
        "size_ratio": round(len(message) / len(baseline), 4),
        "target_size_ratio": TARGET_SIZE_RATIO,
        "target_seal_us": TARGET_SEAL_US,
        "encode_us_median": mp["encode_us_median"],
        "seal_with_counter_us_median": mp["seal_with_counter_us_median"],
        "cose_seal_us_median": mp["cose_seal_us_median"],
        "add_30_readings_us_median": mp["add_30_readings_us_median"],
        "seal_us_mean": round(mp["encode_seal_us_mean"], 1),
        "iterations": mp["iterations"],
        "counter_reservations": mp["counter_reservations"],
        "platform": "micropython unix port",
        "message_hex": message.hex(),  # the last sealed batch, as measured
    }
    result["meets_size_target"] = result["size_ratio"] <= TARGET_SIZE_RATIO
    result["meets_time_target"] = result["seal_us_per_batch"] <= TARGET_SEAL_US
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oxilink.bench_seal", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--out", type=Path, default=paths.BENCH / "seal.json")
    args = parser.parse_args(argv)
    result = run(args.iterations)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for k in ("seal_us_per_batch", "bytes_per_reading", "json_bytes_per_reading", "size_ratio",
              "encode_us_median", "cose_seal_us_median", "meets_size_target", "meets_time_target"):
        print(f"{k:24} {result[k]}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
