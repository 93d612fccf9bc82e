# MAX30102 (and MAX30101/MAX30105, same register map and part ID) pulse-oximeter driver.
#
# The bus and the clock are passed in. Every FIFO read is one 7-byte status burst plus one burst of all
# available samples into a preallocated buffer, unpacked by viper into array('i') buffers: the read path
# allocates nothing. Bus faults surface as the port's OSError (ENODEV 19 on a NACK, ETIMEDOUT 116 on a
# stuck bus); the driver keeps no half-done state, so the next read_fifo() works once the bus is back.
# See docs/acquisition.md for the FIFO pointer maths.
from array import array
from micropython import const
import micropython

from clock import Clock

_INT_STATUS1 = const(0x00)  # 0x00..0x06 read as one burst: STATUS1, STATUS2, EN1, EN2, WR_PTR, OVF, RD_PTR
_INT_ENABLE1 = const(0x02)
_FIFO_WR_PTR = const(0x04)
_FIFO_DATA = const(0x07)
_FIFO_CONFIG = const(0x08)  # SMP_AVE[7:5] FIFO_ROLLOVER_EN[4] FIFO_A_FULL[3:0]
_MODE_CONFIG = const(0x09)  # SHDN[7] RESET[6] MODE[2:0]
_SPO2_CONFIG = const(0x0A)  # ADC_RGE[6:5] SR[4:2] LED_PW[1:0]
_LED1_PA = const(0x0C)  # 0.2 mA steps
_LED2_PA = const(0x0D)
_LED3_PA = const(0x0E)  # MAX30101 / MAX30105 green
_MULTI_LED_CTRL1 = const(0x11)  # SLOT2[6:4] SLOT1[2:0]
_MULTI_LED_CTRL2 = const(0x12)  # SLOT4[6:4] SLOT3[2:0]
_TEMP_INT = const(0x1F)  # signed degC, then TFRAC (x 0.0625 degC) at 0x20
_TEMP_CONFIG = const(0x21)
_PART_ID = const(0xFF)

_PART_ID_VALUE = const(0x15)
_RESET = const(0x40)
_SHDN = const(0x80)
_TEMP_EN = const(0x01)
_A_FULL = const(0x80)
_PPG_RDY = const(0x40)
_PWR_RDY = const(0x01)
_FIFO_DEPTH = const(32)
_SAMPLE_MASK = const(0x3FFFF)
_ETIMEDOUT = const(116)

_MODES = {"hr": 2, "spo2": 3, "multi": 7}
_SAMPLE_RATES = (50, 100, 200, 400, 800, 1000, 1600, 3200)
_AVERAGING = (1, 2, 4, 8, 16, 32)
_PULSE_WIDTHS = (69, 118, 215, 411)  # ADC resolution 15, 16, 17, 18 bits, left-justified in 18
_ADC_RANGES = (2048, 4096, 8192, 16384)
_MODELS = ("max30102", "max30101", "max30105")
_NONE = const(15)  # layout nibble: channel not sampled


@micropython.viper
def _unpack(src: ptr8, n: int, stride: int, red: ptr32, ir: ptr32, green: ptr32, layout: int):
    # layout: byte offset of red | ir << 4 | green << 8 inside one sample record, 15 = not sampled.
    ro = layout & 0xF
    io = (layout >> 4) & 0xF
    go = (layout >> 8) & 0xF
    p = 0
    i = 0
    while i < n:
        if ro == 15:
            red[i] = 0
        else:
            q = p + ro
            red[i] = ((src[q] << 16) | (src[q + 1] << 8) | src[q + 2]) & 0x3FFFF
        if io == 15:
            ir[i] = 0
        else:
            q = p + io
            ir[i] = ((src[q] << 16) | (src[q + 1] << 8) | src[q + 2]) & 0x3FFFF
        if go == 15:
            green[i] = 0
        else:
            q = p + go
            green[i] = ((src[q] << 16) | (src[q + 1] << 8) | src[q + 2]) & 0x3FFFF
        p += stride
        i += 1


def _code(field, value, allowed):
    for i in range(len(allowed)):
        if allowed[i] == value:
            return i
    raise ValueError("sensor.%s: %r is not allowed; allowed: %s" % (field, value, ", ".join(str(a) for a in allowed)))


def _led_code(field, ma):
    if not 0 <= ma <= 51:
        raise ValueError("sensor.%s: %r is out of range; allowed: 0..51 (mA, 0.2 mA steps)" % (field, ma))
    return min(255, int(ma * 5 + 0.5))


