# Simulated MAX30102 on a fake I2C bus, for the unix port. Not deployed to boards.
#
# The chip works at the transaction level like the real one: register auto-increment (except at FIFO_DATA),
# INT_STATUS cleared by reading it, a 32-sample FIFO that pops 3 bytes per active LED, writable FIFO
# pointers, RESET restoring power-on values, PWR_RDY after a power cycle, die temperature. Samples arrive
# in real time at sample_rate / averaging, computed lazily from the clock at every transaction (and at
# every INT pin read), so a VirtualClock makes ten simulated minutes take seconds and the real clock makes
# it run in real time. With rollover disabled a full FIFO loses new samples and OVF_COUNTER counts them
# (saturating at 31, cleared when a sample is popped); with rollover enabled the oldest sample is
# overwritten (and counted as well). The INT pin (active low) follows A_FULL / PPG_RDY / PWR_RDY.
#
# Sources give one sample per call as counts at the nominal setting (LED 7 mA, ADC range 4096 nA); the chip
# scales them by the programmed LED current and ADC range, saturates at 0x3FFFF and drops the bits below
# the ADC resolution. The per-sample path (source, chip, bus) allocates nothing, so the firmware's
# heap_lock tests can run against it.
#
# Faults: bus.fault = NACK (OSError 19) or STUCK (OSError 116) on every transaction until set to None;
# chip.finger_on = False (ambient-only counts); chip.saturate = True (0x3FFFF); chip.power_cycle().
from array import array
import math

NACK = 19  # ENODEV, what the ESP32 port raises when the address is not acknowledged
STUCK = 116  # ETIMEDOUT, what it raises when SCL is held low

_FIFO_DATA = 0x07
_PART_ID = 0x15
_NOMINAL_PA = 35  # 7.0 mA
_NOMINAL_RANGE = 4096
_FULL = 0x3FFFF
_SAMPLE_RATES = (50, 100, 200, 400, 800, 1000, 1600, 3200)
_AVERAGING = (1, 2, 4, 8, 16, 32, 32, 32)
_TEMP_US = 29000
_SKIP_US = 10000000  # time jumps longer than this, FIFO full and no rollover: count lost samples in one step


class SimI2C:
    """The machine.I2C methods the driver uses, routed to devices attached by address."""

    def __init__(self):
        self.devices = {}
        self.fault = None
        self.transactions = 0

    def attach(self, address, device):
        self.devices[address] = device

    def _device(self, address):
        self.transactions += 1
        if self.fault is not None:
            raise OSError(self.fault)
        if address not in self.devices:
            raise OSError(NACK)
        return self.devices[address]

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        self._device(addr).read_into(memaddr, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        buf = bytearray(nbytes)
        self._device(addr).read_into(memaddr, buf)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._device(addr).write_from(memaddr, buf)

    def scan(self):
        if self.fault is not None:
            return []
        return sorted(self.devices)


class SimIntPin:
    """The chip's INT output as a machine.Pin input: value() and irq(handler=, trigger=). Active low."""

    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self, chip):
        self._chip = chip
        self._level = 1
        self._handler = None
        self._trigger = 0

    def value(self):
        self._chip.sync()
        return self._level

    def irq(self, handler=None, trigger=IRQ_FALLING):
        self._handler = handler
        self._trigger = trigger

    def _drive(self, level):
        if level == self._level:
            return
        self._level = level
        edge = self.IRQ_FALLING if level == 0 else self.IRQ_RISING
        if self._handler is not None and self._trigger & edge:
            self._handler(self)


