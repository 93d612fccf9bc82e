# Board clock from SNTP (RFC 4330), without ever blocking the main loop.
#
# An ESP32 wakes with its RTC at 2000-01-01. Until the clock is set, no TLS handshake can succeed (mbedTLS checks
# certificate dates against it) and no batch can be stamped. TimeSync sends the request ntptime sends (48 bytes,
# LI 0, version 3, client mode) over a NON-blocking UDP socket and looks for the answer at each call of step(),
# which the main loop makes between FIFO drains: waiting for the server costs the sensor nothing. The request
# carries a random transmit timestamp that the answer must echo (RFC 4330 section 5), and the answer must come
# from a synchronised server (mode 4, stratum 1..15, leap indicator not 3).
#
# Failure behaviour: a lost answer is retried `tries` times `timeout_ms` apart, then again every `retry_ms`;
# the first failure is logged once, naming the server and the cause; later ones are counted. After a success
# the clock is re-synchronised every `resync_ms` (a failure then keeps the time it has).
#
# The one blocking call is the first getaddrinfo() of the server's name (as for the broker); its answer is kept.
import errno
import os
import socket
import struct
import time

NTP_TO_UNIX = 2208988800  # seconds from 1900-01-01 to 1970-01-01
_PACKET = 48
_EAGAIN = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN))


def parse_server(text, default_port=123):
    """ "host" or "host:port" -> (host, port); ValueError names what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("SNTP server must be HOST or HOST:PORT, got %r" % (text,))
    return host, int(port)


def parse_reply(msg, nonce):
    """(unix seconds, microseconds) from a server's answer to our request, or raise ValueError(cause)."""
    if len(msg) < _PACKET:
        raise ValueError("short reply (%d bytes)" % len(msg))
    li, mode, stratum = msg[0] >> 6, msg[0] & 7, msg[1]
    if mode != 4:
        raise ValueError("not a server reply (mode %d)" % mode)
    if stratum == 0:
        raise ValueError("kiss-o'-death %r" % bytes(msg[12:16]))
    if li == 3 or stratum > 15:
        raise ValueError("server not synchronised")
    if msg[24:32] != nonce:
        raise ValueError("reply does not answer our request")
    secs, frac = struct.unpack("!II", msg[40:48])
    if secs == 0:
        raise ValueError("empty transmit timestamp")
    # frac / 2**32 s in microseconds (x 10**6 / 2**32 = x 15625 / 2**26), kept below 2**30: small ints on a 32-bit port
    return secs - NTP_TO_UNIX, (frac >> 16) * 15625 >> 10


class TimeSync:
    def __init__(self, server, set_clock, log=None, timeout_ms=2000, tries=3, retry_ms=60000,
                 resync_ms=6 * 3600 * 1000):
        self.host, self.port = parse_server(server)
        self.set_clock = set_clock  # set_clock(unix_seconds, microseconds)
        self.log = log
        self.timeout_ms = timeout_ms
        self.tries = tries
        self.retry_ms = retry_ms
        self.resync_ms = resync_ms
        self.synced = False
        self.syncs = 0
        self.failures = 0
        self.last_error = None
        self._reported = False
        self._addr = None
        self._sock = None
        self._attempt = 0
        self._sent = 0
        self._due = time.ticks_ms()
        self._request = bytearray(_PACKET)
        self._nonce = b""
        self._reply = bytearray(_PACKET + 16)

    @property
    def server(self):
        return "%s:%d" % (self.host, self.port)

    def due(self):
        return self._sock is not None or time.ticks_diff(time.ticks_ms(), self._due) >= 0

    def step(self):
        """One bounded piece of work; True once the clock has been set (at least once)."""
        if self._sock is None:
            if time.ticks_diff(time.ticks_ms(), self._due) >= 0:
                self._send()
        else:
            self._poll()
        return self.synced

    def _send(self):
        try:
            if self._addr is None:
                self._addr = socket.getaddrinfo(self.host, self.port)[0][-1]
        except OSError as e:
            self._failed("cannot resolve %s (%r)" % (self.host, e))
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            s.connect(self._addr)  # a connected UDP socket reports an unreachable port as ECONNREFUSED
            req = self._request
            req[0] = 0x1B  # LI 0, version 3, mode 3 (client): what ntptime sends
            self._nonce = os.urandom(8)
            req[40:48] = self._nonce
            s.send(req)
        except OSError as e:
            s.close()
            self._failed("cannot send to %s (%r)" % (self.server, e))
            return
        self._sock = s
        self._sent = time.ticks_ms()

    def _poll(self):
        s = self._sock
        try:
            n = s.readinto(self._reply)
        except OSError as e:
            if e.errno in _EAGAIN:
                n = None
            else:
                self._close()
                cause = ("nothing answers on port %d (connection refused)" % self.port
                         if e.errno == errno.ECONNREFUSED else repr(e))
                self._failed(cause)
                return
        if n is None:
            if time.ticks_diff(time.ticks_ms(), self._sent) > self.timeout_ms:
                self._close()
                self._attempt += 1
                if self._attempt >= self.tries:
                    self._failed("no answer (%d tries, %d ms each)" % (self.tries, self.timeout_ms))
            return
        rtt = time.ticks_diff(time.ticks_ms(), self._sent)
        self._close()
        try:
            secs, us = parse_reply(memoryview(self._reply)[:n], self._nonce)
        except ValueError as e:
            self._attempt += 1
            if self._attempt >= self.tries:
                self._failed("bad reply: %s" % e)
            return
        us += rtt * 500  # the answer is half a round trip old
        secs += us // 1000000
        self.set_clock(secs, us % 1000000)
        if self.log and (not self.synced or self._reported):
            self.log.info("time: clock set from SNTP server %s (round trip %d ms)" % (self.server, rtt))
        self.synced = True
        self.syncs += 1
        self._attempt = 0
        self._reported = False
        self.last_error = None
        self._due = time.ticks_add(time.ticks_ms(), self.resync_ms)

    def _close(self):
        try:
            self._sock.close()
        except OSError:
            pass
        self._sock = None

    def _failed(self, cause):
        self.failures += 1
        self._attempt = 0
        self.last_error = cause
        self._due = time.ticks_add(time.ticks_ms(), self.retry_ms)
        if self.log and not self._reported:
            self._reported = True
            if self.synced:
                self.log.warning("time: SNTP server %s: %s; keeping the current time, retrying every %d s"
                                 % (self.server, cause, self.retry_ms // 1000))
            else:
                self.log.error("time: clock not set: SNTP server %s: %s; no TLS and no batch stamped until it "
                               "answers (readings keep their times); retrying every %d s"
                               % (self.server, cause, self.retry_ms // 1000))
