"""The board's Wi-Fi: a scripted access point and the ESP32 station driver that talks to it.

The station follows ports/esp32/network_wlan.c (v1.28) and the ESP-IDF driver under it:
- connect() starts an attempt that takes `connect_s` (scan, association, DHCP); it ends in GOT_IP, or in a
  disconnect with an ESP-IDF reason: 201 NO_AP_FOUND (no such SSID), 202 AUTH_FAIL (wrong password);
- after a failure or a lost link the driver tries again by itself, for ever (reconnects unlimited), and
  connect() while it is still trying fails with "Wifi Internal Error" (MicroPython issue #17661);
- status() is what network_wlan_status() returns: STAT_GOT_IP (1010) when connected; the reason for
  201/202/210-212; STAT_IDLE (1000) after disconnect(); otherwise STAT_CONNECTING (1001) while trying (after a
  beacon timeout, 200, too); STAT_IDLE when never asked to connect.
Time is the board's (its monotonic clock in ms), so a faster board clock makes Wi-Fi faster too.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
REASON_ASSOC_LEAVE = 8
REASON_BEACON_TIMEOUT = 200
REASON_NO_AP_FOUND = 201
REASON_AUTH_FAIL = 202
REASON_ASSOC_FAIL = 203
REASON_HANDSHAKE_TIMEOUT = 204
_REASONS_SHOWN = (REASON_NO_AP_FOUND, REASON_AUTH_FAIL, 210, 211, 212)


@dataclass
class AccessPoint:
    """The site's access point. A test may change any field while the board runs (under board.lock)."""

    ssid: str = "oxilink-test"
    password: str = "correct horse battery"
    rssi: int = -58
    present: bool = True  # False: switched off / out of range
    connect_s: float = 1.5  # scan + association + DHCP
    drop_after_s: float | None = None  # the link drops this long after each connect (beacon timeout)
    down_for_s: float = 5.0  # ... and the AP is gone for this long


class Station:
    def __init__(self, ap: AccessPoint, log):
        self.ap = ap
        self.log = log  # callable(str): a line on the board's serial console (ESP-IDF logs there)
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Hard reset: the radio is off and forgets everything."""
        self.active = False
        self.requested = False
        self.connected = False
        self.reason = 0
        self.ssid = self.key = None
        self.attempt_ms = 0
        self.connected_ms = 0
        self.ap_back_ms: int | None = None
        self.history: list[tuple[int, str]] = []

    def _note(self, now: int, what: str) -> None:
        self.history.append((now, what))

    def _ap_visible(self, now: int) -> bool:
        if self.ap_back_ms is not None and now < self.ap_back_ms:
            return False
        self.ap_back_ms = None
        return self.ap.present

    def step(self, now: int) -> None:
        """Advance the driver to board time `now` (ms since boot)."""
        ap = self.ap
        if self.connected:
            lost = not self._ap_visible(now)
            if ap.drop_after_s is not None and now - self.connected_ms >= ap.drop_after_s * 1000:
                self.ap_back_ms = now + int(ap.down_for_s * 1000)
                lost = True
            if lost:
                self.connected = False
                self.reason = REASON_BEACON_TIMEOUT
                self._note(now, "lost (beacon timeout)")
                self.log(f"I ({now}) wifi:STA_DISCONNECTED, reason:{REASON_BEACON_TIMEOUT}:beacon timeout")
                self.attempt_ms = now
            return
        if not (self.active and self.requested):
            return
        while now - self.attempt_ms >= ap.connect_s * 1000:
            end = self.attempt_ms + int(ap.connect_s * 1000)
            if not self._ap_visible(end) or self.ssid != ap.ssid:
                self.reason = REASON_NO_AP_FOUND
                msg = "no AP found"
            elif self.key != ap.password:
                self.reason = REASON_AUTH_FAIL
                msg = "authentication failed"
            else:
                self.connected = True
                self.reason = 0
                self.connected_ms = end
                self._note(end, "got ip")
                self.log(f"I ({end}) network: GOT_IP")
                return
            if not self.history or self.history[-1][1] != msg:
                self._note(end, msg)
                self.log(f"I ({end}) wifi:STA_DISCONNECTED, reason:{self.reason}:{msg}")
            self.attempt_ms = end  # the driver tries again at once

    # ---- network.WLAN calls ---------------------------------------------------------------------------------

    def set_active(self, now: int, on: bool) -> None:
        self.step(now)
        if not on:
            self.reset()
        self.active = on

    def connect(self, now: int, ssid: str | None, key: str | None) -> str | None:
        """None, or the OSError text the ESP32 port raises."""
        self.step(now)
        if not self.active:
            return "Wifi Not Started"
        if self.requested and not self.connected:
            self.log(f"E ({now}) wifi:sta is connecting, return error")
            return "Wifi Internal Error"
        if ssid is not None:
            self.ssid, self.key = ssid, key
        self.requested = True
        self.connected = False
        self.attempt_ms = now
        self._note(now, "connect")
        return None

    def disconnect(self, now: int) -> None:
        self.step(now)
        self.requested = False
        if self.connected:
            self.connected = False
        self.reason = REASON_ASSOC_LEAVE

    def status(self, now: int) -> int:
        self.step(now)
        if self.connected:
            return STAT_GOT_IP
        if self.reason in _REASONS_SHOWN:
            return self.reason
        if self.reason == REASON_ASSOC_LEAVE:
            return STAT_IDLE
        if self.requested:
            return STAT_CONNECTING
        if self.reason == 0:
            return STAT_IDLE
        return self.reason

    def is_up(self, now: int) -> bool:
        self.step(now)
        return self.connected
