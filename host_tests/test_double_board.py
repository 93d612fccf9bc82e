"""The board double behaves like an ESP32 board where the firmware can tell: REPL and resets, watchdog, RTC,
BOOT button, sensor on I2C, flash across power cycles (tools/oxilink/double, docs/board-double.md)."""

from __future__ import annotations

import time

import pytest
from doublekit import board

from oxilink.double.flashimage import FlashImage

LOOP_MAIN = """\
import time
print("MAIN RAN")
n = 0
while True:
    n += 1
    time.sleep_ms(50)
"""


def test_soft_reboot_restarts_the_interpreter_and_raw_mode_skips_main(tmp_path, mpbuild):
    with board(tmp_path, {"/main.py": LOOP_MAIN}) as b:
        b.expect("MAIN RAN")
        m = b.mark()
        b.write_serial(b"\x03")  # Ctrl-C interrupts the running main.py, as on a board
        b.expect(r"KeyboardInterrupt.*\r\n>>> ", since=m, flags=16)
        b.write_serial(b"x = 42\r")
        m = b.mark()
        b.write_serial(b"\x04")  # Ctrl-D: soft reset; main.py runs again in friendly mode
        b.expect(r"MPY: soft reboot\r\n", since=m)
        b.expect("MAIN RAN", since=m)
        assert b.exec("import machine\nprint(machine.reset_cause(), 'x' in globals())").split() == ["5", "False"]
        # a soft reset from the raw REPL (what mpremote does) runs boot.py but not main.py
        m = b.mark()
        b.write_serial(b"\r\x03\r\x01")
        b.expect(r"raw REPL; CTRL-B to exit\r\n>", since=m)
        m = b.mark()
        b.write_serial(b"\x04")
        b.expect(r"OK\r\nMPY: soft reboot\r\n", since=m)
        b.expect(r"raw REPL; CTRL-B to exit\r\n>", since=m)
        time.sleep(0.5)
        assert "MAIN RAN" not in b.output[m:]
        assert [x.cause for x in b.boots] == ["power-on", "soft", "soft"]
        assert [x.repl_mode for x in b.boots] == ["friendly", "friendly", "raw"]


def test_watchdog_not_fed_resets_the_board_and_survives_a_soft_reset(tmp_path, mpbuild):
    main = ("import machine, time\nif machine.reset_cause() != machine.WDT_RESET:\n"
            "    w = machine.WDT(timeout=1500)\n    for i in range(8):\n        w.feed()\n        time.sleep_ms(300)\n"
            "    print('FED 2.4 s')\n    while True:\n        time.sleep_ms(100)\n"
            "print('AFTER WDT', machine.reset_cause())\n")
    with board(tmp_path, {"/main.py": main}) as b:
        b.expect("FED 2.4 s", 10)  # fed in time: no reset
        assert b.wdt_resets == 0
        b.expect(r"task_wdt: Task watchdog got triggered", 10)
        b.expect(r"AFTER WDT 3\r\n", 10)  # machine.WDT_RESET
        b.wait_boot(2)
        assert [x.cause for x in b.boots] == ["power-on", "wdt"] and b.wdt_resets == 1
        # machine.WDT cannot be stopped, not even by a soft reset (the ESP32's task WDT user stays)
        b.exec("import machine\nmachine.WDT(timeout=1000)")
        m = b.mark()
        b.write_serial(b"\x04")
        b.expect(r"MPY: soft reboot", 5, since=m)
        b.expect(r"task_wdt: Task watchdog got triggered", 5, since=m)
        b.wait_boot(4)
        assert [x.cause for x in b.boots] == ["power-on", "wdt", "soft", "wdt"]


