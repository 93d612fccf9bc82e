# A stream socket that never holds the caller for long.
#
# umqtt.simple reads and writes as if the socket were blocking. PacedSocket gives it that interface over a
# NON-blocking (TLS) socket: each read/write makes whatever progress the socket allows; while it would block,
# it runs `idle()` (the main loop's sensor drain) and polls for at most `slice_ms`. Every operation has a
# deadline: past it, OSError(ETIMEDOUT) — so a stalled broker can never freeze the device, and the sensor
# FIFO keeps being drained during TCP connects, TLS handshakes and PUBACK waits.
#
# With TLS, mbedTLS runs the handshake inside these reads/writes (do_handshake_on_connect=False). Left alone,
# one mbedTLS call runs every handshake step it has input for: verify the server's certificate and key
# exchange, then ECDH and the CertificateVerify signature, about a second of CPU on an ESP32, longer than the
# MAX30102's FIFO. RecordPacer sits between mbedTLS and the TCP socket and hands it at most one TLS record
# in and one record out per call, so each mbedTLS call does at most one public-key operation (~250 ms on a
# board), and PacedSocket drains the sensor before every call while handshaking (docs/transport.md).
import errno
import io
import select
import time

_EAGAIN = errno.EAGAIN
_EINPROGRESS = errno.EINPROGRESS
_POLL = 3  # MP_STREAM_POLL / MP_STREAM_CLOSE: the ioctl requests the TLS layer forwards to its stream
_CLOSE = 4


def _would_block(e):
    return e.errno in (_EAGAIN, _EINPROGRESS)


class _RecordCounter:
    """Follows TLS record boundaries in a byte stream (5-byte header: type, version, 16-bit length)."""

    def __init__(self):
        self._hdr = bytearray(5)
        self._have = 0  # header bytes seen of the current record
        self._left = 0  # body bytes still to come

    def at_boundary(self):
        return self._have == 0 and self._left == 0

    def room(self, buf):
        """How many bytes of buf belong to the current record; between records, the record buf starts with
        (header and body together, so a record goes out as one TCP segment)."""
        n = len(buf)
        if self._have == 0 and self._left == 0:
            return min(n, 5 + ((buf[3] << 8) | buf[4])) if n >= 5 else n
        if self._have < 5:
            return min(n, 5 - self._have)
        return min(n, self._left)

    def feed(self, buf, n):
        """Account for the first n bytes of buf, which passed; returns True when they completed a record."""
        i = 0
        done = False
        while i < n:
            if self._have < 5:
                self._hdr[self._have] = buf[i]
                self._have += 1
                i += 1
                if self._have == 5:
                    self._left = (self._hdr[3] << 8) | self._hdr[4]
            else:
                k = min(n - i, self._left)
                self._left -= k
                i += k
            if self._have == 5 and self._left == 0:
                self._have = 0
                done = True
        return done


class RecordPacer(io.IOBase):
    """The TCP stream as mbedTLS sees it: at most one whole TLS record in and one out per allow().

    Past its allowance a read or write reports "would block" (and sets `throttled`), so mbedTLS returns
    WANT_READ/WANT_WRITE to its caller instead of running the next handshake step. `want` says which way
    the TCP socket itself last blocked. A socket error is kept in `error` and reported to mbedTLS as end of
    stream (an exception raised inside its callback would unwind through the C library)."""

    def __init__(self, sock):
        self._s = sock
        self._in = _RecordCounter()
        self._out = _RecordCounter()
        self._probe = select.poll()
        self._probe.register(sock, select.POLLIN | select.POLLOUT)
        self.error = None
        self.records_in = 0
        self.records_out = 0
        self.allow()

    def allow(self):
        self._in_budget = 1
        self._out_budget = 1
        self.throttled = False
        self.want = 0

    def readinto(self, buf):
        c = self._in
        if self._in_budget <= 0 and c.at_boundary():
            self.throttled = True
            return None
        n = c.room(buf) if not c.at_boundary() else min(len(buf), 5)
        try:
            r = self._s.readinto(memoryview(buf)[:n])
        except OSError as e:
            if _would_block(e):
                r = None
            else:
                self.error = e
                return 0
        if r is None:
            self.want = select.POLLIN
            return None
        if r and c.feed(buf, r):
            self._in_budget -= 1
            self.records_in += 1
        return r

    def write(self, buf):
        c = self._out
        if self._out_budget <= 0 and c.at_boundary():
            self.throttled = True
            return None
        try:
            r = self._s.write(memoryview(buf)[:c.room(buf)])
        except OSError as e:
            if _would_block(e):
                r = None
            else:
                self.error = e
                return 0
        if not r:
            self.want = select.POLLOUT
            return None
        if c.feed(buf, r):
            self._out_budget -= 1
            self.records_out += 1
        return r

    def ioctl(self, req, arg):
        if req == _POLL:
            ready = 0
            for _obj, ev, *_ in self._probe.poll(0):
                ready |= ev
            return ready & (arg | select.POLLERR | select.POLLHUP)
        if req == _CLOSE:
            try:
                self._probe.unregister(self._s)
            except (OSError, ValueError, KeyError):
                pass
            self._s.close()
            return 0
        return -errno.EINVAL


