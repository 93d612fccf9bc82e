# machine on the board double: the ESP32 port's machine API (ports/esp32 v1.28: modmachine.c, machine_pin.c,
# machine_i2c.c, machine_wdt.c, machine_rtc.c, machine_timer.c) over simulated hardware. Host-side only.
#
# - I2C / SoftI2C: the register-level MAX30102 simulator (firmware/sim/max30102_sim.py) answers at its address
#   when the bus uses the pins the sensor is wired to; otherwise nothing acknowledges (OSError ENODEV, as on
#   the ESP32).
# - Pin: the BOOT button (GPIO0; GPIO9 on the C3) reads 0 while the launcher holds it; the sensor's INT pin
#   follows the chip and calls its irq handler as a scheduled (soft) callback, from a poller, as on the ESP32.
# - WDT: the launcher keeps the time; a WDT not fed within its timeout ends the run as a watchdog reset. It
#   survives a soft reset, as on the ESP32 (the task WDT user is never removed).
# - RTC: writes the clock file the LD_PRELOAD shim reads; the launcher keeps it across soft resets only.
# - reset() / deepsleep(): the launcher stops this process at once (no finally blocks run) and boots again.
import micropython

import _builtin
import _clock
import _link
from _state import run

_m = _builtin.load("machine")
_t = _builtin.load("time")
_thread = _builtin.load("_thread")
_g = globals()
for _n in dir(_m):
    if not _n.startswith("_") and _n not in _g:
        _g[_n] = getattr(_m, _n)
del _g, _n

_EPOCH_2000 = 946684800

# Reset causes (modmachine.c): brown-out reads as PWRON_RESET there too (ESP_RST_BROWNOUT -> MP_PWRON_RESET).
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
SLEEP = 2
DEEPSLEEP = 4
PIN_WAKE = EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4
TOUCHPAD_WAKE = 5
ULP_WAKE = 6

_PLATFORM = run["platform"]
_CHIP_PINS = {  # GPIOs that exist (machine_pin.c rejects the others with "invalid pin")
    "esp32": tuple(p for p in range(40) if p not in (20, 24, 28, 29, 30, 31)),
    "esp32s3": tuple(p for p in range(49) if p not in (22, 23, 24, 25)),
    "esp32c3": tuple(range(22)),
}[_PLATFORM]
_INPUT_ONLY = tuple(range(34, 40)) if _PLATFORM == "esp32" else ()
_I2C_BUSES = 1 if _PLATFORM == "esp32c3" else 2
_TIMERS = 2 if _PLATFORM == "esp32c3" else 4
_FREQS = (20, 40, 80, 160) if _PLATFORM == "esp32c3" else (20, 40, 80, 160, 240)
_freq = [160000000]
_BOOT_PIN = 9 if _PLATFORM == "esp32c3" else 0


def reset_cause():
    return run["reset_cause"]


def wake_reason():
    return TIMER_WAKE if run["reset_cause"] == DEEPSLEEP_RESET else 0


def reset():
    _link.get().call("reset", cause="hard")
    while True:  # the launcher ends this process
        _t.sleep_ms(1000)


def soft_reset():
    raise SystemExit


def deepsleep(time_ms=None):
    _link.get().call("reset", cause="deepsleep", after_ms=time_ms)
    while True:
        _t.sleep_ms(1000)


def lightsleep(time_ms=None):
    if time_ms is not None:
        _t.sleep_ms(time_ms)


sleep = lightsleep


def idle():
    _t.sleep_ms(0)


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def unique_id():
    return bytes(run["unique_id"])


def freq(hz=None):
    if hz is None:
        return _freq[0]
    if hz // 1000000 not in _FREQS:
        raise ValueError("frequency must be %sMHz" % ", ".join(str(f) for f in _FREQS))
    _freq[0] = hz // 1000000 * 1000000


# ---- Pin --------------------------------------------------------------------------------------------------

def _pin_id(p):
    if isinstance(p, Pin):
        return p.id
    if type(p) is not int or p not in _CHIP_PINS:
        raise ValueError("invalid pin")
    return p


