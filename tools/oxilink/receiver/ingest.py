"""The network side: a paho-mqtt 2.x client with mutual TLS, a persistent session and manual acks.

Two threads. paho's network thread only queues each PUBLISH (topic, payload, mid). The committer (the
thread that calls run()) takes what has queued up (up to max_batch messages, waiting at most max_delay_s
for more), runs the Pipeline (verify, one store transaction, audit fsync) and only then sends the PUBACKs.
So a message the broker considers delivered is always on disk, and one that is not acked is re-sent by the
broker: the session is persistent (MQTT v5, clean_start=False, session expiry), so that holds across a
receiver restart or a lost connection too. Re-sent messages are duplicates the store ignores.

Shutdown (SIGINT/SIGTERM sets the stop event): the committer processes and acks everything already
queued, then disconnects; whatever arrives after that is not acked and is re-sent on the next session.

Scaling: `--group NAME` subscribes to $share/NAME/oxilink/+/vitals (and /status): the broker splits the
fleet's messages between all receivers of the group, each with its own client id.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .pipeline import Pipeline

log = logging.getLogger("oxilink.receiver")

TOPICS = ("oxilink/+/vitals", "oxilink/+/status")
SESSION_EXPIRY_S = 7 * 24 * 3600
RECEIVE_MAXIMUM = 1000  # unacked QoS 1 messages the broker may have in flight to us


def client_id_for(common_name: str, wanted: str | None = None) -> str:
    """The broker takes only client ids in the certificate's namespace, "<CN>" or "<CN>/<suffix>"
    (docs/broker.md): `wanted` if it is one, else "<CN>/<wanted>" (default suffix: this host's name)."""
    wanted = wanted or socket.gethostname()
    return wanted if wanted == common_name or wanted.startswith(common_name + "/") else f"{common_name}/{wanted}"


@dataclass
class BrokerConfig:
    host: str
    port: int
    ca: Path
    cert: Path
    key: Path
    client_id: str = field(default_factory=lambda: client_id_for("oxilink-receiver"))
    group: str | None = None
    keepalive: int = 30

    def topics(self) -> list[str]:
        prefix = f"$share/{self.group}/" if self.group else ""
        return [prefix + t for t in TOPICS]


def parse_broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--broker must be HOST:PORT, got {text!r}")
    return host, int(port)


class Receiver:
    def __init__(self, broker: BrokerConfig, pipeline: Pipeline, *, max_batch: int = 1000,
                 max_delay_s: float = 0.005, stats_path: Path | None = None, stats_every_s: float = 1.0):
        self.broker = broker
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.stats_path = stats_path
        self.stats_every_s = stats_every_s
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._generation = 0  # bumped on every connect: mids of an older connection must not be acked
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.broker.client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        c.tls_set(ca_certs=str(self.broker.ca), certfile=str(self.broker.cert), keyfile=str(self.broker.key),
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(0.5, 10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        return c

    # --- paho thread ------------------------------------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self._generation += 1
        log.info("connected to %s:%d as %s (session present: %s)", self.broker.host, self.broker.port,
                 self.broker.client_id, flags.session_present)
        self.pipeline.audit.append("broker_connected", broker=f"{self.broker.host}:{self.broker.port}",
                                   client_id=self.broker.client_id, session_present=bool(flags.session_present))
        client.subscribe([(t, 1) for t in self.broker.topics()])
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad:
            log.error("subscription refused: %s", ", ".join(bad))
        else:
            self.subscribed.set()
            self.pipeline.stats.subscribed = True

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        self.subscribed.clear()
        self.pipeline.stats.subscribed = False
        if reason_code != 0:
            log.warning("lost the broker: %s (reconnecting)", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put((msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation))

    # --- committer ------------------------------------------------------------------------------------

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        self.client.connect(self.broker.host, self.broker.port, keepalive=self.broker.keepalive,
                            clean_start=False, properties=props)
        self.client.loop_start()

    def run(self, stop: threading.Event) -> None:
        """Commits and acks until stop is set, then drains what was already received and disconnects."""
        self.connect()
        last_stats = 0.0
        try:
            while not stop.is_set():
                self._commit(self._take(block_s=0.1))
                now = time.monotonic()
                if self.stats_path and now - last_stats >= self.stats_every_s:
                    self.pipeline.stats.write(self.stats_path)
                    last_stats = now
            self._commit(self._take(block_s=0.0, drain=True))
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            if self.stats_path:
                self.pipeline.stats.write(self.stats_path)

    def _take(self, block_s: float, drain: bool = False) -> list[tuple]:
        items: list[tuple] = []
        try:
            items.append(self.inbox.get(timeout=block_s) if block_s else self.inbox.get_nowait())
        except queue.Empty:
            return items
        deadline = time.monotonic() + self.max_delay_s
        while drain or len(items) < self.max_batch:
            try:
                items.append(self.inbox.get_nowait())
            except queue.Empty:
                if drain or time.monotonic() >= deadline:
                    break
                time.sleep(0.0005)
        return items

    def _commit(self, items: list[tuple]) -> None:
        if not items:
            return
        self.pipeline.process([(topic, payload) for topic, payload, *_ in items])
        generation = self._generation
        for _, _, mid, qos, gen in items:
            if qos and gen == generation:
                self.client.ack(mid, qos)