class PacedSocket:
    def __init__(self, sock, idle, timeout_ms=5000, slice_ms=10, clock=time, drain=None):
        self._s = sock
        self._raw = sock  # what is polled: the TCP socket, also under TLS
        self._idle = idle
        self._drain = drain or idle  # a drain regardless of schedule, before each call while handshaking
        self._clock = clock
        self.timeout_ms = timeout_ms
        self.slice_ms = slice_ms
        self._nonblocking = False
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._mode = select.POLLIN
        self._pacer = None
        self.handshaking = False
        self.timeouts = 0
        self.calls = 0  # calls into the stream below (the TLS layer); with a pacer, one record each at most

    def _wait(self, mode, deadline):
        self._idle()
        left = self._clock.ticks_diff(deadline, self._clock.ticks_ms())
        if left <= 0:
            self.timeouts += 1
            raise OSError(errno.ETIMEDOUT)
        pacer = self._pacer
        if pacer is not None:
            if pacer.throttled:
                return  # the TLS layer has work to do now (the next record): no reason to sleep
            if pacer.want:
                mode = pacer.want
        if mode != self._mode:
            self._poll.modify(self._raw, mode)
            self._mode = mode
        self._poll.poll(min(left, self.slice_ms))

    def _deadline(self):
        return self._clock.ticks_add(self._clock.ticks_ms(), self.timeout_ms)

    def _before_call(self):
        self.calls += 1
        if self._pacer is not None:
            if self.handshaking:
                self._drain()
            self._pacer.allow()

    def read(self, n):
        buf = bytearray(n)
        mv = memoryview(buf)
        got = 0
        deadline = self._deadline()
        while got < n:
            self._before_call()
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
            self._before_call()
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
            if self._clock.ticks_diff(deadline, self._clock.ticks_ms()) <= 0:
                self.timeouts += 1
                raise OSError(errno.ETIMEDOUT)
            self._poll.modify(self._raw, select.POLLOUT)
            self._mode = select.POLLOUT
            for _obj, ev, *_ in self._poll.poll(self.slice_ms):
                if ev & (select.POLLERR | select.POLLHUP):
                    raise OSError(errno.ECONNREFUSED)
                if ev & select.POLLOUT:
                    return

    def start_tls(self, context, server_hostname):
        """Continue over TLS on this connection; mbedTLS talks to the TCP socket through a RecordPacer."""
        self._pacer = RecordPacer(self._raw)
        self._s = context.wrap_socket(self._pacer, server_hostname=server_hostname, do_handshake_on_connect=False)
        self.handshaking = True

    @property
    def socket_error(self):
        """The TCP error behind a TLS failure (mbedTLS only saw end of stream), or None."""
        return self._pacer.error if self._pacer is not None else None

    def setblocking(self, flag):
        self._nonblocking = not flag

    def settimeout(self, t):
        self._nonblocking = t == 0

    def close(self):
        try:
            self._poll.unregister(self._raw)
        except (OSError, ValueError, KeyError):
            pass
        self._s.close()
        if self._s is not self._raw:
            try:
                self._raw.close()
            except OSError:
                pass
