# network on the board double: the ESP32 port's network.WLAN (ports/esp32/network_wlan.c, modnetwork_globals.h
# v1.28) over a Wi-Fi access point the launcher scripts (tools/oxilink/double/wifi.py: connected, wrong
# password, no AP, drop after N s). status() gives the port's codes: STAT_IDLE/CONNECTING/GOT_IP or the
# ESP-IDF disconnect reason (201 no AP, 202 wrong password, ...); the driver reconnects by itself after a
# failure, and connect() while it is still trying raises OSError("Wifi Internal Error"), as on a board.
# Host-side only. Functions are native code, so a traceback stops at the caller, as with the C module.
import micropython

import _link

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_CONNECT_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
STAT_NO_AP_FOUND_W_COMPATIBLE_SECURITY = 210
STAT_NO_AP_FOUND_IN_AUTHMODE_THRESHOLD = 211
STAT_NO_AP_FOUND_IN_RSSI_THRESHOLD = 212
AUTH_OPEN = 0
AUTH_WEP = 1
AUTH_WPA_PSK = 2
AUTH_WPA2_PSK = 3
AUTH_WPA_WPA2_PSK = 4
AUTH_WPA2_ENTERPRISE = 5
AUTH_WPA3_PSK = 6
AUTH_WPA2_WPA3_PSK = 7
MODE_11B = 1
MODE_11G = 2
MODE_11N = 4

_hostname = ["mpy-esp32"]


@micropython.native  # C on a board: no traceback entry


def _call(op, **args):
    r = _link.get().call(op, **args)
    err = r.get("esp_error")
    if err:
        raise OSError(err)
    return r


class WLAN:
    IF_STA = 0
    IF_AP = 1
    PM_NONE = 0
    PM_PERFORMANCE = 1
    PM_POWERSAVE = 2
    _instances = {}

    def __new__(cls, interface_id=STA_IF):
        if interface_id not in (STA_IF, AP_IF):
            raise ValueError("invalid WLAN interface identifier")
        self = cls._instances.get(interface_id)
        if self is None:
            self = object.__new__(cls)
            self._if = interface_id
            cls._instances[interface_id] = self
        return self

    def __init__(self, interface_id=STA_IF):
        pass

    @micropython.native  # C on a board: no traceback entry

    def active(self, is_active=None):
        if is_active is None:
            return _call("wlan_active", iface=self._if)["active"]
        _call("wlan_active", iface=self._if, active=bool(is_active))
        return bool(is_active)

    @micropython.native  # C on a board: no traceback entry

    def connect(self, ssid=None, key=None, *, bssid=None):
        if self._if != STA_IF:
            raise OSError("STA required")
        _call("wlan_connect", ssid=ssid, key=key)

    @micropython.native  # C on a board: no traceback entry

    def disconnect(self):
        _call("wlan_disconnect")

    @micropython.native  # C on a board: no traceback entry

    def isconnected(self):
        if self._if != STA_IF:
            return False
        return _call("wlan_status")["status"] == STAT_GOT_IP

    @micropython.native  # C on a board: no traceback entry

    def status(self, param=None):
        if param is None:
            return _call("wlan_status")["status"] if self._if == STA_IF else None
        if param == "rssi":
            if self._if != STA_IF:
                raise OSError("STA required")
            return _call("wlan_rssi")["rssi"]
        if param == "stations":
            return []
        raise ValueError("unknown status param")

    @micropython.native  # C on a board: no traceback entry

    def ifconfig(self, cfg=None):
        if cfg is not None:
            return None
        return tuple(_call("wlan_ifconfig")["ifconfig"])

    @micropython.native  # C on a board: no traceback entry

    def ipconfig(self, *args, **kw):
        ip, mask, gw, dns = self.ifconfig()
        if args and args[0] == "addr4":
            return (ip, mask)
        if args and args[0] == "gw4":
            return gw
        if args and args[0] == "dhcp4":
            return True
        return None

    @micropython.native  # C on a board: no traceback entry

    def config(self, *args, **kw):
        if kw:
            return None
        name = args[0] if args else None
        if name == "mac":
            import machine

            return machine.unique_id()
        if name in ("ssid", "essid"):
            return _call("wlan_status").get("ssid") or ""
        if name in ("hostname", "dhcp_hostname"):
            return _hostname[0]
        if name == "reconnects":
            return -1
        if name == "txpower":
            return 20
        if name == "channel":
            return 6
        raise ValueError("unknown config param")

    @micropython.native  # C on a board: no traceback entry

    def scan(self):
        return [(bytes(s, "utf-8"), b"\x02\x00\x00\x00\x00\x01", 6, rssi, AUTH_WPA2_PSK, False)
                for s, rssi in _call("wlan_scan")["aps"]]


def hostname(name=None):
    if name is None:
        return _hostname[0]
    _hostname[0] = name


def country(code=None):
    return "01" if code is None else None


def ipconfig(*args, **kw):
    if args and args[0] == "dns":
        return WLAN(STA_IF).ifconfig()[3]
    return None
