"""A DNS server on loopback (UDP, random port) whose answers a callable decides, per query name.

answer(name) returns one of:
    ("a", ip, ttl)               an A record
    ("cname", alias, ip, ttl)    a CNAME to alias, then alias's A record (name compression as servers send it)
    ("rcode", n)                 an error: 2 SERVFAIL, 3 NXDOMAIN, ...
    ("silent",)                  no reply at all: a dead or unreachable server
and may be preceded by ("delay", seconds, <one of the above>) to answer late. The board double serves the
names a test scripts with it (the DNS server its Wi-Fi hands out, WLAN.ifconfig()[3]); host tests use it
through host_tests/fakedns.py. Every query is recorded as (name, host monotonic time).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable


def _qname(msg: bytes, i: int) -> tuple[str, int]:
    labels = []
    while msg[i]:
        labels.append(msg[i + 1:i + 1 + msg[i]].decode("ascii", "replace"))
        i += 1 + msg[i]
    return ".".join(labels), i + 1


def _encode(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


def reply(query: bytes, answer: tuple) -> bytes | None:
    """The response to `query` that `answer` describes (None: stay silent)."""
    _name, end = _qname(query, 12)
    qend = end + 4
    question = query[12:qend]
    kind = answer[0]
    if kind == "silent":
        return None
    if kind == "rcode":
        return query[:2] + struct.pack(">HHHHH", 0x8180 | answer[1], 1, 0, 0, 0) + question
    records = b""
    target = b"\xc0\x0c"  # a pointer to the name in the question
    count = 0
    if kind == "cname":
        _, alias, ip, ttl = answer
        alias_wire = _encode(alias)
        records += target + struct.pack(">HHIH", 5, 1, ttl, len(alias_wire)) + alias_wire
        target = struct.pack(">H", 0xC000 | (qend + 12))  # the alias, as just written
        count += 1
    else:
        _, ip, ttl = answer
    records += target + struct.pack(">HHIH", 1, 1, ttl, 4) + socket.inet_aton(ip)
    count += 1
    return query[:2] + struct.pack(">HHHHH", 0x8180, 1, count, 0, 0) + question + records


class DnsServer:
    def __init__(self, answer: Callable[[str], tuple], host: str = "127.0.0.1"):
        self.answer = answer
        self.queries: list[tuple[str, float]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                msg, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                name, _ = _qname(msg, 12)
            except IndexError:
                continue
            self.queries.append((name, time.monotonic()))
            answer = self.answer(name)
            if answer[0] == "delay":
                threading.Timer(answer[1], self._send, (msg, answer[2], peer)).start()
            else:
                self._send(msg, answer, peer)

    def _send(self, msg: bytes, answer: tuple, peer) -> None:
        data = reply(msg, answer)
        if data is not None and not self._stop.is_set():
            try:
                self.sock.sendto(data, peer)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)
