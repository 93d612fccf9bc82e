# Wi-Fi station supervision: joins without blocking, says once why it cannot join, and backs off.
#
# up() never waits. It starts a join, watches WLAN.status() for the driver's verdict, and after a failure
# stops the driver's own retry loop (disconnect()) and tries again after a capped exponential backoff, so the
# main loop keeps sampling and queueing meanwhile. The first failure of an outage, and any change of cause,
# is logged as one ERROR line naming the SSID (never the password) and the cause; joins that failed are
# counted in `failures` (the status report's wifi_failures).
#
# Status codes: MicroPython's esp32 port returns these from WLAN.status() (ports/esp32/network_wlan.c and
# modnetwork_globals.h, the same in v1.23 to v1.28): STAT_IDLE 1000, STAT_CONNECTING 1001, STAT_GOT_IP 1010,
# and the ESP-IDF disconnect reason for a failure. A wrong password reads as STAT_WRONG_PASSWORD (202, also
# given for CONNECTION_FAIL); a missing AP as STAT_NO_AP_FOUND (201, or 210-212 for an AP that is there but
# unusable). While the driver is still retrying some failures (BEACON_TIMEOUT 200, ASSOC_FAIL 203,
# HANDSHAKE_TIMEOUT 204) read as STAT_CONNECTING, so a join that has no IP after join_timeout_ms fails too.
import time

from backoff import Backoff

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

CAUSES = {
    STAT_BEACON_TIMEOUT: "AP stopped answering (beacon timeout)",
    STAT_NO_AP_FOUND: "no AP with this SSID in range (STAT_NO_AP_FOUND)",
    STAT_WRONG_PASSWORD: "wrong password (STAT_WRONG_PASSWORD)",
    STAT_ASSOC_FAIL: "the AP refused the association (STAT_ASSOC_FAIL)",
    STAT_HANDSHAKE_TIMEOUT: "WPA handshake timed out: wrong password? (STAT_HANDSHAKE_TIMEOUT)",
    205: "connection failed",
    210: "the AP's security mode is not supported",
    211: "the AP's security is weaker than the configured threshold",
    212: "the AP's signal is below the configured threshold",
}

_UP = 0
_IDLE = 1
_JOINING = 2
_WAITING = 3


class Station:
    def __init__(self, wlan, ssid, password, log=None, clock=time, join_timeout_ms=20000, backoff=None, dns_port=53):
        self._wlan = wlan
        self.dns_port = dns_port
        self.ssid = ssid
        self._password = password
        self.log = log
        self.clock = clock
        self.join_timeout_ms = join_timeout_ms
        self.backoff = backoff or Backoff(2000, 120000)
        self._state = _IDLE
        self._since = clock.ticks_ms()
        self._retry_at = self._since
        self._logged = None  # cause last logged in this outage
        self._outage_failures = 0
        self.failures = 0
        self.joins = 0  # join attempts started
        self.last_cause = None

    def up(self):
        wlan = self._wlan
        if wlan.isconnected():
            if self._state != _UP:
                self._joined()
            return True
        clock = self.clock
        now = clock.ticks_ms()
        state = self._state
        if state == _UP:
            # Link lost: the driver reconnects by itself; supervise that like a join of our own.
            state = self._state = _JOINING
            self._since = now
        if state == _JOINING:
            code = wlan.status()
            cause = CAUSES.get(code)
            waited = clock.ticks_diff(now, self._since)
            if cause is None:
                if 0 <= waited < self.join_timeout_ms:
                    return False
                cause = "no IP address after %d s (status %s)" % (self.join_timeout_ms // 1000, code)
            self._failed(cause, now)
            return False
        if state == _WAITING:
            wait = clock.ticks_diff(self._retry_at, now)
            if 0 < wait <= self.backoff.cap_ms:  # larger: a deadline that wrapped, i.e. long past
                return False
        elif wlan.status() == STAT_CONNECTING:
            # The driver is already trying (a join started before a soft reset): supervise it. connect() now
            # would fail ("Wifi Internal Error", MicroPython issue #17661).
            self._state = _JOINING
            self._since = now
            return False
        self.joins += 1
        self._state = _JOINING
        self._since = now
        try:
            wlan.connect(self.ssid, self._password)
        except OSError as e:
            self._failed("the driver refused to connect (%s)" % (e.args[0] if e.args else e), now)
        return False

    def _failed(self, cause, now):
        self.failures += 1
        self._outage_failures += 1
        self.last_cause = cause
        try:
            self._wlan.disconnect()  # stop the driver's retry loop: we retry on our own schedule
        except OSError:
            pass
        self._state = _WAITING
        self._retry_at = self.clock.ticks_add(now, self.backoff.next_ms())
        if self.log and cause != self._logged:
            self._logged = cause
            self.log.error("Wi-Fi: cannot join %r: %s; retrying with backoff, readings stay queued"
                           % (self.ssid, cause))

    def _joined(self):
        self._state = _UP
        self.backoff.reset()
        if self.log:
            if self._logged is not None:
                self.log.info("Wi-Fi: joined %r after %d failed attempts" % (self.ssid, self._outage_failures))
            elif self.joins <= 1:
                self.log.info("Wi-Fi: joined %r" % (self.ssid,))
        self._logged = None
        self._outage_failures = 0

    def rssi(self):
        try:
            return self._wlan.status("rssi")
        except (OSError, ValueError):
            return None

    def dns_server(self):
        """(address, port) of the DNS server the network handed out, or None."""
        try:
            dns = self._wlan.ifconfig()[3]
        except (OSError, IndexError):
            return None
        return (dns, self.dns_port) if dns and dns != "0.0.0.0" else None