class Max30102:
    def __init__(self, i2c, address=0x57, clock=None):
        self._i2c = i2c
        self.address = address
        self._clock = clock if clock is not None else Clock()
        self._b1 = bytearray(1)
        self._status = bytearray(7)  # INT_STATUS1..FIFO_RD_PTR in one burst
        self._zero3 = bytearray(3)
        self._fifo = bytearray(_FIFO_DEPTH * 9)  # 32 samples x 3 LEDs x 3 bytes
        self._fifo_mv = memoryview(self._fifo)
        self.red = array("i", bytearray(4 * _FIFO_DEPTH))
        self.ir = array("i", bytearray(4 * _FIFO_DEPTH))
        self.green = array("i", bytearray(4 * _FIFO_DEPTH))
        self._image = bytearray(0)  # (register, value) pairs written by _apply(), MODE_CONFIG last
        self._views = None  # _views[n]: memoryview over the first n samples of _fifo, made in configure()
        self._stride = 6
        self._layout = 0
        self._ppg_seen = 0  # PPG_RDY seen in a status read since the last FIFO read
        self.output_rate = 0
        self.channels = 0
        self.full_scale = _SAMPLE_MASK
        self.almost_full = 17  # samples in the FIFO when A_FULL fires
        self.overflow = 0  # OVF_COUNTER at the last read_fifo(): samples the chip lost (saturates at 31)
        self.restarted = False  # the last read_fifo() found the chip power-cycled and re-configured it
        self.restarts = 0
        self._check_part()

    def _check_part(self):
        try:
            self._i2c.readfrom_mem_into(self.address, _PART_ID, self._b1)
        except OSError as e:
            raise OSError("no MAX30102 at 0x%02x (bus error %s)" % (self.address, e.errno))
        if self._b1[0] != _PART_ID_VALUE:
            raise OSError("no MAX30102 at 0x%02x (part ID 0x%02x, expected 0x%02x)"
                          % (self.address, self._b1[0], _PART_ID_VALUE))

    def _read(self, reg):
        self._i2c.readfrom_mem_into(self.address, reg, self._b1)
        return self._b1[0]

    def _write(self, reg, value):
        self._b1[0] = value
        self._i2c.writeto_mem(self.address, reg, self._b1)

    def _wait_clear(self, reg, bit, what):
        for _ in range(50):
            if not self._read(reg) & bit:
                return
            self._clock.sleep_ms(2)
        raise OSError(_ETIMEDOUT, "MAX30102 %s did not finish" % what)

    def reset(self):
        """Soft reset: every register back to its power-on value (the chip stops sampling)."""
        self._write(_MODE_CONFIG, _RESET)
        self._wait_clear(_MODE_CONFIG, _RESET, "reset")
        self._ppg_seen = 0

    def configure(self, mode="spo2", sample_rate=100, averaging=1, pulse_width_us=411, adc_range_na=4096,
                  led_red_ma=7.0, led_ir_ma=7.0, led_green_ma=0, fifo_almost_full=15, swap_red_ir=False,
                  model="max30102", rollover=False):
        if mode not in _MODES:
            raise ValueError("sensor.mode: %r is not allowed; allowed: hr, spo2, multi" % (mode,))
        _code("model", model, _MODELS)
        sr = _code("sample_rate", sample_rate, _SAMPLE_RATES)
        avg = _code("averaging", averaging, _AVERAGING)
        pw = _code("pulse_width_us", pulse_width_us, _PULSE_WIDTHS)
        adc = _code("adc_range_na", adc_range_na, _ADC_RANGES)
        if not 0 <= fifo_almost_full <= 15:
            raise ValueError("sensor.fifo_almost_full: %r is out of range; allowed: 0..15" % (fifo_almost_full,))
        red, ir, green = _led_code("led_red_ma", led_red_ma), _led_code("led_ir_ma", led_ir_ma), 0
        if led_green_ma:
            if model == "max30102" or mode != "multi":
                raise ValueError("sensor.led_green_ma: a green LED needs model max30101/max30105 in multi mode")
            green = _led_code("led_green_ma", led_green_ma)
        # LED1 is the red LED and LED2 the infrared one, unless the board wires them the other way round:
        # then the currents and the data channels swap together.
        led1, led2 = (ir, red) if swap_red_ir else (red, ir)
        regs = [
            (_FIFO_CONFIG, (avg << 5) | (0x10 if rollover else 0) | fifo_almost_full),
            (_SPO2_CONFIG, (adc << 5) | (sr << 2) | pw),
            (_LED1_PA, led1),
            (_LED2_PA, led2),
            (_LED3_PA, green),
        ]
        if mode == "hr":
            slots = (1,)  # the chip drives LED1 only
        elif mode == "spo2":
            slots = (1, 2)
        else:
            slots = (1, 2, 3) if green else (1, 2)
            regs.append((_MULTI_LED_CTRL1, slots[0] | (slots[1] << 4)))
            regs.append((_MULTI_LED_CTRL2, slots[2] if len(slots) > 2 else 0))
        regs.append((_INT_ENABLE1, self._int_enable()))
        regs.append((_MODE_CONFIG, _MODES[mode]))
        offsets = [_NONE, _NONE, _NONE]  # byte offset of red, ir, green in a sample record
        for i, led in enumerate(slots):
            channel = led - 1
            if swap_red_ir and channel < 2:
                channel = 1 - channel
            offsets[channel] = 3 * i
        self._layout = offsets[0] | (offsets[1] << 4) | (offsets[2] << 8)
        self._stride = 3 * len(slots)
        self._views = [self._fifo_mv[: k * self._stride] for k in range(_FIFO_DEPTH + 1)]
        image = bytearray(2 * len(regs))
        for i, (reg, value) in enumerate(regs):
            image[2 * i] = reg
            image[2 * i + 1] = value
        self._image = image
        self.channels = len(slots)
        self.output_rate = sample_rate // averaging
        self.almost_full = _FIFO_DEPTH - fifo_almost_full
        self.full_scale = _SAMPLE_MASK & ~((1 << (3 - pw)) - 1)
        self._apply()

    def configure_from(self, sensor):
        """Apply the `sensor` section of a validated board config (boardconf.validate)."""
        self.configure(mode=sensor["mode"], sample_rate=sensor["sample_rate"], averaging=sensor["averaging"],
                       pulse_width_us=sensor["pulse_width_us"], adc_range_na=sensor["adc_range_na"],
                       led_red_ma=sensor["led_red_ma"], led_ir_ma=sensor["led_ir_ma"],
                       led_green_ma=sensor.get("led_green_ma", 0), fifo_almost_full=sensor["fifo_almost_full"],
                       swap_red_ir=sensor["swap_red_ir"], model=sensor.get("model", "max30102"))

    def _int_enable(self):
        for i in range(0, len(self._image), 2):
            if self._image[i] == _INT_ENABLE1:
                return self._image[i + 1]
        return 0

    def enable_interrupts(self, a_full=True, ppg_rdy=False):
        """Drive the INT pin (active low, open drain) on FIFO almost-full and/or on every new sample."""
        value = (_A_FULL if a_full else 0) | (_PPG_RDY if ppg_rdy else 0)
        for i in range(0, len(self._image), 2):
            if self._image[i] == _INT_ENABLE1:
                self._image[i + 1] = value
        self._write(_INT_ENABLE1, value)

    def _apply(self):
        # Allocation-free: read_fifo() calls it when it finds the chip power-cycled.
        image = self._image
        n = len(image)
        if n == 0:
            return
        self._write(_MODE_CONFIG, 0)  # stop sampling while the FIFO is reconfigured
        for i in range(0, n - 2, 2):
            self._write(image[i], image[i + 1])
        self._i2c.writeto_mem(self.address, _FIFO_WR_PTR, self._zero3)  # WR_PTR, OVF_COUNTER, RD_PTR
        self._i2c.readfrom_mem_into(self.address, _INT_STATUS1, self._status)  # clear pending status
        self._ppg_seen = 0
        self._write(image[n - 2], image[n - 1])  # MODE_CONFIG: sampling starts now

    def shutdown(self, off=True):
        mode = self._image[len(self._image) - 1] if self._image else 0
        self._write(_MODE_CONFIG, (_SHDN | mode) if off else mode)

    def read_fifo(self):
        """Read every sample in the FIFO into red/ir/green[0:n]; return n. Allocates nothing."""
        status = self._status
        self._i2c.readfrom_mem_into(self.address, _INT_STATUS1, status)
        self.restarted = False
        if status[0] & _PWR_RDY:
            # Power-on (or brown-out) since the last read: registers are back at their defaults.
            self.restarted = True
            self.restarts += 1
            self.overflow = 0
            self._apply()
            return 0
        if status[0] & _PPG_RDY:
            self._ppg_seen = 1
        wr = status[4] & 31
        ovf = status[5] & 31
        rd = status[6] & 31
        n = (wr - rd) & 31
        if n == 0 and (ovf or self._ppg_seen):
            n = _FIFO_DEPTH  # WR == RD with new samples since the last read: the FIFO is full, not empty
        self.overflow = ovf
        if n == 0:
            return 0
        self._i2c.readfrom_mem_into(self.address, _FIFO_DATA, self._views[n])
        self._ppg_seen = 0
        _unpack(self._fifo, n, self._stride, self.red, self.ir, self.green, self._layout)
        return n

    def recover(self):
        """After a bus fault: check the chip answers, re-apply the configuration if it lost it.

        Returns True when the configuration had to be re-applied (the FIFO contents were lost)."""
        self._check_part()
        self._i2c.readfrom_mem_into(self.address, _INT_STATUS1, self._status)
        if self._status[0] & _PPG_RDY:
            self._ppg_seen = 1
        lost = bool(self._status[0] & _PWR_RDY)
        image = self._image
        for i in range(0, len(image), 2):
            if self._read(image[i]) != image[i + 1]:
                lost = True
        if lost:
            self.restarts += 1
            self._apply()
        return lost

    def temperature_c16(self):
        """Die temperature in 1/16 degC (integer), after a bounded wait for the conversion."""
        self._write(_TEMP_CONFIG, _TEMP_EN)
        self._clock.sleep_ms(30)  # conversion takes ~29 ms
        self._wait_clear(_TEMP_CONFIG, _TEMP_EN, "temperature conversion")
        t = self._read(_TEMP_INT)
        if t & 0x80:
            t -= 256
        return t * 16 + (self._read(_TEMP_INT + 1) & 0x0F)

    def temperature(self):
        return self.temperature_c16() / 16
