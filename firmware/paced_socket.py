# A stream socket that never holds the caller for long.
#
# umqtt.simple reads and writes as if the socket were blocking. PacedSocket gives it that interface over a
# NON-blocking (TLS) socket: each read/write makes whatever progress the socket allows; while it would block,
# it runs `idle()` (the main loop's sensor drain) and polls for at most `slice_ms`. Every operation has a
# deadline: past it, OSError(ETIMEDOUT) — so a stalled broker can never freeze the device, and the sensor
# FIFO keeps being drained during DNS-free connects, TLS handshakes and PUBACK waits.
# With TLS, mbedTLS runs the handshake inside these reads/writes (do_handshake_on_connect=False), one flight
# per call, so the longest time without a drain is one handshake flight's crypto.
import errno
import select
import time

_EAGAIN = errno.EAGAIN
_EINPROGRESS = errno.EINPROGRESS


def _would_block(e):
    return e.errno in (_EAGAIN, _EINPROGRESS)


class PacedSocket:
    def __init__(self, sock, idle, timeout_ms=5000, slice_ms=10):
        self._s = sock
        self._idle = idle
        self.timeout_ms = timeout_ms
        self.slice_ms = slice_ms
        self._nonblocking = False
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._mode = select.POLLIN
        self.timeouts = 0

    def _wait(self, mode, deadline):
        self._idle()
        left = time.ticks_diff(deadline, time.ticks_ms())
        if left <= 0:
            self.timeouts += 1
            raise OSError(errno.ETIMEDOUT)
        if mode != self._mode:
            self._poll.modify(self._s, mode)
            self._mode = mode
        self._poll.poll(min(left, self.slice_ms))

    def _deadline(self):
        return time.ticks_add(time.ticks_ms(), self.timeout_ms)

    def read(self, n):
        buf = bytearray(n)
        mv = memoryview(buf)
        got = 0
        deadline = self._deadline()
        while got < n:
            try:
                r = self._s.readinto(mv[got:])
            except OSError as e:
                if not _would_block(e):
                    raise
                r = None
            if r is None:
                if self._nonblocking and got == 0:
                    return None  # umqtt's check_msg(): nothing pending
                self._wait(select.POLLIN, deadline)
            elif r == 0:
                return bytes(buf[:got])  # peer closed
            else:
                got += r
        return buf

    def write(self, buf, n=None):
        mv = memoryview(buf)
        n = len(buf) if n is None else n
        sent = 0
        deadline = self._deadline()
        while sent < n:
            try:
                r = self._s.write(mv[sent:n])
            except OSError as e:
                if not _would_block(e):
                    raise
                r = None
            if r is None or r == 0:
                self._wait(select.POLLOUT, deadline)
            else:
                sent += r
        return n

    def wait_writable(self):
        """For a non-blocking TCP connect in progress: wait until it completes (or the deadline passes)."""
        deadline = self._deadline()
        while True:
            self._idle()
            if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                self.timeouts += 1
                raise OSError(errno.ETIMEDOUT)
            self._poll.modify(self._s, select.POLLOUT)
            self._mode = select.POLLOUT
            for _obj, ev, *_ in self._poll.poll(self.slice_ms):
                if ev & (select.POLLERR | select.POLLHUP):
                    raise OSError(errno.ECONNREFUSED)
                if ev & select.POLLOUT:
                    return

    def replace(self, sock):
        """Continue over a new stream on the same connection (the TLS layer wrapped around the TCP socket)."""
        self._poll.unregister(self._s)
        self._s = sock
        self._poll.register(sock, select.POLLIN)
        self._mode = select.POLLIN

    def setblocking(self, flag):
        self._nonblocking = not flag

    def settimeout(self, t):
        self._nonblocking = t == 0

    def close(self):
        try:
            self._poll.unregister(self._s)
        except (OSError, ValueError, KeyError):
            pass
        self._s.close()
