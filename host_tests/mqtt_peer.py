"""CPython MQTT peers for tests: a paho-mqtt subscriber/publisher with a client certificate."""

from __future__ import annotations

import queue
import ssl
import threading
import time

import paho.mqtt.client as mqtt


class Peer:
    def __init__(self, broker, identity, ca_path, client_id: str | None = None, host: str = "localhost"):
        self.messages: queue.Queue = queue.Queue()
        self.connected = threading.Event()
        # The broker takes only client ids in the certificate's namespace: "<CN>" or "<CN>/<suffix>".
        client_id = client_id or f"{identity.common_name()}/peer-{id(self)}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.tls_set(ca_certs=str(ca_path), certfile=str(identity.cert), keyfile=str(identity.key),
                            cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_connect = lambda c, u, f, rc, p=None: self.connected.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload), m.retain))
        self.client.connect(host, broker.port)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise TimeoutError("peer could not connect")

    def subscribe(self, topic: str, qos: int = 1) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos)
        if not done.wait(10):
            raise TimeoutError("no SUBACK")

    def get(self, timeout: float = 5.0):
        return self.messages.get(timeout=timeout)

    def drain(self, quiet: float = 1.0) -> list[tuple[str, bytes, bool]]:
        """Every message received until none arrives for `quiet` seconds."""
        out = []
        while True:
            try:
                out.append(self.messages.get(timeout=quiet))
            except queue.Empty:
                return out

    def collect_until(self, match, timeout: float = 30.0) -> list[tuple[str, bytes, bool]]:
        """Every message received up to and including the first for which match(topic, payload) is true (a
        payload: that payload). Absence is then proven by order, not by a quiet window: whatever was sent
        before the marker and did not come before it never arrived."""
        if isinstance(match, bytes):
            marker = match
            match = lambda topic, payload: payload == marker  # noqa: E731
        out = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no matching message within {timeout} s; got {out}") from None
            out.append(msg)
            if match(msg[0], msg[1]):
                return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
