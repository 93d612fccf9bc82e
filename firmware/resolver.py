# Broker name lookup that never blocks the main loop: one DNS query (an A record, recursion desired) over UDP to
# the DNS server the Wi-Fi network handed out (WLAN.ifconfig()[3]), sent and answered across loop turns.
# socket.getaddrinfo() instead blocks inside lwIP for seconds when DNS is slow or down, longer than the
# sensor's FIFO; docs/transport.md says why this is a client and not a resolver thread.
#
# start(name, server) sends the query; poll() returns None while waiting, (address, ttl_s) once answered, or
# raises DnsError with a cause an operator can act on. Each try waits timeout_ms, then the query is sent again
# (same id); after `tries` tries the lookup fails.
import random
import socket
import time

_TYPE_A = 1
_CLASS_IN = 1
_RCODES = {1: "format error", 2: "server failure (SERVFAIL)", 3: "no such name (NXDOMAIN)", 4: "not implemented",
           5: "refused"}
TTL_MIN_S = 60  # re-resolve at least this rarely, and at least once a day
TTL_MAX_S = 86400


class DnsError(OSError):
    pass


def literal_address(host):
    """The address for a host that needs no lookup (a dotted IPv4 literal, or localhost), else None."""
    if host == "localhost":
        return "127.0.0.1"
    parts = host.split(".")
    if len(parts) != 4:
        return None
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return None
    return host


def _skip_name(msg, i):
    while True:
        n = msg[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += n + 1


def parse_answer(msg, qid, name):
    """(address, ttl_s) from a DNS response to query qid, or DnsError. None if msg is not that response."""
    if len(msg) < 12 or (msg[0] << 8 | msg[1]) != qid or not msg[2] & 0x80:
        return None
    rcode = msg[3] & 0x0F
    if rcode:
        raise DnsError("%s: %s" % (name, _RCODES.get(rcode, "error code %d" % rcode)))
    qd = msg[4] << 8 | msg[5]
    an = msg[6] << 8 | msg[7]
    i = 12
    try:
        for _ in range(qd):
            i = _skip_name(msg, i) + 4
        for _ in range(an):
            i = _skip_name(msg, i)
            rtype = msg[i] << 8 | msg[i + 1]
            rclass = msg[i + 2] << 8 | msg[i + 3]
            ttl = (msg[i + 4] << 24) | (msg[i + 5] << 16) | (msg[i + 6] << 8) | msg[i + 7]
            size = msg[i + 8] << 8 | msg[i + 9]
            i += 10
            if rtype == _TYPE_A and rclass == _CLASS_IN and size == 4:
                ttl = TTL_MIN_S if ttl < TTL_MIN_S else TTL_MAX_S if ttl > TTL_MAX_S else ttl
                return "%d.%d.%d.%d" % (msg[i], msg[i + 1], msg[i + 2], msg[i + 3]), ttl
            i += size
    except IndexError:
        raise DnsError("%s: truncated answer" % name)
    raise DnsError("%s: no IPv4 address in the answer" % name)


def build_query(qid, name):
    q = bytearray(12)
    q[0] = qid >> 8
    q[1] = qid & 0xFF
    q[2] = 0x01  # recursion desired
    q[5] = 1  # one question
    for label in name.split("."):
        if not 0 < len(label) < 64:
            raise DnsError("%s: not a valid host name" % name)
        q.append(len(label))
        q.extend(label.encode())
    q.extend(b"\x00\x00\x01\x00\x01")  # root, type A, class IN
    return q


class Resolver:
    def __init__(self, clock=time, timeout_ms=1000, tries=3):
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.tries = tries
        self._sock = None
        self.name = None
        self.server = None

    @property
    def pending(self):
        return self._sock is not None

    def start(self, name, server):
        """Send the query for name to server = (ip, port)."""
        self.cancel()
        self.name = name
        self.server = server
        self._qid = random.getrandbits(16)
        self._query = build_query(self._qid, name)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setblocking(False)
            s.connect(socket.getaddrinfo(server[0], server[1])[0][-1])  # an IP literal: no lookup, no wait
        except OSError:
            s.close()
            raise
        self._sock = s
        self._try = 0
        self._send()

    def _send(self):
        self._try += 1
        self._sent_at = self.clock.ticks_ms()
        try:
            self._sock.send(self._query)
        except OSError:
            pass  # e.g. no route yet: the try times out like a lost packet

    def poll(self):
        """None while waiting; (address, ttl_s) when answered; DnsError (lookup over) on failure."""
        while True:
            try:
                msg = self._sock.recv(512)
            except OSError:  # EAGAIN: nothing yet (or ECONNREFUSED: nothing listens at the server)
                break
            try:
                got = parse_answer(msg, self._qid, self.name)
            except DnsError:
                self.cancel()
                raise
            if got is not None:
                self.cancel()
                return got
        waited = self.clock.ticks_diff(self.clock.ticks_ms(), self._sent_at)
        if 0 <= waited < self.timeout_ms:
            return None
        if self._try < self.tries:
            self._send()
            return None
        tries = self._try
        self.cancel()
        raise DnsError("%s: no answer from DNS server %s after %d tries of %d ms"
                       % (self.name, self.server[0], tries, self.timeout_ms))

    def cancel(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
