"""An SNTP server on loopback (RFC 4330 server replies), for boards and board doubles under test.

It answers with the host's clock (plus `offset_s`), echoes the client's transmit timestamp as the originate
timestamp, and can be told to stay silent (`answer = False`) or to send a kiss-o'-death (`kiss = b"RATE"`).
"""

from __future__ import annotations

import socket
import struct
import threading
import time

NTP_TO_UNIX = 2208988800


def ntp_timestamp(unix_s: float) -> bytes:
    secs = int(unix_s)
    return struct.pack("!II", secs + NTP_TO_UNIX, int((unix_s - secs) * 2**32) & 0xFFFFFFFF)


class SntpServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, offset_s: float = 0.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.offset_s = offset_s
        self.answer = True
        self.answers_left: int | None = None  # answer this many more requests, then none (None: no limit)
        self.kiss: bytes | None = None
        self.requests = 0
        self.replies = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(512)
            except (TimeoutError, OSError):
                continue
            self.requests += 1
            if len(data) < 48 or not self.answer or self.answers_left == 0:
                continue
            if self.answers_left is not None:
                self.answers_left -= 1
            received = time.time() + self.offset_s
            version = (data[0] >> 3) & 7 or 3
            stratum = 0 if self.kiss else 2
            head = struct.pack("!BBbb", (version << 3) | 4, stratum, 4, -20)  # LI 0, mode 4 (server)
            ref_id = self.kiss or b"LOCL"
            reply = (head + b"\0" * 8 + ref_id[:4].ljust(4, b"\0") + ntp_timestamp(received - 1)
                     + data[40:48] + ntp_timestamp(received) + ntp_timestamp(time.time() + self.offset_s))
            self.sock.sendto(reply, addr)
            self.replies += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> SntpServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
