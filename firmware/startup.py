# Boot policy, kept out of main.py so it runs (and is tested) on the unix port:
# - load the board file, secrets and certificates with errors that name the file and field;
# - count boots that never reached a healthy state; after MAX_CRASHES in a row (or with the safe-mode flag
#   file, or the boot button held) the app is not started and the REPL stays reachable.
import json

import boardconf
import devicekeys

MAX_CRASHES = 3
HEALTHY_AFTER_MS = 60000  # a boot that ran this long without trouble resets the crash count
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
    """Boots in a row that did not reach HEALTHY_AFTER_MS. Written before the app starts, so a crash at any
    point (even a hard fault) still counts."""

    def __init__(self, path="crashes"):
        self.path = path
        try:
            with open(path) as f:
                self.count = int(f.read() or 0)
        except (OSError, ValueError):
            self.count = 0

    def _write(self):
        with open(self.path, "w") as f:
            f.write(str(self.count))

    def boot(self):
        self.count += 1
        self._write()
        return self.count

    def healthy(self):
        if self.count:
            self.count = 0
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
    if crashes > MAX_CRASHES:
        return "%d boots in a row failed before running %d s" % (crashes - 1, HEALTHY_AFTER_MS // 1000)
    return None
