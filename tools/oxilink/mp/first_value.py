# MicroPython script (unix port): seconds from finger placement to the first HR and the first SpO2, on the
# simulated chip (register level), through the real driver, the acquisition core and the vitals pipeline.
# Usage: micropython first_value.py HR_BPM SEED [SAMPLE_RATE]
# The finger is off (ambient light only) for 5 s, then placed; the readings are timed by the virtual clock at
# the drain that delivers them. Prints one line: `placed_to_hr_s,placed_to_spo2_s` (empty = none in 30 s).
import sys

from acquisition import Acquisition
from max30102 import Max30102
from sim.max30102_sim import Max30102Sim, SimI2C, SyntheticPPG
from sim.vclock import VirtualClock
from vitals import Vitals


def main(argv):
    hr_bpm = int(argv[1])
    seed = int(argv[2])
    rate = int(argv[3]) if len(argv) > 3 else 100
    clk = VirtualClock()
    src = SyntheticPPG(hr_bpm=hr_bpm, seed=seed)
    chip = Max30102Sim(clk, src)
    bus = SimI2C()
    bus.attach(0x57, chip)
    sensor = Max30102(bus, clock=clk)
    sensor.reset()
    sensor.configure(sample_rate=rate)
    # a different beat phase at placement for every seed
    for _ in range(seed * 37 % 100):
        src.read(chip._nominal)
    vitals = Vitals(sensor.output_rate)
    acq = Acquisition(sensor, clk, pin=chip.pin, consumer=vitals)
    chip.finger_on = False
    acq.start()
    t0 = clk.elapsed_us
    placed = None
    first_hr = first_spo2 = None
    while clk.elapsed_us - t0 < 35 * 1000000 and (first_hr is None or first_spo2 is None):
        if placed is None and clk.elapsed_us - t0 >= 5 * 1000000:
            chip.finger_on = True
            placed = clk.elapsed_us
        acq.wait_and_drain(1000)
        while vitals.pending():
            hr, spo2, _pi, _q = vitals.reading()
            if placed is None:
                continue
            dt = (clk.elapsed_us - placed) / 1e6
            if hr is not None and first_hr is None:
                first_hr = dt
            if spo2 is not None and first_spo2 is None:
                first_spo2 = dt
    print("%s,%s" % ("" if first_hr is None else first_hr, "" if first_spo2 is None else first_spo2))


main(sys.argv)
