# A network.WLAN(STA_IF) stand-in with the ESP32 port's status() semantics (ports/esp32/network_wlan.c,
# v1.28), driven by a script of join outcomes on an injected clock. Not the board double: a small fake for
# unit-level tests of wifi.Station and the transport.
#
# outcomes: one per connect() call (the last one repeats):
#   "ok"              connected (STAT_GOT_IP) join_ms after connect()
#   "wrong_password"  the driver reports AUTH_FAIL: status() 202 (STAT_WRONG_PASSWORD) from join_ms on
#   "no_ap"           no AP with the SSID: status() 201 (STAT_NO_AP_FOUND) from join_ms on
#   "silent"          never gets an IP, the driver keeps retrying: status() stays STAT_CONNECTING
#   ("drop", ms)      connected, then the AP vanishes ms later (reason BEACON_TIMEOUT, the driver retries)
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
_REASON_ASSOC_LEAVE = 8
_REASON_BEACON_TIMEOUT = 200
_REASON_NO_AP_FOUND = 201
_REASON_AUTH_FAIL = 202


class FakeWLAN:
    def __init__(self, clock, outcomes=("ok",), dns="127.0.0.1", join_ms=800, rssi=-58):
        self.clock = clock
        self.outcomes = list(outcomes)
        self.dns = dns
        self.join_ms = join_ms
        self.rssi_dbm = rssi
        self.connects = []  # (ssid, key) per connect() call
        self.disconnects = 0
        self._active = False
        self._requested = False
        self._connected = False
        self._reason = 0
        self._outcome = None
        self._t = 0

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
        return self._active

    def connect(self, ssid, key):
        self.connects.append((ssid, key))
        self._outcome = self.outcomes[min(len(self.connects), len(self.outcomes)) - 1]
        self._requested = True
        self._connected = False
        self._reason = 0
        self._t = self.clock.ticks_ms()

    def disconnect(self):
        self.disconnects += 1
        self._requested = False
        self._connected = False
        self._reason = _REASON_ASSOC_LEAVE

    def _update(self):
        if not self._requested:
            return
        elapsed = self.clock.ticks_diff(self.clock.ticks_ms(), self._t)
        o = self._outcome
        if self._connected:
            if type(o) is tuple and elapsed >= self.join_ms + o[1]:
                self._connected = False
                self._reason = _REASON_BEACON_TIMEOUT
                self._outcome = "silent"  # the AP is gone: the driver's retries find nothing
            return
        if elapsed < self.join_ms:
            return
        if o == "ok" or type(o) is tuple:
            if self._reason == 0:
                self._connected = True
        elif o == "wrong_password":
            self._reason = _REASON_AUTH_FAIL
        elif o == "no_ap":
            self._reason = _REASON_NO_AP_FOUND

    def isconnected(self):
        self._update()
        return self._connected

    def status(self, param=None):
        self._update()
        if param == "rssi":
            if not self._connected:
                raise OSError(-1)
            return self.rssi_dbm
        if param is not None:
            raise ValueError("unknown status param")
        # network_wlan_status(): the order of its checks
        if self._connected:
            return STAT_GOT_IP
        if self._reason in (_REASON_NO_AP_FOUND, _REASON_AUTH_FAIL):
            return self._reason
        if self._reason == _REASON_ASSOC_LEAVE:
            return STAT_IDLE
        if self._requested:
            return STAT_CONNECTING
        return STAT_IDLE if self._reason == 0 else self._reason

    def ifconfig(self):
        return ("10.0.0.23", "255.255.255.0", "10.0.0.1", self.dns) if self._connected else \
            ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