_irq_pins = []


class _IrqPoller:
    """The INT line changes when the chip's FIFO fills, not when the firmware looks: a thread asks for a
    scheduled sync every 2 ms, so the handler runs as a soft IRQ would (ESP32: scheduled unless hard=True)."""

    running = False
    pending = False

    @classmethod
    def start(cls):
        if not cls.running:
            cls.running = True
            _thread.start_new_thread(cls._loop, ())

    @classmethod
    def _loop(cls):
        while cls.running:
            _t.sleep_ms(2)
            if not cls.pending:
                cls.pending = True
                try:
                    micropython.schedule(cls._sync, None)
                except RuntimeError:  # queue full: try again next time
                    cls.pending = False

    @staticmethod
    def _sync(_):
        _IrqPoller.pending = False
        for p in _irq_pins:
            p._poll()


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        self.id = _pin_id(id)
        self._mode = None
        self._pull = None
        self._out = 0
        self._handler = None
        self._trigger = 0
        self._level = None
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=None, hold=None):
        if mode != -1:
            if mode in (Pin.OUT, Pin.OPEN_DRAIN) and self.id in _INPUT_ONLY:
                raise ValueError("pin can only be input")
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self._out = 1 if value else 0

    def _external(self):
        """The level something outside the chip drives onto this pin, or None (floating)."""
        if self.id == _BOOT_PIN:
            return 0 if _link.get().call("button")["held"] else 1  # the button pulls to GND; a pull-up on board
        if self.id == run["wiring"].get("int") and _chip.present():
            return _chip.get().pin.value()
        return None

    def value(self, v=None):
        if v is not None:
            self._out = 1 if v else 0
            return None
        if self._mode in (Pin.OUT,):
            return self._out
        level = self._external()
        if level is None:
            level = 1 if self._pull == Pin.PULL_UP else 0
        return level

    __call__ = value

    def on(self):
        self._out = 1

    def off(self):
        self._out = 0

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, *, wake=None, hard=False):
        self._handler = handler
        self._trigger = trigger
        self._level = self.value()
        if handler is None:
            if self in _irq_pins:
                _irq_pins.remove(self)
        elif self not in _irq_pins:
            _irq_pins.append(self)
            _IrqPoller.start()
        return self

    def _poll(self):
        level = self.value()
        if level != self._level:
            self._level = level
            edge = Pin.IRQ_RISING if level else Pin.IRQ_FALLING
            if self._handler is not None and self._trigger & edge:
                self._handler(self)

    def __repr__(self):
        return "Pin(%d)" % self.id


# ---- I2C and the simulated sensor ----------------------------------------------------------------------------

class _chip:
    """The MAX30102 on the sensor's wires, built once per run from the launcher's sensor description."""

    _chip = None

    @staticmethod
    def present():
        return run["sensor"] is not None

    @classmethod
    def get(cls):
        if cls._chip is None:
            import _sensor

            cls._chip = _sensor.build(run["sensor"])
        return cls._chip


class _NoDevice:
    def read_into(self, reg, buf):
        raise OSError(19)

    write_from = read_into


class I2C:
    def __init__(self, id=-1, *, scl=None, sda=None, freq=400000, timeout=50000):
        if type(id) is not int or not 0 <= id < _I2C_BUSES:
            raise ValueError("I2C(%r) doesn't exist" % (id,))
        self.id = id
        self.init(scl=scl, sda=sda, freq=freq, timeout=timeout)

    def init(self, *, scl=None, sda=None, freq=400000, timeout=50000):
        w = run["wiring"]
        default = ((18, 19), (25, 26))[self.id] if _PLATFORM == "esp32" else (None, None)  # MICROPY_HW_I2Cn_*
        self._scl = _pin_id(scl) if scl is not None else default[0]
        self._sda = _pin_id(sda) if sda is not None else default[1]
        self.freq = freq
        wired = _chip.present() and self._scl == w["scl"] and self._sda == w["sda"]
        self._address = run["sensor"]["address"] if wired else None

    def _dev(self, addr):
        if addr == self._address:
            chip = _chip.get()
            if chip.bus_fault:
                raise OSError(chip.bus_fault)
            return chip
        raise OSError(19)  # ENODEV: nothing acknowledged the address

    def scan(self):
        if self._address is None or _chip.get().bus_fault:
            return []
        return [self._address]

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        self._dev(addr).read_into(memaddr, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        buf = bytearray(nbytes)
        self._dev(addr).read_into(memaddr, buf)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        self._dev(addr).write_from(memaddr, buf)

    def writeto(self, addr, buf, stop=True):
        dev = self._dev(addr)
        if len(buf) > 1:
            dev.write_from(buf[0], memoryview(buf)[1:])
        elif len(buf) == 1:
            dev.pointer = buf[0]
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        dev = self._dev(addr)
        dev.read_into(getattr(dev, "pointer", 0), buf)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf, stop)
        return bytes(buf)


