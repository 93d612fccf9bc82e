"""The board's serial line, as a host tool opens it: a pty (like /dev/ttyUSB0; a symlink names it) or a TCP
port for pyserial's socket:// URLs.

Like a USB-UART bridge, output with nobody listening is lost (a full pty buffer drops bytes rather than
stalling the board). cut() pulls the cable: the host tool's next read or write fails; the port is back, at the
same name, for the next connection.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import tty
from collections.abc import Callable
from pathlib import Path


class PtyPort:
    def __init__(self, link: Path, on_input: Callable[[bytes], None]):
        self.link = Path(link)
        self.on_input = on_input
        self._lock = threading.Lock()
        self._closed = False
        self._open()
        threading.Thread(target=self._reader, daemon=True).start()

    def _open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: a UART passes bytes
        os.set_blocking(master, False)
        self.master, self.slave = master, slave
        self.device = os.ttyname(slave)
        tmp = self.link.with_name(self.link.name + ".new")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(self.device)
        os.replace(tmp, self.link)

    @property
    def url(self) -> str:
        return str(self.link)

    def _reader(self) -> None:
        while not self._closed:
            master = self.master
            try:
                r, _, _ = select.select([master], [], [], 0.2)
                if not r:
                    continue
                data = os.read(master, 4096)
            except (OSError, ValueError):
                continue  # cut() swapped the pty under us
            if data:
                self.on_input(data)

    def write(self, data: bytes) -> None:
        with self._lock:
            try:
                os.write(self.master, data)
            except (BlockingIOError, OSError):
                pass  # nobody reads the port: the bytes are lost, as on a UART

    def cut(self) -> None:
        with self._lock:
            old = (self.master, self.slave)
            self._open()
            for fd in old:
                os.close(fd)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for fd in (self.master, self.slave):
                try:
                    os.close(fd)
                except OSError:
                    pass
        if self.link.is_symlink():
            self.link.unlink()


class TcpPort:
    """socket://127.0.0.1:PORT: one host connection at a time."""

    def __init__(self, on_input: Callable[[bytes], None], port: int = 0):
        self.on_input = on_input
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", port))
        self._srv.listen(1)
        self._srv.settimeout(0.2)
        self.port = self._srv.getsockname()[1]
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._closed:
            try:
                client, _ = self._srv.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                if self._client is not None:
                    self._client.close()
                self._client = client
            client.settimeout(0.2)
            while not self._closed and self._client is client:
                try:
                    data = client.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                self.on_input(data)
            with self._lock:
                if self._client is client:
                    self._client = None
            client.close()

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.sendall(data)
                except OSError:
                    pass

    def cut(self) -> None:
        with self._lock:
            if self._client is not None:
                try:
                    self._client.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                self._client.close()
                self._client = None

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._srv.close()
