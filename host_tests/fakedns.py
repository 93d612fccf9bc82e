"""A DNS server on 127.0.0.1 (random UDP port) whose behaviour a test switches at will.

mode: "answer" (an A record for every name: `address`, TTL `ttl`, behind a CNAME when `cname` is set, with name
compression as real servers send it), "drop" (no reply at all: a dead or unreachable server), "nxdomain",
"servfail". Every query is recorded as (name, monotonic time).
"""

from __future__ import annotations

import socket
import struct
import threading
import time


def _name(msg: bytes, i: int) -> tuple[str, int]:
    labels = []
    while msg[i]:
        labels.append(msg[i + 1:i + 1 + msg[i]].decode())
        i += 1 + msg[i]
    return ".".join(labels), i + 1


def _encode(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


class FakeDns:
    def __init__(self, mode: str = "answer", address: str = "127.0.0.1", ttl: int = 3600, cname: str | None = None):
        self.mode = mode
        self.address = address
        self.ttl = ttl
        self.cname = cname
        self.queries: list[tuple[str, float]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                msg, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            name, end = _name(msg, 12)
            self.queries.append((name, time.monotonic()))
            reply = self._reply(msg, end + 4, name)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def _reply(self, msg: bytes, qend: int, name: str) -> bytes | None:
        question = msg[12:qend]
        rcode = {"nxdomain": 3, "servfail": 2}.get(self.mode, 0)
        if self.mode == "drop":
            return None
        head = msg[:2] + struct.pack(">HHHHH", 0x8180 | rcode, 1, 0, 0, 0)
        if rcode:
            return head + question
        answers = b""
        count = 0
        target = b"\xc0\x0c"  # a pointer to the name in the question
        if self.cname:
            cname = _encode(self.cname)
            answers += target + struct.pack(">HHIH", 5, 1, self.ttl, len(cname)) + cname
            target = struct.pack(">H", 0xC000 | (qend + 12))  # the CNAME's target, just written
            count += 1
        answers += target + struct.pack(">HHIH", 1, 1, self.ttl, 4) + socket.inet_aton(self.address)
        count += 1
        return msg[:2] + struct.pack(">HHHHH", 0x8180, 1, count, 0, 0) + question + answers

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(2)

    def __enter__(self) -> FakeDns:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
