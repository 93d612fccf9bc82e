# Boot policy, kept out of main.py so it runs (and is tested) on the unix port:
# - load the board file, secrets and certificates with errors that name the file and field;
# - count crashes in a row: a watchdog reset, or an unhandled exception (main.py counts it before it resets).
#   Power-on, brown-out (it reads as power-on), the reset button, machine.reset() and soft resets never count;
#   an ESP32 panic reads as a hard reset like the button and cannot be counted. A run that stays up
#   HEALTHY_AFTER_MS clears the count. After MAX_CRASHES in a row, or with the BOOT button held, the app is
#   not started and the REPL stays reachable: safe mode;
# - safe mode leaves itself: after SAFE_MODE_IDLE_MS with no REPL activity the board resets and tries the app
#   once more (counted in `retries`; one more crash and it is back in safe mode). A file named safe_mode
#   keeps the board in safe mode until it is deleted.
import io
import json

import boardconf
import devicekeys

MAX_CRASHES = 3
CRASH_CAUSES = ("watchdog",)  # reset causes (hw_esp32.reset_cause()) that are crashes
HEALTHY_AFTER_MS = 60000  # a boot that ran this long without trouble resets the crash count
SAFE_MODE_IDLE_MS = 10 * 60 * 1000
CERT_FILES = ("device.key.der", "device.crt.der", "ca.der")


class StartupError(ValueError):
    pass


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        raise StartupError("%s: missing (deploy it with `make deploy`, made by `oxilink provision`)" % path)


def load_board(path="board.json"):
    return boardconf.load(path)  # BoardError (a ValueError) names the file and every bad field


def load_secrets(path="secrets.json"):
    """The device keys plus the network settings stored beside them: (keys, wifi_ssid, wifi_password, broker)."""
    keys = devicekeys.load(path)
    with open(path) as f:
        d = json.load(f)
    for name in ("wifi_ssid", "wifi_password", "broker"):
        if type(d.get(name, "")) is not str:
            raise devicekeys.SecretsError("%s: field '%s' must be a string" % (path, name), name)
    return keys, d.get("wifi_ssid", ""), d.get("wifi_password", ""), d.get("broker", "")


def load_certs(folder="certs"):
    """(key_der, cert_der, ca_der) for the TLS client context."""
    return tuple(_read(folder + "/" + name) for name in CERT_FILES)


def apply_broker(cfg, broker):
    """secrets.json's "host:port" (from provisioning) overrides the board file's mqtt host/port."""
    if not broker:
        return
    host, sep, port = broker.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StartupError("secrets.json: field 'broker' must be HOST:PORT, got %s" % json.dumps(broker))
    cfg["mqtt"]["host"] = host
    cfg["mqtt"]["port"] = int(port)


def time_server(cfg, path="secrets.json"):
    """The SNTP server: secrets.json's "ntp" (the site's, from provisioning) or the board file's time.ntp_server."""
    with open(path) as f:
        ntp = json.load(f).get("ntp", "")
    if type(ntp) is not str:
        raise StartupError("%s: field 'ntp' must be a string HOST or HOST:PORT" % path)
    return ntp or cfg["time"]["ntp_server"]


class CrashCounter:
    """Crashes in a row, kept in `path` (JSON) with the safe-mode retries and whether the user interrupted the
    app (Ctrl-C, mpremote): the watchdog keeps running after that, and the reset it causes is not a crash."""

    def __init__(self, path="crashes"):
        self.path = path
        self.count = 0
        self.retries = 0
        self.interrupted = False
        try:
            with open(path) as f:
                d = json.load(f)
            self.count = int(d.get("crashes", 0))
            self.retries = int(d.get("retries", 0))
            self.interrupted = d.get("interrupted") is True
        except (OSError, ValueError, TypeError, AttributeError):
            pass

    def _write(self):
        with open(self.path, "w") as f:
            json.dump({"crashes": self.count, "retries": self.retries, "interrupted": self.interrupted}, f)

    def boot(self, cause):
        """At every boot, with machine.reset_cause() in words; returns the crashes in a row so far."""
        if cause in CRASH_CAUSES and not self.interrupted:
            self.count += 1
            self._write()
        elif self.interrupted:
            self.interrupted = False
            self._write()
        return self.count

    def crashed(self):
        """The app died of an unhandled exception (main.py, before it resets the board)."""
        self.count += 1
        self._write()

    def user_interrupted(self):
        self.interrupted = True
        self._write()

    def healthy(self):
        if self.count:
            self.count = 0
            self._write()

    def retry_app(self):
        """Safe mode timed out: the next boot runs the app once more; one more crash brings safe mode back."""
        self.count = MAX_CRASHES - 1
        self.retries += 1
        self._write()


def safe_mode_reason(crashes, button_held=False, flag_path="safe_mode"):
    """Why the app must not start, or None."""
    if button_held:
        return "boot button held"
    try:
        open(flag_path).close()
        return "flag file %s present" % flag_path
    except OSError:
        pass
    if crashes >= MAX_CRASHES:
        return "%d crashes in a row (watchdog resets or unhandled exceptions)" % crashes
    return None


def stays(reason):
    """Safe mode for this reason lasts until the user ends it (the flag file); others time out."""
    return reason.startswith("flag file")


class SafeModeExit:
    """Ends safe mode after idle_ms without REPL activity by calling leave(). activity() is called for every
    console output (the REPL's echo and answers: see main.py); check() periodically (a machine.Timer)."""

    def __init__(self, clock, idle_ms, leave):
        self._clock = clock
        self.idle_ms = idle_ms
        self._leave = leave
        self._last = clock.ticks_ms()
        self.left = False

    def activity(self):
        self._last = self._clock.ticks_ms()

    def idle_ms_so_far(self):
        age = self._clock.ticks_diff(self._clock.ticks_ms(), self._last)
        return age if age >= 0 else self.idle_ms  # negative: over half a tick period ago

    def check(self):
        if not self.left and self.idle_ms_so_far() >= self.idle_ms:
            self.left = True
            self._leave()


class ConsoleWatch(io.IOBase):
    """A console stream for os.dupterm(): sees every byte the REPL prints (echo of typed input, answers to
    mpremote) and reports it as activity; it never supplies input."""

    def __init__(self, on_output):
        self._on_output = on_output

    def write(self, buf):
        self._on_output()
        return len(buf)

    def readinto(self, buf):
        return None

    def ioctl(self, req, arg):
        return 0
