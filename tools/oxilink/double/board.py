"""The board double: an ESP32 dev board on the host, for running the deployed firmware unchanged.

A Board is the hardware and its power: it owns the flash image, the serial line (a pty or socket://), the
board's clocks (clockstate.py + the LD_PRELOAD shim), the Wi-Fi access point (wifi.py), the relays to servers
(relay.py), the watchdog and the reset lines. Each run of MicroPython between two resets is one process of
the unix port running mp/_board.py, which mounts the flash as "/" and runs boot.py, main.py and the REPL as
ports/esp32/main.c does. What survives which reset follows the ESP32:

    reset              machine.reset_cause()   RTC         ticks   watchdog   Wi-Fi   RTC memory
    power-on, EN       PWRON_RESET (1)         power-on    restart off        off     cleared
    brown-out          PWRON_RESET (1)         power-on    restart off        off     cleared
    machine.reset()    HARD_RESET (2)          power-on    restart off        off     kept
    panic (crash)      HARD_RESET (2)          power-on    restart off        off     kept
    watchdog           WDT_RESET (3)           power-on    restart off        off     kept
    deepsleep wake     DEEPSLEEP_RESET (4)     power-on    restart off        off     kept
    soft (Ctrl-D, ...) SOFT_RESET (5)          kept        kept    KEPT       kept    kept

("power-on" RTC = `rtc_at_power_on`, 2000-01-01 by default: a real ESP32 may keep its RTC across the non-power
resets; the firmware must not rely on either.) The watchdog surviving a soft reset is the ESP32's: its task
WDT user is never removed, so a soft reset into the raw REPL (what mpremote does) leaves it running.

Use it as a context manager; see docs/board-double.md for the test-facing summary.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import mprun, paths
from . import shim
from .clockstate import EPOCH_2000, BoardClock
from .flashimage import DEFAULT_SIZE, erase
from .relay import Relay
from .serialport import PtyPort, TcpPort
from .wifi import AccessPoint, Station

MP_DIR = Path(__file__).resolve().parent / "mp"

RESET_CODES = {"power-on": 1, "brown-out": 1, "hard": 2, "panic": 2, "wdt": 3, "deepsleep": 4, "soft": 5}
_ROM = {  # what the ESP32's ROM bootloader prints on UART0 after each kind of reset
    "power-on": "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "brown-out": "rst:0xf (RTCWDT_BROWN_OUT_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "hard": "rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "panic": "rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "wdt": "rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "deepsleep": "rst:0x5 (DEEPSLEEP_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
}


def default_wiring(board: str = "esp32-devkitc") -> dict:
    """The sensor's wires on a board as the README's wiring table (and boards/<board>.json) has them."""
    cfg = json.loads((paths.BOARDS / f"{board}.json").read_text())
    return {"sda": cfg["i2c"]["sda"], "scl": cfg["i2c"]["scl"], "int": cfg["sensor"].get("int_pin"),
            "platform": cfg["platform"]}


@dataclass
class Boot:
    """One run between two resets."""

    n: int
    cause: str  # power-on, brown-out, hard, panic, wdt, deepsleep, soft
    repl_mode: str
    started: float  # host monotonic s
    ended: float | None = None
    end: str | None = None  # what ended it: the next boot's cause, or "power-off"
    files_ran: dict = field(default_factory=dict)  # boot.py / main.py -> finished without an exception
    overflowed: int = 0  # samples the sensor lost to a full FIFO during this run
    produced: int = 0

    @property
    def reset_cause(self) -> int:
        return RESET_CODES[self.cause]


class BoardError(RuntimeError):
    pass


class Board:
    def __init__(self, workdir: Path, flash: Path | None = None, *, board: str = "esp32-devkitc",
                 wiring: dict | None = None, sensor: dict | None | bool = True, build: str | None = None,
                 heapsize: str | None = None, unique_id: bytes | None = None,
                 rtc_at_power_on: float = EPOCH_2000, ticks_at_boot_ms: int = 0, rate: float = 1.0,
                 handshake_s: float = 0.0, ap: AccessPoint | None = None, serial: str = "pty",
                 boot_delay_s: float = 0.2, dns: dict | None = None, dns_timeout_s: float = 5.0,
                 flash_size: int = DEFAULT_SIZE, reports_mpy: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.flash = Path(flash) if flash else self.workdir / "flash.img"
        if not self.flash.exists():
            erase(self.flash, flash_size)
        w = dict(wiring) if wiring else default_wiring(board)
        self.platform = w.pop("platform", "esp32")
        self.wiring = w
        if sensor is True:
            sensor = {"address": 0x57, "source": {"kind": "synthetic"}}
        self.sensor = sensor or None
        self.build = build or mprun._default_build or "esp32like"
        # mbedTLS lives in the MicroPython heap here (on an ESP32 it uses the IDF heap), and the 64-bit build's
        # objects are twice the size: hence more than an ESP32's ~110 KB.
        self.heapsize = heapsize or ("512K" if self.build == "stock" else "256K")
        self.unique_id = unique_id or bytes.fromhex("240ac4") + secrets.token_bytes(3)
        self.rtc_at_power_on = rtc_at_power_on
        self.ticks_at_boot_ms = ticks_at_boot_ms
        self.rate = rate
        self.handshake_s = handshake_s
        self.ap = ap or AccessPoint()
        self.dns = dns or {}  # host -> {"ip": "127.0.0.2"} and/or {"fail": True} and/or {"delay_s": s}
        self.dns_timeout_s = dns_timeout_s  # how long lwIP's getaddrinfo blocks when no DNS server answers
        self.boot_delay_s = boot_delay_s
        # An older firmware, as far as sys.implementation._mpy tells (deploy's version check); None: the binary's.
        self.reports_mpy = reports_mpy
        self._cut_after: int | None = None
        self.clock = BoardClock(self.workdir / "clock")
        self.lock = threading.RLock()
        self.station = Station(self.ap, self._idf_log)
        self.boot_held = False
        self.bus_fault: int | None = None
        self.finger_on = True
        self.saturate = False
        self.boots: list[Boot] = []
        self.wdt_resets = 0
        self.relays: dict[tuple[str, int], Relay] = {}
        self.resolved: list[tuple[str, int]] = []
        self._out = bytearray()
        self._out_cond = threading.Condition()
        self._cr = False
        self._wdt: dict | None = None
        self._rtc_memory = b""
        self._proc: subprocess.Popen | None = None
        self._token = ""
        self._soft_mode: str | None = None
        self._action: tuple | None = None
        self._action_cond = threading.Condition()
        self._pending_input = bytearray()
        self._interruptible = False
        self._raw_repl = False
        self.input_bytes = 0  # bytes the host sent on the serial line
        self.idf_log: list[str] = []
        self._link_action: str | None = None
        self._sleep_ms = 0
        self._closing = False
        self._powered = False
        self._binary = mprun.micropython_binary(self.build)
        self._shim = shim.library(shim.binary_bits(self._binary))
        self._ctl = socket.socket()
        self._ctl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ctl.bind(("127.0.0.1", 0))
        self._ctl.listen(4)
        self._ctl.settimeout(0.2)
        if serial == "pty":
            self.port = PtyPort(self.workdir / "tty", self._on_host_input)
        elif serial == "tcp":
            self.port = TcpPort(self._on_host_input)
        else:
            raise ValueError(f"serial must be 'pty' or 'tcp', not {serial!r}")
        threading.Thread(target=self._accept_links, daemon=True).start()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)
        self._supervisor.start()

    # ---- the test's side ----------------------------------------------------------------------------------

    def __enter__(self) -> Board:
        self.power_on()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def url(self) -> str:
        """What mpremote / pyserial connects to: the pty's path or socket://127.0.0.1:PORT."""
        return self.port.url

    def power_on(self, cause: str = "power-on") -> None:
        self._request(("on", cause))

    def power_off(self) -> None:
        self._request(("off",))

    def power_cycle(self, off_s: float = 0.0) -> None:
        self._request(("off",))
        time.sleep(off_s)
        self._request(("on", "power-on"))

    def brown_out(self) -> None:
        self._request(("reset", "brown-out"))

    def press_reset(self) -> None:
        """The EN button: the ESP32 restarts as after power-on."""
        self._request(("reset", "power-on"))

    def hold_boot(self, held: bool = True) -> None:
        self.boot_held = held

    def cut_serial(self) -> None:
        """Pull the USB cable: the host tool's connection fails; the board keeps running."""
        self.port.cut()

    def cut_serial_after(self, nbytes: int) -> None:
        """Pull the cable once the host has sent `nbytes` more bytes through the port."""
        self._cut_after = nbytes

    @property
    def mpy_arch(self) -> str:
        """The native code this board's MicroPython loads (what deploy --arch must say)."""
        return "x86" if shim.binary_bits(self._binary) == 32 else "x64"

    def exec(self, code: str, timeout: float = 30) -> str:
        """Run code in the board's raw REPL, as `mpremote resume exec` does (a running main.py is interrupted);
        returns its output; raises BoardError with the board's traceback. The REPL is left in friendly mode."""
        m = self.mark()
        self.write_serial(b"\r\x03")
        self.write_serial(b"\r\x01")
        self.expect(r"raw REPL; CTRL-B to exit\r\n>", timeout, since=m)
        m = self.mark()
        self.write_serial(code.encode() + b"\x04")
        got = self.expect(rb"OK(.*?)\x04(.*?)\x04>", timeout, since=m, flags=re.S)
        self.write_serial(b"\x02")
        out, err = (g.decode("utf-8", "replace").replace("\r\n", "\n") for g in got.groups())
        if err:
            raise BoardError(f"board double: the code raised:\n{err}")
        return out

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.clock.set_rate(rate)

    def close(self) -> None:
        self._closing = True
        self._request(("off",))
        self._supervisor.join(10)
        for r in self.relays.values():
            r.close()
        self.port.close()
        self._ctl.close()

    def _request(self, action: tuple) -> None:
        with self._action_cond:
            self._action = action
            self._action_cond.notify_all()
        # wait until the supervisor took it, so calls stay in order
        deadline = time.monotonic() + 10
        with self._action_cond:
            while self._action is action and time.monotonic() < deadline:
                self._action_cond.wait(0.05)

    # ---- what a test reads -----------------------------------------------------------------------------------

    @property
    def output(self) -> str:
        """Everything the board wrote to its serial line since the Board was made."""
        with self._out_cond:
            return bytes(self._out).decode("utf-8", "replace")

    def mark(self) -> int:
        """A position in the serial output, for expect(since=...)."""
        with self._out_cond:
            return len(self._out)

    def expect(self, pattern: str | bytes, timeout: float = 30, since: int = 0, flags: int = 0) -> re.Match:
        """Wait until the serial output after `since` matches the regex; the match (on the whole output)."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern, flags)
        deadline = time.monotonic() + timeout
        with self._out_cond:
            while True:
                m = rx.search(self._out, since)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = bytes(self._out[-3000:]).decode("utf-8", "replace")
                    raise AssertionError(f"board double: no {pattern!r} on the serial line within {timeout} s; "
                                         f"boots {[(b.cause, b.end) for b in self.boots]}; output ends:\n{tail}")
                self._out_cond.wait(min(left, 0.2))

    def wait_boot(self, n: int, timeout: float = 30) -> Boot:
        """The n-th run (1 = the first), once it started."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.boots) >= n:
                    return self.boots[n - 1]
            time.sleep(0.05)
        raise AssertionError(f"board double: boot {n} did not happen within {timeout} s; "
                             f"boots {[(b.cause, b.end) for b in self.boots]}\n{self.output[-3000:]}")

    @property
    def sensor_overflows(self) -> int:
        """Samples the sensor lost to a full FIFO, over every run so far (the chip's overflow counter, summed
        and never saturating): the truth about whether the firmware drained the FIFO in time."""
        with self.lock:
            return sum(b.overflowed for b in self.boots)

    def board_time(self) -> float:
        """The board's RTC now (unix seconds)."""
        return self.clock.realtime()

    def ticks_ms(self) -> int:
        return self.clock.ticks_ms()

    # ---- serial line ----------------------------------------------------------------------------------------

    def write_serial(self, data: bytes) -> None:
        """Type on the serial line without a port (a test's shortcut)."""
        self._deliver(data)

    def _on_host_input(self, data: bytes) -> None:
        if self._cut_after is not None:
            if len(data) >= self._cut_after:
                data = data[:self._cut_after]
                self._cut_after = None
                self._deliver(data)
                self.port.cut()
                return
            self._cut_after -= len(data)
        self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        self.input_bytes += len(data)
        # Ctrl-C is the UART's interrupt character: it never reaches stdin, it raises KeyboardInterrupt.
        parts = data.split(b"\x03")
        for i, part in enumerate(parts):
            if part:
                self._to_board(part)
            if i < len(parts) - 1:
                proc = self._proc
                if not self._interruptible:
                    self._to_board(b"\x03")  # interrupts are off while the board starts: a Ctrl-C is a byte
                elif proc is not None and proc.poll() is None:
                    try:
                        os.kill(proc.pid, signal.SIGINT)
                    except ProcessLookupError:
                        pass

    def _to_board(self, data: bytes) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None or proc.stdin is None:
            if self._soft_mode is not None or proc is not None:
                self._pending_input += data  # a soft reset in progress: the UART keeps what arrives
            return
        try:
            os.write(proc.stdin.fileno(), data)
        except (BlockingIOError, BrokenPipeError, OSError):
            self._pending_input += data

    def _emit(self, data: bytes) -> None:
        """Board output: \\n becomes \\r\\n as in MicroPython's cooked stdout on a board."""
        outb = bytearray()
        with self._out_cond:
            for b in data:
                if b == 10 and not self._cr:
                    outb += b"\r"
                outb.append(b)
                self._cr = b == 13
            self._out += outb
            self._out_cond.notify_all()
        self.port.write(bytes(outb))

    def _idf_log(self, line: str) -> None:
        """An ESP-IDF log line (Wi-Fi driver, task watchdog). The ESP32 port silences them while the REPL is in
        raw mode (main.c: esp_log_set_vprintf(vprintf_null)); idf_log keeps them all for tests."""
        self.idf_log.append(line)
        if not self._raw_repl:
            self._emit((line + "\n").encode())

    # ---- runs and resets -------------------------------------------------------------------------------------

    def _board_ms(self) -> int:
        return self.clock.ticks_ms()

    def _prepare(self, cause: str) -> None:
        """Reset the parts that this kind of reset resets."""
        if cause == "soft":
            return
        self.clock.power_on(self.rtc_at_power_on, self.ticks_at_boot_ms, self.rate)
        with self.lock:
            self._wdt = None
            self.station.reset()
            if cause in ("power-on", "brown-out"):
                self._rtc_memory = b""
        self._soft_mode = None
        self._pending_input = bytearray()  # what arrived during a hard reset is lost

    def _spawn(self, cause: str) -> Boot:
        mode = self._soft_mode or "friendly"
        self._token = secrets.token_hex(8)
        run_file = self.workdir / "run.json"
        run_file.write_text(json.dumps({
            "link_port": self._ctl.getsockname()[1], "token": self._token, "reset_cause": RESET_CODES[cause],
            "repl_mode": mode, "platform": self.platform, "wiring": self.wiring, "sensor": self.sensor,
            "unique_id": list(self.unique_id), "flash": str(self.flash.resolve()),
            "firmware_dir": str(paths.FIRMWARE), "reports_mpy": self.reports_mpy}))
        env = dict(os.environ, MICROPYPATH=f".frozen:{MP_DIR}", OXILINK_BOARD_RUN=str(run_file),
                   OXILINK_CLOCK_FILE=str(self.clock.path), LD_PRELOAD=str(self._shim), TZ="UTC")
        cmd = [self._binary] + (["-X", f"heapsize={self.heapsize}"] if self.heapsize else []) + [
            str(MP_DIR / "_board.py")]
        boot = Boot(len(self.boots) + 1, cause, mode, time.monotonic())
        self._interruptible = False
        self._raw_repl = False
        with self.lock:
            self.boots.append(boot)
        self._proc = subprocess.Popen(cmd, env=env, cwd=self.workdir, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        os.set_blocking(self._proc.stdin.fileno(), False)
        threading.Thread(target=self._pump_output, args=(self._proc,), daemon=True).start()
        self._soft_mode = None
        if self._pending_input:
            data, self._pending_input = bytes(self._pending_input), bytearray()
            self._to_board(data)
        return boot

    def _pump_output(self, proc: subprocess.Popen) -> None:
        fd = proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                break
            if not data:
                break
            self._emit(data)

    def _stop_proc(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            proc.wait(10)
            if proc.stdout:
                time.sleep(0.02)  # let the output pump drain what the process wrote last
        self._proc = None

    def _take_action(self):
        with self._action_cond:
            a = self._action
            self._action = None
            self._action_cond.notify_all()
            return a

    def _supervise(self) -> None:
        cause: str | None = None
        while True:
            if cause is None:  # off: wait to be powered on
                self._powered = False
                with self._action_cond:
                    while self._action is None:
                        if self._closing:
                            return
                        self._action_cond.wait(0.2)
                a = self._take_action()
                if self._closing or a[0] == "off":
                    if self._closing:
                        return
                    continue
                cause = a[1]
            self._powered = True
            self._prepare(cause)
            if cause != "soft":
                self._emit(f"\nets Jul 29 2019 12:21:46\n\n{_ROM[cause]}\n".encode())
                time.sleep(self.boot_delay_s)
            boot = self._spawn(cause)
            cause = self._watch(boot)

    def _watch(self, boot: Boot) -> str | None:
        """Wait for the end of this run; the cause of the next one (None: powered off)."""
        proc = self._proc
        while True:
            a = self._take_action()
            if a is not None:
                self._stop_proc()
                if a[0] == "off" or self._closing:
                    return self._ended(boot, "power-off", None)
                return self._ended(boot, a[1], a[1])
            if self._link_action is not None:
                a, self._link_action = self._link_action, None
                self._stop_proc()
                return self._ended(boot, a, a)
            if self._wdt_expired():
                self._stop_proc()
                self.wdt_resets += 1
                self._idf_log(f"E ({self._board_ms()}) task_wdt: Task watchdog got triggered. The following "
                              "tasks/users did not reset the watchdog in time:")
                self._idf_log(f"E ({self._board_ms()}) task_wdt:  - mpy_machine_wdt")
                return self._ended(boot, "wdt", "wdt")
            code = proc.poll()
            if code is not None:
                time.sleep(0.05)  # the soft_reset event may still be on its way
                if self._link_action is not None:
                    continue
                self._stop_proc()
                if self._soft_mode is not None:
                    return self._ended(boot, "soft", "soft")
                self._emit(f"\nGuru Meditation Error: the MicroPython process exited ({code})\n".encode())
                return self._ended(boot, "panic", "panic")
            time.sleep(0.02)

    def _ended(self, boot: Boot, end: str, nxt: str | None) -> str | None:
        with self.lock:
            boot.ended = time.monotonic()
            boot.end = end
        if nxt == "deepsleep":
            time.sleep(self._sleep_ms / 1000 / self.rate if self._sleep_ms else 0)
        return nxt

    def _wdt_expired(self) -> bool:
        with self.lock:
            w = self._wdt
            if w is None:
                return False
            return self._board_ms() - w["last"] > w["timeout"]

    # ---- the board process's requests (mp/_link.py) -----------------------------------------------------------

    def _accept_links(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._ctl.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve_link, args=(conn,), daemon=True).start()

    def _serve_link(self, conn: socket.socket) -> None:
        f = conn.makefile("rwb")
        token = None
        try:
            for line in f:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                op = msg.get("op")
                if op == "hello":
                    token = msg.get("token")
                    continue
                if token != self._token:
                    return  # a run that has ended
                reply = self._handle(op, msg)
                if "id" in msg and reply is not None:
                    reply["id"] = msg["id"]
                    f.write((json.dumps(reply) + "\n").encode())
                    f.flush()
        except OSError:
            pass
        finally:
            conn.close()

    def _handle(self, op: str, m: dict) -> dict | None:
        now = self._board_ms()
        boot = self.boots[-1] if self.boots else None
        with self.lock:
            if op == "wdt_feed":
                if self._wdt is not None:
                    self._wdt["last"] = now
                return None
            if op == "wdt_start":
                self._wdt = {"timeout": int(m["timeout_ms"]), "last": now}
                return {}
            if op == "soft_reset":
                self._soft_mode = m.get("mode", "friendly")
                self._interruptible = False
                return None
            if op == "repl":
                self._raw_repl = m["mode"] == "raw"
                return None
            if op == "interruptible":
                self._interruptible = True
                return None
            if op == "ran" and boot is not None:
                boot.files_ran[m["file"]] = m["ok"]
                return None
            if op in ("flash",):
                return None
            if op == "reset":
                self._sleep_ms = m.get("after_ms") or 0
                self._link_action = m.get("cause", "hard")
                return None  # no reply: the process is stopped
            if op == "button":
                return {"held": self.boot_held}
            if op == "rtc_memory":
                if "data" in m:
                    self._rtc_memory = bytes(m["data"])
                    return {}
                return {"data": list(self._rtc_memory)}
            if op == "sensor" and boot is not None:
                boot.overflowed, boot.produced = m["overflowed"], m["produced"]
                return {"bus_fault": self.bus_fault, "finger_on": self.finger_on, "saturate": self.saturate}
            st = self.station
            if op == "wlan_active":
                if m["iface"] != 0:
                    return {"active": False}
                if "active" in m:
                    st.set_active(now, m["active"])
                return {"active": st.active}
            if op == "wlan_connect":
                err = st.connect(now, m.get("ssid"), m.get("key"))
                return {"esp_error": err} if err else {}
            if op == "wlan_disconnect":
                st.disconnect(now)
                return {}
            if op == "wlan_status":
                return {"status": st.status(now), "ssid": st.ssid if st.connected else None}
            if op == "wlan_rssi":
                if not st.is_up(now):
                    return {"esp_error": "Wifi Not Connected"}
                return {"rssi": self.ap.rssi}
            if op == "wlan_ifconfig":
                if st.is_up(now):
                    return {"ifconfig": ["127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1"]}
                return {"ifconfig": ["0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0"]}
            if op == "wlan_scan":
                return {"aps": [[self.ap.ssid, self.ap.rssi]] if self.ap.present and st.active else []}
        if op == "resolve":
            return self._resolve(m["host"], int(m["port"]))
        return {"error": 22}

    def _resolve(self, host: str, port: int) -> dict:
        """DNS through the board's Wi-Fi; the answer is a relay to the real destination. The double never asks
        the host's resolver: it knows localhost, 127.x literals and the names a test scripts (dns={name: {"ip":
        "127.0.0.2"}}); anything else fails as an unanswered lookup does (tests talk only to loopback)."""
        script = self.dns.get(host, {})
        if not self.station.is_up(self._board_ms()):
            time.sleep(self.dns_timeout_s / self.rate)
            return {"gai_error": -202}
        if script.get("delay_s"):
            time.sleep(script["delay_s"] / self.rate)
        if script.get("fail"):
            return {"gai_error": -202}
        if "ip" in script:
            ip = script["ip"]
        elif host == "localhost":
            ip = "127.0.0.1"
        elif host.startswith("127.") and host.replace(".", "").isdigit():
            ip = host
        else:
            self._idf_log(f"board double: no DNS answer for {host!r} (only localhost, 127.x and scripted names)")
            time.sleep(self.dns_timeout_s / self.rate)
            return {"gai_error": -202}
        if not ip.startswith("127."):
            return {"gai_error": -202}
        dest = (ip, port)
        with self.lock:
            self.resolved.append(dest)
            relay = self.relays.get(dest)
            if relay is None:
                relay = self.relays[dest] = Relay(dest, self._wifi_up, lambda: self.handshake_s / self.rate)
        return {"ip": "127.0.0.1", "port": relay.port}

    def _wifi_up(self) -> bool:
        with self.lock:
            return self._powered and self._proc is not None and self.station.is_up(self._board_ms())