SoftI2C = I2C


# ---- WDT, RTC, Timer ----------------------------------------------------------------------------------------

class WDT:
    _last = None

    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        _link.get().call("wdt_start", timeout_ms=timeout)
        WDT._last = None

    def feed(self):
        # Told to the launcher at most every 100 ms (the timeout is seconds): feeding stays cheap.
        now = _t.ticks_ms()
        last = WDT._last
        if last is None or _t.ticks_diff(now, last) >= 100:
            WDT._last = now
            _link.get().event("wdt_feed")


def _to_unix(y, mo, d, h, mi, s):
    import time as board_time  # the double's time: mktime counts from 2000

    return board_time.mktime((y, mo, d, h, mi, s, 0, 0)) + _EPOCH_2000


class RTC:
    def __init__(self):
        pass

    def _set(self, t, hour):
        secs = _to_unix(t[0], t[1], t[2], t[hour], t[hour + 1], t[hour + 2])
        us = t[7] if len(t) > 7 else 0
        _clock.set_realtime_ns(secs * 1000000000 + us * 1000)

    def datetime(self, t=None):
        if t is not None:
            if len(t) != 8:
                raise ValueError("requested length 8 but object has length %d" % len(t))
            self._set(t, 4)
            return None
        ns = _t.time_ns()
        secs = ns // 1000000000
        tm = _t.gmtime(secs)
        return (tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], ns // 1000 % 1000000)

    def init(self, t):
        self._set(t, 3)

    def memory(self, data=None):
        if data is None:
            return bytes(_link.get().call("rtc_memory")["data"])
        if len(data) > 2048:
            raise ValueError("buffer too long")
        _link.get().call("rtc_memory", data=list(bytes(data)))
        return None


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id, *args, **kw):
        if type(id) is not int or not 0 <= id < _TIMERS:
            raise ValueError("invalid Timer number")
        self.id = id
        self._gen = 0
        self._start = _t.ticks_ms()
        if args or kw:
            self.init(*args, **kw)

    def init(self, *, mode=PERIODIC, period=-1, freq=-1, callback=None):
        if freq > 0:
            period = 1000 // freq
        if period < 0:
            period = 0xFFFFFFFF
        self.deinit()
        self._gen += 1
        self._start = _t.ticks_ms()
        if callback is not None:
            _thread.start_new_thread(self._run, (self._gen, mode, period, callback))

    def _run(self, gen, mode, period, callback):
        due = _t.ticks_add(_t.ticks_ms(), period)
        while gen == self._gen:
            left = _t.ticks_diff(due, _t.ticks_ms())
            if left > 0:
                _t.sleep_ms(min(left, 50))
                continue
            try:
                micropython.schedule(callback, self)
            except RuntimeError:
                pass
            if mode == Timer.ONE_SHOT:
                return
            due = _t.ticks_add(due, period)

    def deinit(self):
        self._gen += 1

    def value(self):
        return _t.ticks_diff(_t.ticks_ms(), self._start)


def _exit_hooks():
    """Soft reset: timers and the INT poller stop, as machine_timer_deinit_all() and machine_pins_deinit() do."""
    _IrqPoller.running = False
    del _irq_pins[:]

