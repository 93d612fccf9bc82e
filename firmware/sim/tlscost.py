# Makes a TLS handshake cost the device what it costs on an ESP32 (host-side only, never deployed). Every
# public-key handshake message passing between mbedTLS and the socket costs cost_ms of the device's time: the
# server's Certificate and ServerKeyExchange (the client verifies their signatures) once handed to mbedTLS,
# the client's ClientKeyExchange (ECDH) and CertificateVerify (ECDSA sign) when mbedTLS writes them. `charge`
# spends it: a virtual clock jumps ahead (host_tests' SimDevice), the board double blocks the interpreter as the
# ESP32's CPU would be blocked. The simulated sensor fills its FIFO meanwhile, so firmware that lets one
# uninterruptible mbedTLS call run several of these steps overflows the FIFO as it would on a board; host
# crypto alone takes milliseconds.
#
# StretchedContext wraps an ssl.SSLContext: wrap_socket(sock) puts a Stretch between mbedTLS and sock (the
# TCP socket, or whatever stream the firmware hands to the TLS layer).
import io
import select

HEAVY_IN = (11, 12)  # Certificate, ServerKeyExchange
HEAVY_OUT = (16, 15)  # ClientKeyExchange, CertificateVerify
_HANDSHAKE = 22
_CHANGE_CIPHER_SPEC = 20


class _HandshakeParser:
    """Handshake message types in one direction of a TLS stream, until ChangeCipherSpec (then encrypted)."""

    def __init__(self, on_message):
        self._on_message = on_message
        self._rec = bytearray(5)
        self._rec_have = 0
        self._rec_left = 0
        self._hs = bytearray(4)
        self._hs_have = 0
        self._hs_left = 0
        self.encrypted = False

    def feed(self, data):
        i = 0
        n = len(data)
        while i < n:
            if self._rec_have < 5:
                self._rec[self._rec_have] = data[i]
                self._rec_have += 1
                i += 1
                if self._rec_have == 5:
                    self._rec_left = (self._rec[3] << 8) | self._rec[4]
                    if self._rec[0] == _CHANGE_CIPHER_SPEC:
                        self.encrypted = True
                    if self._rec_left == 0:
                        self._rec_have = 0
                continue
            k = min(n - i, self._rec_left)
            if self._rec[0] == _HANDSHAKE and not self.encrypted:
                self._handshake_bytes(data, i, k)
            i += k
            self._rec_left -= k
            if self._rec_left == 0:
                self._rec_have = 0

    def _handshake_bytes(self, data, i, k):
        end = i + k
        while i < end:
            if self._hs_have < 4:
                self._hs[self._hs_have] = data[i]
                self._hs_have += 1
                i += 1
                if self._hs_have == 4:
                    self._hs_left = (self._hs[1] << 16) | (self._hs[2] << 8) | self._hs[3]
                    if self._hs_left == 0:
                        self._done()
                continue
            m = min(end - i, self._hs_left)
            i += m
            self._hs_left -= m
            if self._hs_left == 0:
                self._done()

    def _done(self):
        self._hs_have = 0
        self._on_message(self._hs[0])


class Stretch(io.IOBase):
    def __init__(self, sock, charge, cost_ms, events, probe=None):
        self._s = sock
        self._probe_state = probe or (lambda: None)
        self._charge = charge  # charge(ms): spend that much device time
        self._cost_ms = cost_ms
        self.events = events  # ("in"|"out", handshake type, charged, probe()) in order
        self._in = _HandshakeParser(lambda t: self._message("in", t, HEAVY_IN))
        self._out = _HandshakeParser(lambda t: self._message("out", t, HEAVY_OUT))
        self._probe = None
        if not hasattr(sock, "ioctl"):  # a plain socket: answer polls ourselves
            self._probe = select.poll()
            self._probe.register(sock, select.POLLIN | select.POLLOUT)

    def _message(self, way, kind, heavy):
        charged = kind in heavy
        if charged:
            self._charge(self._cost_ms)
        self.events.append((way, kind, charged, self._probe_state()))

    def readinto(self, buf):
        try:
            r = self._s.readinto(buf)
        except OSError as e:
            if e.errno == 11:
                return None
            raise
        if r:
            self._in.feed(memoryview(buf)[:r])
        return r

    def write(self, buf):
        try:
            r = self._s.write(buf)
        except OSError as e:
            if e.errno == 11:
                return None
            raise
        if r:
            self._out.feed(memoryview(buf)[:r])
        return r

    def ioctl(self, req, arg):
        if self._probe is None:
            return self._s.ioctl(req, arg)
        if req == 3:
            ready = 0
            for _obj, ev, *_ in self._probe.poll(0):
                ready |= ev
            return ready & (arg | select.POLLERR | select.POLLHUP)
        if req == 4:
            self._probe.unregister(self._s)
            self._s.close()
            return 0
        return -22


class StretchedContext:
    """An ssl.SSLContext whose connections pay cost_ms per public-key handshake step (charge(ms) spends it)."""

    def __init__(self, ctx, charge, cost_ms=250):
        self.ctx = ctx
        self.charge = charge
        self.cost_ms = cost_ms
        self.events = []
        self.probe = None  # () -> a value recorded with each message (e.g. the device's drain count)

    def wrap_socket(self, sock, **kw):
        return self.ctx.wrap_socket(Stretch(sock, self.charge, self.cost_ms, self.events, self.probe), **kw)
