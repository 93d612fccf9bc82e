# MicroPython script (unix port): run the firmware's vitals pipeline over a recording.
# Usage: micropython analyze.py SAMPLES.i32 FS [--ir-only] [--board FILE] [--no-swap-detect]
# SAMPLES.i32 holds little-endian int32 pairs (red, ir) of raw counts. Prints one line per output second:
#   t,hr_x10,spo2_x10,pi_x100,quality,ratio,gate     (empty field = no value; gate = Vitals.gate bits)
# and a last line `#us_per_signal_second=<float>` timed with ticks_us around the pipeline only.
import sys
import time
from array import array

import vitals

_CHUNK = 4096  # sample pairs per read


def _fmt(v):
    return "" if v is None else str(v)


def main(argv):
    path = argv[1]
    fs = int(argv[2])
    cfg = None
    use_red = "--ir-only" not in argv
    if "--board" in argv:
        import boardconf

        cfg = boardconf.load(argv[argv.index("--board") + 1])["vitals"]
    v = vitals.Vitals(fs, cfg, swap_detect="--no-swap-detect" not in argv, use_red=use_red)
    reading = v.reading
    buf = array("i", bytearray(8 * _CHUNK))
    elapsed = 0
    samples = 0
    sec = 0
    ticks_us = time.ticks_us
    ticks_diff = time.ticks_diff
    with open(path, "rb") as f:
        while True:
            nbytes = f.readinto(buf)
            if not nbytes:
                break
            cnt = nbytes // 4
            samples += cnt // 2
            t0 = ticks_us()
            for j in range(0, cnt, 2):
                if v.push(buf[j], buf[j + 1]):
                    hr, spo2, pi, q = reading()
                    elapsed += ticks_diff(ticks_us(), t0)
                    sec += 1
                    r = v.last_ratio()
                    print(f"{sec},{_fmt(hr)},{_fmt(spo2)},{_fmt(pi)},{q},{_fmt(r)},{v.gate}")
                    t0 = ticks_us()
            elapsed += ticks_diff(ticks_us(), t0)
    seconds = samples / fs
    print(f"#us_per_signal_second={elapsed / seconds if seconds else 0.0}")


main(sys.argv)