def test_reset_causes_are_the_esp32_constants(tmp_path, mpbuild):
    main = "import machine\nprint('CAUSE', machine.reset_cause())\n"
    with board(tmp_path, {"/main.py": main}) as b:
        b.expect(r"CAUSE 1\r\n")  # PWRON_RESET
        m = b.mark()
        b.brown_out()
        b.expect(r"RTCWDT_BROWN_OUT_RESET", since=m)
        b.expect(r"CAUSE 1\r\n", since=m)  # brown-out reads PWRON_RESET, as ports/esp32/modmachine.c maps it
        m = b.mark()
        b.write_serial(b"\x03")
        b.expect(">>> ", since=m)
        b.write_serial(b"machine.reset()\r")
        b.expect(r"CAUSE 2\r\n", since=m)  # HARD_RESET
        m = b.mark()
        b.write_serial(b"\x03")
        b.expect(">>> ", since=m)
        b.write_serial(b"machine.soft_reset()\r")
        b.expect(r"CAUSE 5\r\n", since=m)  # SOFT_RESET
        constants = b.exec("import machine\nprint(machine.PWRON_RESET, machine.HARD_RESET, machine.WDT_RESET, "
                           "machine.DEEPSLEEP_RESET, machine.SOFT_RESET)")
        assert constants.split() == ["1", "2", "3", "4", "5"]
        assert [x.cause for x in b.boots] == ["power-on", "brown-out", "hard", "soft"]


def test_rtc_keeps_time_across_soft_reset_only(tmp_path, mpbuild):
    read = "import machine, time\nprint(machine.RTC().datetime()[0], time.gmtime(0)[0], time.ticks_ms())"
    with board(tmp_path, {}) as b:
        b.expect(">>> ")
        year, epoch, ticks0 = map(int, b.exec(read).split())
        assert (year, epoch) == (2000, 2000)  # an ESP32 after power-on; its time module counts from 2000
        b.exec("import machine\nmachine.RTC().datetime((2031, 5, 6, 1, 7, 8, 9, 0))")
        m = b.mark()
        b.write_serial(b"\x04")
        b.expect(">>> ", since=b.expect("soft reboot", since=m).end())
        year, _, ticks1 = map(int, b.exec(read).split())
        assert year == 2031 and ticks1 > ticks0  # soft reset: RTC and ticks go on
        m = b.mark()
        b.write_serial(b"import machine\rmachine.reset()\r")
        b.expect(">>> ", since=b.expect("SW_CPU_RESET", since=m).end())
        year, _, ticks2 = map(int, b.exec(read).split())
        assert year == 2000 and ticks2 < ticks1  # hard reset: the RTC starts over, and so do ticks
        b.exec("import machine\nmachine.RTC().datetime((2031, 5, 6, 1, 7, 8, 9, 0))")
        b.power_cycle()
        b.expect(">>> ", since=b.expect("POWERON_RESET", since=m).end())
        assert int(b.exec(read).split()[0]) == 2000


@pytest.mark.parametrize("mpbuild", ["esp32like"], indirect=True)  # the 64-bit build's ticks wrap at 2**62
def test_ticks_start_just_before_the_wrap_and_wrap(tmp_path, mpbuild):
    with board(tmp_path, {}, ticks_at_boot_ms=2**30 - 3000) as b:
        b.expect(">>> ")
        out = b.exec("import time\nt0 = time.ticks_ms()\ntime.sleep_ms(3500)\nt1 = time.ticks_ms()\n"
                     "print(t0, t1, time.ticks_diff(t1, t0))")
        t0, t1, diff = map(int, out.split())
        assert t0 > 2**30 - 3000 and t1 < 2000 and 3400 <= diff <= 4500


def test_boot_button(tmp_path, mpbuild):
    main = ("from machine import Pin\nprint('BOOT', Pin(0, Pin.IN, Pin.PULL_UP).value())\n")
    with board(tmp_path, {"/main.py": main}) as b:
        b.expect(r"BOOT 1\r\n")
        b.hold_boot()
        m = b.mark()
        b.press_reset()
        b.expect(r"BOOT 0\r\n", since=m)
        b.hold_boot(False)
        assert b.exec("from machine import Pin\nprint(Pin(0).value())").strip() == "1"


def test_boot_button_is_gpio9_on_the_c3(tmp_path, mpbuild):
    with board(tmp_path, {}, board="esp32-c3-devkitm-1") as b:
        b.expect(">>> ")
        b.hold_boot()
        assert b.exec("from machine import Pin\nprint(Pin(9, Pin.IN, Pin.PULL_UP).value(), "
                      "Pin(0, Pin.IN, Pin.PULL_UP).value())").split() == ["0", "1"]