class Max30102Sim:
    def __init__(self, clock, source=None, part_id=_PART_ID, rev_id=0x03, swapped_leds=False):
        self.clock = clock
        self.swapped_leds = swapped_leds  # a board whose LED1 pin drives the IR LED and LED2 the red one
        self.source = source if source is not None else SyntheticPPG()
        self.part_id = part_id
        self.rev_id = rev_id
        self.pin = SimIntPin(self)
        self.finger_on = True
        self.saturate = False
        self.ambient = 700  # counts with no finger: ambient light leaking past the cancellation
        self.die_temp_c16 = 30 * 16 + 9  # 30.5625 degC
        self.produced = 0  # samples converted since power-on, stored or lost
        self._regs = bytearray(256)
        self._fifo = bytearray(32 * 9)
        self._nominal = array("i", [0, 0, 0])
        self._slots = bytearray(4)  # LED number (1..3) per active time slot
        self._t = clock.ticks_us()
        self.power_cycle()

    # --- power and configuration -------------------------------------------------------------------------

    def power_cycle(self):
        """Supply dropped and came back: every register at its power-on value, PWR_RDY set."""
        self._defaults()
        self._status1 = 0x01

    def _defaults(self):
        regs = self._regs
        for i in range(256):
            regs[i] = 0
        regs[0xFE] = self.rev_id
        regs[0xFF] = self.part_id
        self._status1 = 0
        self._status2 = 0
        self._wr = self._rd = self._count = self._ovf = 0
        self._byte = 0
        self._temp_left = 0
        self._reconfigure()

    def _reconfigure(self):
        regs = self._regs
        mode = regs[0x09]
        spo2 = regs[0x0A]
        fifo = regs[0x08]
        self._sr = _SAMPLE_RATES[(spo2 >> 2) & 7]
        self._avg = _AVERAGING[fifo >> 5]
        self._range = 2048 << ((spo2 >> 5) & 3)
        # counts = nominal * LED current / nominal current * _NOMINAL_RANGE / range, as two small-int factors
        # (a product of the three would pass 2**30 and allocate on a 32-bit port)
        self._gain_mul = max(1, _NOMINAL_RANGE // self._range)
        self._gain_div = _NOMINAL_PA * max(1, self._range // _NOMINAL_RANGE)
        self._res_mask = _FULL & ~((1 << (3 - (spo2 & 3))) - 1)
        self._rollover = fifo & 0x10
        self._a_full = 32 - (fifo & 0x0F)
        m = mode & 7
        n = 0
        if m == 2:
            self._slots[0] = 1
            n = 1
        elif m == 3:
            self._slots[0] = 1
            self._slots[1] = 2
            n = 2
        elif m == 7:
            for i in range(4):
                led = (regs[0x11 + (i >> 1)] >> (4 * (i & 1))) & 7
                if led == 0:
                    break
                self._slots[i] = led
                n += 1
        self._nslots = n
        self._sampling = n > 0 and not mode & 0xC0
        self._phase = 0
        self.source.set_rate(self._sr // self._avg)

    # --- time ----------------------------------------------------------------------------------------------

    def sync(self):
        """Bring the chip up to the clock's time: convert every sample that is due, update the INT pin."""
        now = self.clock.ticks_us()
        d = self.clock.ticks_diff(now, self._t)
        self._t = now
        if d > 0:
            if self._temp_left > 0:
                self._temp_left -= d
                if self._temp_left <= 0:
                    self._finish_temperature()
            if self._sampling:
                unit = self._avg * 1000000
                while d > 0:  # in steps of at most 0.1 s, so phase stays a small int at 3200 Hz
                    if d > _SKIP_US and self._count >= 32 and not self._rollover:
                        self._lose(d, unit)
                        break
                    step = d if d < 100000 else 100000
                    d -= step
                    self._phase += step * self._sr
                    while self._phase >= unit:
                        self._phase -= unit
                        self._convert()
        self._update_pin()

    def _lose(self, d, unit):
        # The FIFO is full and does not roll over: every sample converted in the next d us is lost, so count
        # them without converting each (a clock jump of hours in a test). May allocate: schedule-sized gaps
        # never come here, so drains under heap_lock never do.
        total = self._phase + d * self._sr
        n = total // unit
        self._phase = total - n * unit
        self.produced += n
        if n:
            if hasattr(self, "overflowed"):  # a subclass that counts every lost sample (the board double's chip)
                self.overflowed += n
            self._ovf = min(31, self._ovf + n)
            self._status1 |= 0xC0  # PPG_RDY, A_FULL
            skip = getattr(self.source, "skip", None)
            if skip is not None:
                skip(n)

    def _update_pin(self):
        regs = self._regs
        active = (self._status1 & (regs[0x02] & 0xE0 | 0x01)) or (self._status2 & regs[0x03] & 0x02)
        self.pin._drive(0 if active else 1)

    def _convert(self):
        self.produced += 1
        nominal = self._nominal
        self.source.read(nominal)
        regs = self._regs
        slot_base = (self._wr * 9) if (self._count < 32 or self._rollover) else -1
        for i in range(self._nslots):
            led = self._slots[i]
            if self.saturate:
                v = _FULL
            elif not self.finger_on:
                v = self.ambient * _NOMINAL_RANGE // self._range
            elif led <= 3:
                channel = (2 - led) if (self.swapped_leds and led < 3) else (led - 1)
                v = nominal[channel] * regs[0x0B + led] * self._gain_mul // self._gain_div
            else:
                v = 0
            if v > _FULL:
                v = _FULL
            elif v < 0:
                v = 0
            v &= self._res_mask
            if slot_base >= 0:
                p = slot_base + 3 * i
                self._fifo[p] = v >> 16
                self._fifo[p + 1] = (v >> 8) & 0xFF
                self._fifo[p + 2] = v & 0xFF
        if self._count < 32:
            self._count += 1
        else:
            if self._ovf < 31:
                self._ovf += 1
            if self._rollover:
                self._rd = (self._rd + 1) & 31
                self._byte = 0
        if slot_base >= 0:
            self._wr = (self._wr + 1) & 31
        self._status1 |= 0x40  # PPG_RDY
        if self._count >= self._a_full:
            self._status1 |= 0x80  # A_FULL

    def _finish_temperature(self):
        t = self.die_temp_c16
        self._regs[0x1F] = (t >> 4) & 0xFF
        self._regs[0x20] = t & 0x0F
        self._regs[0x21] &= ~0x01
        self._status2 |= 0x02  # DIE_TEMP_RDY

    # --- register access (one I2C transaction each) ----------------------------------------------------------

    def read_into(self, reg, buf):
        self.sync()
        for i in range(len(buf)):
            buf[i] = self._read(reg)
            if reg != _FIFO_DATA:
                reg = (reg + 1) & 0xFF
        self._update_pin()

    def write_from(self, reg, buf):
        self.sync()
        for i in range(len(buf)):
            self._write(reg, buf[i])
            if reg != _FIFO_DATA:
                reg = (reg + 1) & 0xFF
        self._update_pin()

    def _read(self, reg):
        if reg == 0x00:
            v = self._status1
            self._status1 = 0
            return v
        if reg == 0x01:
            v = self._status2
            self._status2 = 0
            return v
        if reg == 0x04:
            return self._wr
        if reg == 0x05:
            return self._ovf
        if reg == 0x06:
            return self._rd
        if reg == _FIFO_DATA:
            return self._read_fifo_byte()
        return self._regs[reg]

    def _read_fifo_byte(self):
        self._status1 &= ~0xC0  # reading FIFO_DATA clears A_FULL and PPG_RDY
        v = self._fifo[self._rd * 9 + self._byte]
        self._byte += 1
        if self._byte >= 3 * self._nslots:
            self._byte = 0
            if self._count > 0:
                self._rd = (self._rd + 1) & 31
                self._count -= 1
                self._ovf = 0
        return v

    def _write(self, reg, value):
        if reg in (0x00, 0x01, _FIFO_DATA, 0x1F, 0x20, 0xFE, 0xFF):
            return  # read-only
        if reg == 0x04 or reg == 0x06:
            if reg == 0x04:
                self._wr = value & 31
            else:
                self._rd = value & 31
            self._count = (self._wr - self._rd) & 31
            self._byte = 0
            return
        if reg == 0x05:
            self._ovf = value & 31
            return
        if reg == 0x09 and value & 0x40:
            self._defaults()  # RESET: power-on values, the bit clears itself
            return
        self._regs[reg] = value
        if reg == 0x21 and value & 0x01:
            self._temp_left = _TEMP_US
        elif reg in (0x08, 0x09, 0x0A, 0x11, 0x12):
            self._reconfigure()


class SyntheticPPG:
    """Integer PPG-like counts: DC ~100000, pulses that dip a few hundred counts at hr_bpm, the red/IR
    ratio of ratios `ratio`, breathing baseline wander and seeded noise. read(out) allocates nothing."""

    def __init__(self, hr_bpm=72, ratio=0.6, dc_ir=100000, dc_red=90000, dc_green=60000, ac_ir=400,
                 wander=300, noise=20, seed=1):
        self.hr_bpm = hr_bpm
        self.dc_ir, self.dc_red, self.dc_green = dc_ir, dc_red, dc_green
        self.ac_ir = ac_ir
        self.ac_red = int(ratio * ac_ir * dc_red / dc_ir)
        self.ac_green = int(ac_ir * dc_green / dc_ir)
        self.wander = wander
        self.noise = noise
        self._x = seed & 0xFFFF
        self._shape = array("i", bytearray(4 * 256))  # one beat, 0..1024, systolic peak + dicrotic bump
        self._sine = array("i", bytearray(4 * 256))  # -1024..1024
        peak = 0.0
        for i in range(256):
            t = i / 256
            peak = max(peak, math.exp(-((t - 0.2) / 0.07) ** 2) + 0.35 * math.exp(-((t - 0.5) / 0.09) ** 2))
        for i in range(256):
            t = i / 256
            f = math.exp(-((t - 0.2) / 0.07) ** 2) + 0.35 * math.exp(-((t - 0.5) / 0.09) ** 2)
            self._shape[i] = int(1024 * f / peak)
            self._sine[i] = int(1024 * math.sin(2 * math.pi * t))
        self._beat = 0  # phase in 1/2**24 of a beat
        self._breath = 0
        self.set_rate(100)

    def set_rate(self, hz):
        self.rate = hz
        self._beat_step = int(self.hr_bpm * (1 << 24) / (60 * hz))
        self._breath_step = int(15 * (1 << 24) / (60 * hz))  # 15 breaths a minute

    def skip(self, n):
        """Advance as n read() calls would (the chip lost those samples)."""
        self._beat = (self._beat + n * self._beat_step) & 0xFFFFFF
        self._breath = (self._breath + n * self._breath_step) & 0xFFFFFF
        if self.noise:
            # x -> 75x + 74 (mod 65537), 3 times per sample: k steps give 75**k * (x + 1) - 1
            self._x = (pow(75, 3 * n, 65537) * (self._x + 1) - 1) % 65537

    def _rand(self):
        self._x = (self._x * 75 + 74) % 65537
        n = self.noise
        return self._x % (2 * n + 1) - n if n else 0

    def read(self, out):
        self._beat = (self._beat + self._beat_step) & 0xFFFFFF
        self._breath = (self._breath + self._breath_step) & 0xFFFFFF
        pulse = self._shape[self._beat >> 16]
        base = self.wander * self._sine[self._breath >> 16] // 1024
        out[0] = self.dc_red - self.ac_red * pulse // 1024 + base * self.dc_red // self.dc_ir + self._rand()
        out[1] = self.dc_ir - self.ac_ir * pulse // 1024 + base + self._rand()
        out[2] = self.dc_green - self.ac_green * pulse // 1024 + base * self.dc_green // self.dc_ir + self._rand()


class CsvSource:
    """A recording streamed from a CSV file (header row; columns red and ir, optionally green, matched
    case-insensitively; raw counts), one row per sample whatever the configured rate. Rows are parsed from
    a small buffer, so a long recording is never loaded whole and read(out) allocates nothing. At the end
    it starts again (loop=True) or holds the last row."""

    def __init__(self, path, loop=True):
        self._f = open(path, "rb")
        header = self._f.readline()
        names = [h.strip().strip('"').lower() for h in header.decode().split(",")]
        for need in ("red", "ir"):
            if need not in names:
                raise ValueError("%s: no %s column (columns: %s)" % (path, need, ", ".join(names)))
        self._cols = array("i", [names.index("red"), names.index("ir"),
                                 names.index("green") if "green" in names else -1])
        self._start = len(header)
        self.loop = loop
        self.rows = 0
        self.loops = 0
        self.rate = 0
        self._values = array("i", [0, 0, 0])
        self._buf = bytearray(256)
        self._n = 0
        self._pos = 0

    def set_rate(self, hz):
        self.rate = hz

    def close(self):
        self._f.close()

    def _next_byte(self):
        if self._pos >= self._n:
            self._n = self._f.readinto(self._buf) or 0
            self._pos = 0
            if self._n == 0:
                return -1
        b = self._buf[self._pos]
        self._pos += 1
        return b

    def _store(self, col, value, negative):
        cols = self._cols
        for i in range(3):
            if cols[i] == col:
                self._values[i] = -value if negative else value

    def read(self, out):
        if not self._read_row():
            if self.loop and self.rows:
                self._f.seek(self._start)
                self._n = self._pos = 0
                self.loops += 1
                self._read_row()
        out[0] = self._values[0]
        out[1] = self._values[1]
        out[2] = self._values[2]

    def _read_row(self):
        col = value = 0
        digits = negative = fraction = False
        content = False
        while True:
            b = self._next_byte()
            if b == -1 or b == 10:
                if digits:
                    self._store(col, value, negative)
                if content:
                    self.rows += 1
                    return True
                if b == -1:
                    return False
                continue
            if b == 13 or b == 32:
                continue
            content = True
            if 48 <= b <= 57:
                if not fraction:
                    value = value * 10 + b - 48
                    digits = True
            elif b == 44:  # ','
                if digits:
                    self._store(col, value, negative)
                col += 1
                value = 0
                digits = negative = fraction = False
            elif b == 46:  # '.': counts are integers; a fraction is dropped
                fraction = True
            elif b == 45:
                negative = True
