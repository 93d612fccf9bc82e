"""A TCP proxy on 127.0.0.1 that injects network faults between the device and the broker.

Modes (switch at any time with `proxy.mode = ...`):
  pass     forward both ways
  slow     forward, but hold each chunk `delay` seconds
  stall    accept and keep connections open, forward nothing (a half-open / hung broker)
  oneway   forward what the device sends, swallow everything the broker answers (every PUBACK is lost)
  refuse   close every new connection at once (existing ones are dropped too)
`drop_all()` cuts every live connection (a broker restart or Wi-Fi loss as the device sees it);
`close_after_bytes = N` closes a connection once the client has sent N bytes (e.g. mid TLS handshake).
`captured` holds every byte the device sent (forwarded ones), `streams` the same per connection.
"""

from __future__ import annotations

import select
import socket
import threading
import time

LOOPBACK = "127.0.0.1"


class FaultProxy:
    def __init__(self, target_port: int, delay: float = 0.2, mode: str = "pass"):
        self.target = (LOOPBACK, target_port)
        self.mode = mode
        self.delay = delay
        self.close_after_bytes: int | None = None
        self.connections = 0
        self.bytes_up = 0  # device -> broker
        self.captured = bytearray()  # every byte the device sent, as it went over the wire
        self.streams: list[bytearray] = []  # the same, one entry per forwarded connection
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            self.connections += 1
            if self.mode == "refuse":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        sent_up = 0
        stream = bytearray()
        with self._lock:
            self.streams.append(stream)
        try:
            while not self._stop.is_set():
                if self.mode == "refuse":
                    break
                readable, _, _ = select.select([client, upstream], [], [], 0.05)
                if self.mode == "stall":
                    time.sleep(0.05)
                    continue
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    if self.mode == "slow":
                        time.sleep(self.delay)
                    if src is client:
                        if self.close_after_bytes is not None and sent_up + len(data) >= self.close_after_bytes:
                            upstream.sendall(data[: max(0, self.close_after_bytes - sent_up)])
                            return
                        sent_up += len(data)
                        self.bytes_up += len(data)
                        self.captured += data
                        stream += data
                        upstream.sendall(data)
                    elif self.mode != "oneway":
                        client.sendall(data)
        except (OSError, ValueError):  # ValueError: drop_all() closed the sockets under our select()
            pass
        finally:
            self._close_pair(client, upstream)

    def _close_pair(self, client: socket.socket, upstream: socket.socket) -> None:
        for s in (client, upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self._lock:
            if (client, upstream) in self._pairs:
                self._pairs.remove((client, upstream))

    def drop_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
        for client, upstream in pairs:
            self._close_pair(client, upstream)

    def close(self) -> None:
        self._stop.set()
        self.drop_all()
        self._listener.close()
        self._thread.join(2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
