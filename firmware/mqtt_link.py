# MQTT 3.1.1 link: umqtt.simple does the protocol; this thin subclass adds what a device on a flaky network
# needs, mqtt_as-style:
# - connect without blocking the main loop: non-blocking TCP connect and TLS handshake through PacedSocket,
#   one TLS record per mbedTLS call, so the sensor FIFO keeps being drained. The broker's address is given
#   (`addr`, resolved by Transport without blocking); without one, getaddrinfo() (blocking: unix port only);
# - every wait bounded (CONNACK, PUBACK, PINGRESP): a stalled broker raises OSError(ETIMEDOUT);
# - QoS 1 publish with a caller-chosen packet id and the DUP flag, so a batch whose PUBACK was lost is
#   retransmitted as the same message after reconnecting into the persistent session (clean_session=False);
# - a broker refusal is an MqttRefused with the reason, not an assert.
# `phase` says how far the last connect got ("dns", "tcp", "tls", "mqtt", "up") for error reporting.
import errno
import socket
import time

from paced_socket import PacedSocket
from umqtt.simple import MQTTClient

REFUSALS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MqttRefused(OSError):
    pass


class MqttLink(MQTTClient):
    def __init__(self, client_id, server, port, ssl_context=None, keepalive=60, idle=None, timeout_ms=5000,
                 clock=time, drain=None):
        super().__init__(client_id, server, port=port, keepalive=keepalive)
        self.ssl_context = ssl_context
        self.idle = idle or (lambda: None)
        self.drain = drain  # a sensor drain regardless of schedule: run before each TLS handshake call
        self.timeout_ms = timeout_ms
        self.clock = clock
        self.phase = "down"
        self.addr = None  # the broker's socket address; None: getaddrinfo(server) at connect
        self._hdr = bytearray(5)
        self.last_tx = clock.ticks_ms()

    def connect(self, clean_session=False):
        self.phase = "dns"
        if self.addr is None:
            self.addr = socket.getaddrinfo(self.server, self.port)[0][-1]
        self.phase = "tcp"
        raw = socket.socket()
        try:  # small MQTT writes must not wait for Nagle + delayed ACK (~40 ms per PUBACK round trip)
            raw.setsockopt(getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1), 1)  # Linux = lwIP
        except (OSError, AttributeError):
            pass
        raw.setblocking(False)
        self.sock = paced = PacedSocket(raw, self.idle, self.timeout_ms, clock=self.clock, drain=self.drain)
        try:
            raw.connect(self.addr)
        except OSError as e:
            if e.errno not in (errno.EINPROGRESS, errno.EAGAIN):
                raise
        paced.wait_writable()
        if self.ssl_context is not None:
            self.phase = "tls"
            paced.start_tls(self.ssl_context, self.server)
        # With TLS the handshake runs inside the first write: an SSL write returns only once the handshake is
        # over (TLS 1.2: after the server's Finished, i.e. after it accepted our client certificate), so any
        # failure up to here is a TLS failure and anything after it is the broker's MQTT answer.
        try:
            self._send_connect(clean_session)
        except OSError as e:
            raise paced.socket_error or e  # mbedTLS saw only "end of stream" for a TCP error
        paced.handshaking = False
        self.phase = "mqtt"
        resp = self.sock.read(4)
        if len(resp) < 4 or resp[0] != 0x20 or resp[1] != 2:
            raise MqttRefused("broker closed the connection without a CONNACK")
        if resp[3]:
            raise MqttRefused("broker refused the connection: %s" % REFUSALS.get(resp[3], resp[3]))
        self.phase = "up"
        self.last_tx = self.clock.ticks_ms()
        return resp[2] & 1

    def _send_connect(self, clean_session):
        flags = (clean_session << 1) | (0x04 if self.lw_topic else 0)
        if self.lw_topic:
            flags |= (self.lw_qos << 3) | (self.lw_retain << 5)
        size = 10 + 2 + len(self.client_id)
        if self.lw_topic:
            size += 2 + len(self.lw_topic) + 2 + len(self.lw_msg)
        self._write_fixed_header(0x10, size)
        self.sock.write(b"\x00\x04MQTT\x04" + bytes((flags, self.keepalive >> 8, self.keepalive & 0xFF)))
        self._send_str(self.client_id)
        if self.lw_topic:
            self._send_str(self.lw_topic)
            self._send_str(self.lw_msg)

    def _write_fixed_header(self, first, size):
        hdr = self._hdr
        hdr[0] = first
        i = 1
        while size > 0x7F:
            hdr[i] = (size & 0x7F) | 0x80
            size >>= 7
            i += 1
        hdr[i] = size
        self.sock.write(hdr, i + 1)

    def send_publish(self, topic, msg, pid, dup=False, retain=False):
        """Send a QoS 1 PUBLISH with packet id `pid`; the PUBACK is collected by wait_puback()."""
        self._write_fixed_header(0x32 | (0x08 if dup else 0) | (1 if retain else 0), 2 + len(topic) + 2 + len(msg))
        self._send_str(topic)
        self._hdr[0] = pid >> 8
        self._hdr[1] = pid & 0xFF
        self.sock.write(self._hdr, 2)
        self.sock.write(msg)
        self.last_tx = self.clock.ticks_ms()

    def wait_puback(self, pid):
        """Return when the PUBACK for `pid` arrives; OSError(ETIMEDOUT) after timeout_ms."""
        clock = self.clock
        deadline = clock.ticks_add(clock.ticks_ms(), self.timeout_ms)
        while clock.ticks_diff(deadline, clock.ticks_ms()) > 0:
            op = self.wait_msg()
            if op == 0x40:
                self.sock.read(1)
                rcv = self.sock.read(2)
                if (rcv[0] << 8) | rcv[1] == pid:
                    return
        raise OSError(errno.ETIMEDOUT)

    def keepalive_due(self):
        idle = self.clock.ticks_diff(self.clock.ticks_ms(), self.last_tx)
        return idle >= self.keepalive * 500 or idle < 0  # negative: last_tx is over half a tick period old

    def ping_and_wait(self):
        """PINGREQ and wait for PINGRESP: a half-open connection shows up here as ETIMEDOUT or EOF."""
        self.ping()
        self.last_tx = self.clock.ticks_ms()
        while True:
            op = self.wait_msg()  # umqtt consumes PINGRESP and reports it as None
            if op is None:
                return
            if op == 0x40:  # a late PUBACK: consume it to keep the stream in step
                self.sock.read(3)

    def close(self):
        self.phase = "down"
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