def test_sensor_answers_on_its_wires_and_its_int_pin_fires(tmp_path, mpbuild):
    code = """\
import machine, time
from machine import I2C, Pin
print(I2C(0, scl=Pin(22), sda=Pin(21)).scan(), I2C(0, scl=Pin(18), sda=Pin(19)).scan())
try:
    I2C(0, scl=Pin(18), sda=Pin(19)).readfrom_mem(0x57, 0xFF, 1)
except OSError as e:
    print("errno", e.errno)
i2c = I2C(0, scl=Pin(22), sda=Pin(21))
print("part", i2c.readfrom_mem(0x57, 0xFF, 1)[0])
edges = []
p = Pin(19, Pin.IN, Pin.PULL_UP)
p.irq(handler=lambda pin: edges.append(time.ticks_ms()), trigger=Pin.IRQ_FALLING)
i2c.writeto_mem(0x57, 0x09, b"\\x40")            # reset
i2c.writeto_mem(0x57, 0x02, b"\\x80")            # A_FULL interrupt
i2c.writeto_mem(0x57, 0x08, b"\\x0f")            # almost full at 17 samples
i2c.writeto_mem(0x57, 0x0a, b"\\x27")            # 100 sps, 411 us
i2c.writeto_mem(0x57, 0x0c, b"\\x23\\x23")
i2c.writeto_mem(0x57, 0x09, b"\\x03")            # SpO2 mode
time.sleep_ms(400)                               # 40 samples: the FIFO fills and overflows
print("edges", len(edges), "int", p.value())
"""
    with board(tmp_path, {}) as b:
        b.expect(">>> ")
        out = b.exec(code)
        assert "[87] []" in out  # 0x57 on GPIO21/22 (the devkitc wiring), nothing on other pins
        assert "errno 19" in out  # ENODEV, as the ESP32 port raises on a NACK
        assert "part 21" in out  # 0x15: a MAX30102
        edges = int(out.split("edges ")[1].split()[0])
        assert edges >= 1 and "int 0" in out  # the INT line fell and the handler ran, as a scheduled IRQ
        time.sleep(0.3)
        assert b.sensor_overflows > 0  # 40 samples into a 32-sample FIFO never read: the chip counted them


def test_flash_image_survives_power_cycles_and_the_host_reads_it(tmp_path, mpbuild):
    with board(tmp_path) as b:
        b.expect("Performing initial setup")  # an erased flash is formatted at the first boot
        b.expect(">>> ")
        b.exec("with open('/data.txt', 'w') as f:\n    f.write('kept')\nimport os\nos.mkdir('/q')")
        m = b.mark()
        b.power_cycle(off_s=0.2)
        b.expect(r"POWERON_RESET.*>>> ", flags=16, since=m)
        assert b.exec("print(open('/data.txt').read(), sorted(__import__('os').listdir('/')))").split() == \
            ["kept", "['boot.py',", "'data.txt',", "'q']"]
        assert b.output.count("Performing initial setup") == 1
    files = FlashImage(b.flash).files()
    assert set(files) == {"/boot.py", "/data.txt"} and files["/data.txt"][0] == 4


@pytest.mark.parametrize("serial", ["pty", "tcp"])
def test_serial_cut_fails_the_host_and_the_port_comes_back(tmp_path, mpbuild, serial):
    import serial as pyserial

    with board(tmp_path, {}, serial=serial) as b:
        b.expect(">>> ")
        port = pyserial.serial_for_url(b.url, timeout=2)
        port.write(b"print(6*7)\r")
        assert b"42" in port.read_until(b"42")
        b.cut_serial()
        with pytest.raises((pyserial.SerialException, OSError)):
            for _ in range(20):
                port.write(b"\r")
                if not port.read(1) and serial == "pty":
                    raise OSError("no data")
                time.sleep(0.1)
        port.close()
        again = pyserial.serial_for_url(b.url, timeout=2)
        again.write(b"print(6*8)\r")
        assert b"48" in again.read_until(b"48")
        again.close()
