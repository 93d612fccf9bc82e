"""The board process's requests (mp/_link.py) and how the hardware answers them: the watchdog, resets, the BOOT
button, RTC memory, the sensor's counters and faults, Wi-Fi (wifi.py) and DNS (relays to the real servers,
relay.py). One JSON line per message over a loopback connection per run; a reply only to calls (with an id)."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import TYPE_CHECKING

from .dnsserver import DnsServer
from .relay import Relay

DNS_SERVER = "127.0.0.1"  # what WLAN.ifconfig()[3] reports once the board has an IP

if TYPE_CHECKING:
    from .board import Board


class BoardLink:
    def __init__(self, board: Board):
        self.board = board
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(4)
        self._srv.settimeout(0.2)
        self.port = self._srv.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._srv.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._srv.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        b = self.board
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
                if token != b._token:
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
        b = self.board
        now = b._board_ms()
        boot = b.boots[-1] if b.boots else None
        with b.lock:
            if op == "wdt_feed":
                if b._wdt is not None:
                    b._wdt["last"] = now
                return None
            if op == "wdt_start":
                b._wdt = {"timeout": int(m["timeout_ms"]), "last": now}
                return {}
            if op == "soft_reset":
                b._soft_mode = m.get("mode", "friendly")
                b._interruptible = False
                return None
            if op == "repl":
                b._raw_repl = m["mode"] == "raw"
                return None
            if op == "interruptible":
                b._interruptible = True
                return {}
            if op == "ran" and boot is not None:
                boot.files_ran[m["file"]] = m["ok"]
                return None
            if op in ("flash",):
                return None
            if op == "reset":
                b._sleep_ms = m.get("after_ms") or 0
                b._link_action = m.get("cause", "hard")
                return None  # no reply: the process is stopped
            if op == "button":
                return {"held": b.boot_held}
            if op == "rtc_memory":
                if "data" in m:
                    b._rtc_memory = bytes(m["data"])
                    return {}
                return {"data": list(b._rtc_memory)}
            if op == "sensor" and boot is not None:
                boot.overflowed, boot.produced = m["overflowed"], m["produced"]
                return {"bus_fault": b.bus_fault, "finger_on": b.finger_on, "saturate": b.saturate}
            st = b.station
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
                return {"rssi": b.ap.rssi}
            if op == "wlan_ifconfig":
                if st.is_up(now):
                    return {"ifconfig": ["127.0.0.1", "255.0.0.0", "127.0.0.1", DNS_SERVER]}
                return {"ifconfig": ["0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0"]}
            if op == "wlan_scan":
                return {"aps": [[b.ap.ssid, b.ap.rssi]] if b.ap.present and st.active else []}
        if op == "resolve":
            return self._resolve(m["host"], int(m["port"]))
        return {"error": 22}

    def _resolve(self, host: str, port: int) -> dict:
        b = self.board
        """DNS through the board's Wi-Fi; the answer is a relay to the real destination. The double never asks
        the host's resolver: it knows localhost, 127.x literals and the names a test scripts (dns={name: {"ip":
        "127.0.0.2"}}); anything else fails as an unanswered lookup does (tests talk only to loopback)."""
        if port == 53 and host == DNS_SERVER:
            # The firmware's own DNS client (firmware/resolver.py) querying the Wi-Fi's DNS server: a numeric
            # address needs no lookup; the queries go through a relay (dropped while Wi-Fi is down) to a server
            # that answers from the same script as getaddrinfo() below.
            if b._dns_server is None:
                b._dns_server = DnsServer(self._dns_answer)
            return self._relay(("127.0.0.1", b._dns_server.port))
        script = b.dns.get(host, {})
        if not b.station.is_up(b._board_ms()):
            time.sleep(b.dns_timeout_s / b.rate)
            return {"gai_error": -202}
        if script.get("delay_s"):
            time.sleep(script["delay_s"] / b.rate)
        if script.get("fail"):
            return {"gai_error": -202}
        if "ip" in script:
            ip = script["ip"]
        elif host == "localhost":
            ip = "127.0.0.1"
        elif host.startswith("127.") and host.replace(".", "").isdigit():
            ip = host
        else:
            b._idf_log(f"board double: no DNS answer for {host!r} (only localhost, 127.x and scripted names)")
            time.sleep(b.dns_timeout_s / b.rate)
            return {"gai_error": -202}
        if not ip.startswith("127."):
            return {"gai_error": -202}
        return self._relay((ip, port))

    def _relay(self, dest: tuple[str, int]) -> dict:
        b = self.board
        with b.lock:
            b.resolved.append(dest)
            relay = b.relays.get(dest)
            if relay is None:
                relay = b.relays[dest] = Relay(dest, self._wifi_up, lambda: b.handshake_s / b.rate)
        return {"ip": "127.0.0.1", "port": relay.port}

    def _dns_answer(self, name: str) -> tuple:
        """What the Wi-Fi's DNS server says about name (dnsserver.py): the dns script's answer, localhost and
        127.x literals; silence for a failing or unknown name, as an unanswered lookup."""
        b = self.board
        script = b.dns.get(name, {})
        if script.get("fail"):
            answer: tuple = ("silent",)
        elif "ip" in script and str(script["ip"]).startswith("127."):
            answer = ("a", script["ip"], 300)
        elif name == "localhost":
            answer = ("a", "127.0.0.1", 300)
        else:
            answer = ("silent",)
        delay = script.get("delay_s")
        return ("delay", delay / b.rate, answer) if delay and answer[0] != "silent" else answer

    def _wifi_up(self) -> bool:
        b = self.board
        with b.lock:
            return b._powered and b._proc is not None and b.station.is_up(b._board_ms())
