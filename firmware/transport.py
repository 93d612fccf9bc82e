# Delivery: drains the flash queue to the broker, oldest first, QoS 1; a record is acked on the queue only
# after its PUBACK. One call to step() does a bounded amount of link work (every socket wait is bounded by
# MqttLink/PacedSocket and runs the sensor drain while it waits), so the main loop stays in charge.
#
# Failure behaviour (mqtt_as-style): the first failure to reach the broker is logged clearly with its cause;
# later outages are handled silently and counted in stats(). Reconnects use capped exponential backoff with
# jitter. Records already queued are never touched by a failure: they stay until a PUBACK acks them.
import errno
import time

from backoff import Backoff
from mqtt_link import MqttRefused

# Which counter a failure lands in, by how far the connect got (MqttLink.phase).
_PHASE_COUNTER = {"dns": "dns_failures", "tcp": "connect_failures", "tls": "tls_failures",
                  "mqtt": "refused", "up": "link_lost"}

# What a TLS failure means, in words an operator can act on. mbedTLS reports a rejected server certificate as
# a ValueError carrying its verify text; a broker that rejects OUR certificate just sends an alert and closes,
# which reaches us as EPIPE/ECONNRESET (errno values as on the ESP32's lwIP/newlib) or an mbedTLS EOF/alert code.
_EPIPE = 32  # not in MicroPython's errno module; 32 on Linux and in ESP-IDF's newlib alike
_TLS_PEER_CLOSED = (_EPIPE, errno.ECONNRESET, errno.ECONNABORTED, -0x7280, -0x7780)  # mbedTLS EOF, fatal alert
_TLS_REJECTED_US = ("broker closed the TLS handshake: client certificate unknown, expired or revoked? "
                    "(or the port is not a TLS listener)")


def describe(phase, e):
    """A short, actionable cause for a failed connect or a lost link."""
    if isinstance(e, MqttRefused):
        return str(e)
    code = getattr(e, "errno", None)
    if code == errno.ETIMEDOUT:
        return "no answer from the broker (timed out during %s)" % phase
    if phase == "tls":
        if isinstance(e, ValueError):
            return "broker certificate not trusted (%s): wrong CA or wrong broker" % str(e).strip()
        if code in _TLS_PEER_CLOSED:
            return _TLS_REJECTED_US
        return "TLS handshake failed: %r" % (e,)
    if phase == "tcp" and code == errno.ECONNREFUSED:
        return "nothing listens on the broker port"
    return repr(e)


class Transport:
    def __init__(self, link, queue, device_id, network=None, log=None, backoff=None,
                 batch_records=8, batch_bytes=4096):
        self.link = link
        self.queue = queue
        self.network = network
        self.log = log
        self.backoff = backoff or Backoff()
        self.batch_records = batch_records
        self.batch_bytes = batch_bytes
        self.vitals_topic = ("oxilink/%s/vitals" % device_id).encode()
        self.status_topic = ("oxilink/%s/status" % device_id).encode()
        self.next_attempt = time.ticks_ms()
        self.sent_upto = -1  # highest queue seq ever sent: re-sending it or below sets DUP
        self.status_pending = None  # sealed status waiting to go out (retained)
        self.on_connect = None  # callback(transport): e.g. queue a fresh status report
        self.ready = None  # callable: False holds off connecting (the clock is not set: TLS would fail)
        self.ever_connected = False
        self.reported_failure = False
        self.last_error = None
        self.counts = {"connects": 0, "reconnects": 0, "dns_failures": 0, "connect_failures": 0,
                       "tls_failures": 0, "refused": 0, "link_lost": 0, "network_down": 0,
                       "published": 0, "retransmitted": 0, "acked": 0}

    @property
    def up(self):
        return self.link.phase == "up"

    def step(self):
        """Do one bounded piece of link work. Returns True when the link is up afterwards."""
        if not self.up:
            if time.ticks_diff(time.ticks_ms(), self.next_attempt) < 0:
                return False
            return self._connect()
        if self.network is not None and not self.network.up():
            # Wi-Fi gone: the socket would only find out at the next timeout. Drop it now; records stay queued
            # and anything in flight is retransmitted with DUP after reconnecting.
            self.counts["network_down"] += 1
            self.last_error = "network_down: Wi-Fi lost while connected"
            self.link.close()
            self._schedule_retry()
            return False
        try:
            if self.status_pending is not None:
                self.link.send_publish(self.status_topic, self.status_pending, 1, retain=True)
                self.link.wait_puback(1)
                self.status_pending = None
            batch = self.queue.peek_batch(self.batch_records, self.batch_bytes)
            if len(batch):
                self._deliver(batch)
            elif self.link.keepalive_due():
                self.link.ping_and_wait()
        except Exception as e:  # any failure on a live link: drop it, reconnect later
            self._failed(e)
            return False
        return True

    def _deliver(self, batch):
        link = self.link
        pids = []
        for seq, record in zip(batch.seqs, batch.records):
            dup = seq <= self.sent_upto
            pid = 2 + seq % 65534  # 1 is reserved for status; ids stay stable across reconnects
            link.send_publish(self.vitals_topic, record, pid, dup=dup)
            pids.append(pid)
            self.counts["retransmitted" if dup else "published"] += 1
            if seq > self.sent_upto:
                self.sent_upto = seq
        for pid in pids:  # the broker answers in order
            link.wait_puback(pid)
        self.queue.ack(batch)
        self.counts["acked"] += len(pids)

    def _connect(self):
        if self.network is not None and not self.network.up():
            self.counts["network_down"] += 1
            self._schedule_retry()
            return False
        if self.ready is not None and not self.ready():
            return False  # not a failure: nothing was tried
        try:
            self.link.connect(clean_session=False)
        except Exception as e:
            self._failed(e)
            return False
        self.backoff.reset()
        self.counts["connects"] += 1
        if self.ever_connected:
            self.counts["reconnects"] += 1
        elif self.log:
            self.log.info("connected to broker %s:%d" % (self.link.server, self.link.port))
        self.ever_connected = True
        if self.on_connect:
            self.on_connect(self)
        return True

    def _failed(self, e):
        phase = self.link.phase
        key = "refused" if isinstance(e, MqttRefused) else _PHASE_COUNTER.get(phase, "link_lost")
        self.counts[key] += 1
        self.last_error = "%s during %s: %s" % (key, phase, describe(phase, e))
        self.link.close()
        self._schedule_retry()
        if self.log and not self.reported_failure and not self.ever_connected:
            self.log.error("cannot reach broker %s:%d: %s; retrying with backoff, readings stay queued"
                           % (self.link.server, self.link.port, self.last_error))
            self.reported_failure = True
        elif self.log:
            self.log.debug(self.last_error)

    def _schedule_retry(self):
        self.next_attempt = time.ticks_add(time.ticks_ms(), self.backoff.next_ms())

    def stats(self):
        s = dict(self.counts)
        s["up"] = self.up
        s["last_error"] = self.last_error
        return s
