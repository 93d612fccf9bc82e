"""What lies between the board and a server: a relay on loopback per destination, TCP and UDP on one port.

The double's socket.getaddrinfo() answers with a relay's address, so the firmware's sockets are real sockets
that reach the real server (broker, SNTP) through it. The relay:
- carries nothing while the board's Wi-Fi is down: a new TCP connection is refused, an open one goes silent
  for good (as a TCP connection through a vanished access point does), datagrams are dropped;
- can stretch each TLS handshake to an ESP32's seconds (`handshake_s`, board seconds): the server's first
  two flights after the board's ClientHello and after its second flight reach the board handshake_s / 2
  later each, so the board spends the handshake waiting on its socket, as it does while an ESP32's mbedTLS
  and the network take their time. Later data passes at once.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable


class Relay:
    def __init__(self, dest: tuple[str, int], link_up: Callable[[], bool], handshake_s: Callable[[], float]):
        self.dest = dest
        self._link_up = link_up
        self._handshake_s = handshake_s
        self._stop = threading.Event()
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(20):  # the same port number for TCP and UDP
            self.tcp.bind(("127.0.0.1", 0))
            self.port = self.tcp.getsockname()[1]
            try:
                self.udp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.tcp.close()
                self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.listen(8)
        self.tcp.settimeout(0.2)
        self.udp.settimeout(0.2)
        self.connections: list[_Pipe] = []
        self.handshakes: list[float] = []  # real seconds the stretch held back, per connection
        self.refused = 0
        self.udp_dropped = 0
        self._upstream_udp: socket.socket | None = None
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._udp_loop, daemon=True).start()

    # ---- TCP ----------------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                board, _ = self.tcp.accept()
            except (TimeoutError, OSError):
                continue
            if not self._link_up():
                self.refused += 1
                board.close()
                continue
            try:
                server = socket.create_connection(self.dest, timeout=5)
            except OSError:
                board.close()  # the board sees the connection reset, as when the server refuses
                continue
            pipe = _Pipe(board, server, self)
            self.connections.append(pipe)
            pipe.start()

    # ---- UDP (SNTP) ----------------------------------------------------------------------------------------

    def _udp_loop(self) -> None:
        board_addr = None
        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        up.settimeout(0.05)
        self._upstream_udp = up
        while not self._stop.is_set():
            try:
                data, addr = self.udp.recvfrom(2048)
                if self._link_up():
                    board_addr = addr
                    up.sendto(data, self.dest)
                else:
                    self.udp_dropped += 1
            except (TimeoutError, OSError):
                pass
            try:
                data, _ = up.recvfrom(2048)
                if board_addr and self._link_up():
                    self.udp.sendto(data, board_addr)
            except (TimeoutError, OSError):
                pass

    def close(self) -> None:
        self._stop.set()
        for pipe in self.connections:
            pipe.close()
        for s in (self.tcp, self.udp, self._upstream_udp):
            if s is not None:
                s.close()


class _Pipe:
    """One TCP connection: board <-> relay <-> server."""

    def __init__(self, board: socket.socket, server: socket.socket, relay: Relay):
        self.board = board
        self.server = server
        self.relay = relay
        self.dead = False  # Wi-Fi went down while open: silent for good
        self.board_spoke = False  # board sent since the server's last flight began
        self.flights_held = 0
        self.held_s = 0.0
        self.closed = False

    def start(self) -> None:
        threading.Thread(target=self._pump, args=(self.board, self.server, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.server, self.board, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_board: bool) -> None:
        src.settimeout(0.2)
        while not self.closed:
            if not self.relay._link_up():
                self.dead = True
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if not self.relay._link_up():  # again: the access point may have gone while recv() waited
                self.dead = True
            if self.dead:
                continue  # the access point is gone: nothing gets through any more
            if from_board:
                self.board_spoke = True
            elif self.board_spoke and self.flights_held < 2:
                self.board_spoke = False
                self.flights_held += 1
                stretch = self.relay._handshake_s()
                if stretch > 0:
                    time.sleep(stretch / 2)
                    self.held_s += stretch / 2
                    if self.flights_held == 2:
                        self.relay.handshakes.append(self.held_s)
            try:
                dst.sendall(data)
            except OSError:
                break
        if not self.dead:
            self.close()

    def close(self) -> None:
        self.closed = True
        for s in (self.board, self.server):
            try:
                s.close()
            except OSError:
                pass
