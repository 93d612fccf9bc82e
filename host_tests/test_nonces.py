"""Nonces that never repeat (docs/format.md, "Key material"): every deploy brings a fresh kid, key and Base IV
(provision.deploy_keys), the board binds its counter to the kid and starts a key at 0 only once, and the
receiver keys duplicates and replays on (kid, counter).

The boards are the firmware on the unix port (host_tests/mp/sim_device.py: the real app.Device, LittleFS on
a RAM flash that can be saved and reloaded across runs), delivering through real Mosquitto to a real
`oxilink receive`. Every message on the wire is captured: no (kid, Partial IV) pair may ever carry two
different ciphertexts, and every reading every board sealed must be in the database.
"""

from __future__ import annotations

import hashlib
import json
import queue
import ssl
import threading
from collections import defaultdict

import cbor2
import paho.mqtt.client as mqtt
import pytest
from devicerun import DeviceProcess
from receiverrun import ReceiverProcess

from oxilink.broker import RECEIVER_CN
from oxilink.provision import deploy_keys, load_identity, provision_device
from oxilink.receiver.audit import AuditLog, default_actor
from oxilink.receiver.registry import DeviceRegistry

BOARD = """
from binascii import hexlify
from sim_device import SimDevice, say
d = SimDevice()
say("keys", {"kid": hexlify(d.keys.kid).decode(), "resumed_at": d.dev.sealer.counter.resumed_at})
o = d.opts
ok = d.run_until(lambda: len(d.sealed) >= o["batches"] and d.drained(), 120)
if o.get("queued", 0):  # then a few more that stay in the queue: the network is gone
    d.network.available = False
    n = len(d.sealed) + o["queued"]
    d.run_until(lambda: len(d.sealed) >= n, 120)
say("report", dict(d.report(), ok=ok))
if d.flash_image:
    d.save_flash()
"""


class Wire:
    """Every sealed message the broker delivers on oxilink/#, by (kid, Partial IV). A persistent session
    (clean_session false, QoS 1): a broker restart in the middle loses nothing of the capture either."""

    def __init__(self, broker, pki):
        ident = pki.issue(RECEIVER_CN)
        self.messages: queue.Queue = queue.Queue()
        self.subscribed = threading.Event()
        c = self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{RECEIVER_CN}/wire",
                                      clean_session=False)
        c.tls_set(ca_certs=str(pki.cert_path), certfile=str(ident.cert), keyfile=str(ident.key),
                  cert_reqs=ssl.CERT_REQUIRED)
        c.on_connect = lambda client, *a: client.subscribe("oxilink/#", 1)
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = lambda client, userdata, m: self.messages.put(bytes(m.payload))
        c.connect("localhost", broker.port)
        c.loop_start()
        if not self.subscribed.wait(10):
            raise TimeoutError("wire capture: no SUBACK")
        self.seen: dict[tuple[bytes, int], set[str]] = defaultdict(set)

    def collect(self, quiet: float = 2.0) -> None:
        while True:
            try:
                payload = self.messages.get(timeout=quiet)
            except queue.Empty:
                return
            _protected, unprotected, _ct = cbor2.loads(payload).value
            piv = int.from_bytes(unprotected[6], "big")
            self.seen[unprotected[4], piv].add(hashlib.sha256(payload).hexdigest())

    def repeats(self) -> list[tuple[str, int]]:
        """(kid, PIV) pairs that carried two different messages: nonce reuse."""
        return [(kid.hex(), piv) for (kid, piv), digests in self.seen.items() if len(digests) > 1]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def rig(tmp_path, broker, pki):
    rx = ReceiverProcess(tmp_path / "rx", broker, pki)
    rx.folder.mkdir()
    registry = DeviceRegistry(rx.registry_path, AuditLog(rx.audit_path, default_actor("provision")))
    wire = Wire(broker, pki)
    rx.start()
    yield rx, registry, wire
    wire.close()
    if rx.proc:
        rx.stop()


def run_board(tmp_path, name, broker, ident, **opts) -> tuple[dict, dict]:
    with DeviceProcess(tmp_path / name, BOARD, {"secrets": str(ident.folder), "port": broker.port, "speed": 5,
                                                 "batch_seconds": 5, "batches": 5, **opts}, heapsize="4M") as dev:
        keys = dev.expect("keys")
        report = dev.finish(timeout=180)
    assert report["ok"], report
    return keys, report


def stored(rx, kid_hex: str) -> list[int]:
    return [c for (c,) in rx.rows("SELECT counter FROM messages WHERE kind = 'vitals' AND hex(kid) = ? "
                                  "ORDER BY counter", kid_hex.upper())]


def test_deploy_keys_rotates_and_the_marker_names_the_new_key(tmp_path):
    registry = DeviceRegistry(tmp_path / "devices.json")
    first = provision_device("dev-k", root=tmp_path)
    registry.register_device("dev-k", first.kid, first.key, first.base_iv)
    dry = deploy_keys("dev-k", root=tmp_path, registry=registry, dry_run=True)
    assert load_identity("dev-k", tmp_path).kid == first.kid  # a dry run changes nothing
    files = deploy_keys("dev-k", root=tmp_path, registry=registry)
    assert files == dry == [(first.folder / "secrets.json", "secrets.json"),
                            (first.folder / "counter.fresh", "counter.fresh")]
    new = load_identity("dev-k", tmp_path)
    assert new.kid != first.kid and new.key != first.key and new.base_iv != first.base_iv
    assert (first.folder / "counter.fresh").read_text().strip() == new.kid.hex()
    assert [e.state(registry.clock()) for e in (registry.entries(first.kid) + registry.entries(new.kid))] == \
        ["valid", "valid"]  # the old key stays valid for the overlap: its queued records still get in
    assert registry.entries(first.kid)[0].not_after is not None and registry.entries(new.kid)[0].not_after is None
    # for a week (README: "the receiver keeps the previous ones valid for a week"), then no longer
    week = 7 * 24 * 3600
    assert abs(registry.entries(first.kid)[0].not_after - (registry.clock() + week)) < 60


def test_erase_and_redeploy_never_reuses_a_nonce(tmp_path, broker, rig, secrets_root, mpbuild):
    rx, registry, wire = rig
    ident = provision_device(f"dev-erase-{mpbuild}", root=secrets_root)
    deploy_keys(ident.device_id, root=secrets_root, registry=registry)
    k1, r1 = run_board(tmp_path, "life1", broker, ident)
    # `make erase`, then the same secrets copied back by hand (no new marker): the board refuses to seal
    with DeviceProcess(tmp_path / "copied", "from sim_device import SimDevice\nSimDevice()\n",
                       {"secrets": str(ident.folder), "port": broker.port, "deploy": False}) as dev:
        dev.proc.wait(60)
    assert dev.proc.returncode != 0 and "KeyNotFresh" in dev.output and "may already have been used" in dev.output
    # `make erase` + `make deploy`: a fresh key, from counter 0 again
    deploy_keys(ident.device_id, root=secrets_root, registry=registry)
    k2, r2 = run_board(tmp_path, "life2", broker, ident)
    assert k1["kid"] != k2["kid"] and k1["resumed_at"] == k2["resumed_at"] == 0
    rx.wait_for(lambda s: s["stored"] >= len(r1["sealed"]) + len(r2["sealed"]), what="both lives")
    wire.collect()
    assert wire.repeats() == []
    assert stored(rx, k1["kid"]) == r1["sealed"] and stored(rx, k2["kid"]) == r2["sealed"]
    assert rx.stats()["duplicates"] == 0 and rx.stats()["rejected"] == 0
    assert rx.rows("SELECT COUNT(*) FROM readings")[0][0] == r1["readings"] + r2["readings"]


def test_redeploy_without_erase_delivers_the_old_keys_queue_and_starts_the_new_key_at_0(
        tmp_path, broker, rig, secrets_root, mpbuild):
    rx, registry, wire = rig
    ident = provision_device(f"dev-redeploy-{mpbuild}", root=secrets_root)
    deploy_keys(ident.device_id, root=secrets_root, registry=registry)
    image = str(tmp_path / "flash.img")
    k1, r1 = run_board(tmp_path, "before", broker, ident, flash_image=image, queued=3)
    assert r1["depth"] >= 3  # sealed under the old key, still on the board's flash
    deploy_keys(ident.device_id, root=secrets_root, registry=registry)  # redeploy: same flash, new key
    k2, r2 = run_board(tmp_path, "after", broker, ident, flash_image=image)
    assert k2["kid"] != k1["kid"] and k2["resumed_at"] == 0
    rx.wait_for(lambda s: s["stored"] >= len(r1["sealed"]) + len(r2["sealed"]), what="old queue and new batches")
    wire.collect()
    assert wire.repeats() == []
    assert stored(rx, k1["kid"]) == r1["sealed"]  # the old key's queued batches arrived after the redeploy
    assert stored(rx, k2["kid"]) == r2["sealed"]
    assert rx.stats()["duplicates"] == 0 and rx.stats()["rejected"] == 0


def test_one_device_id_on_two_boards(tmp_path, broker, rig, secrets_root, mpbuild):
    """Deployed twice, to two boards: two keys, two client ids (<id>/<board id>), both boards' readings
    stored, no session fight, no nonce reuse."""
    rx, registry, wire = rig
    ident = provision_device(f"dev-twin-{mpbuild}", root=secrets_root)
    deploy_keys(ident.device_id, root=secrets_root, registry=registry)
    opts = {"secrets": str(ident.folder), "port": broker.port, "speed": 5, "batch_seconds": 5, "batches": 6}
    with DeviceProcess(tmp_path / "board-a", BOARD, opts, heapsize="4M") as a:
        ka = a.expect("keys")  # board A booted with its key: now deploy the same id to board B
        deploy_keys(ident.device_id, root=secrets_root, registry=registry)
        with DeviceProcess(tmp_path / "board-b", BOARD, opts, heapsize="4M") as b:
            kb = b.expect("keys")
            ra, rb = a.finish(timeout=180), b.finish(timeout=180)
    assert ka["kid"] != kb["kid"] and ra["ok"] and rb["ok"]
    rx.wait_for(lambda s: s["stored"] >= len(ra["sealed"]) + len(rb["sealed"]), what="both boards")
    wire.collect()
    assert wire.repeats() == []
    assert stored(rx, ka["kid"]) == ra["sealed"] and stored(rx, kb["kid"]) == rb["sealed"]
    assert rx.stats()["duplicates"] == 0 and rx.stats()["rejected"] == 0
    assert ra["transport"]["connects"] == rb["transport"]["connects"] == 1  # never kicked off by the twin
    print(json.dumps({"board_a": {"kid": ka["kid"], "batches": len(ra["sealed"])},
                      "board_b": {"kid": kb["kid"], "batches": len(rb["sealed"])},
                      "kid_piv_pairs_seen": len(wire.seen), "repeats": 0}))


def test_same_key_on_two_boards_is_what_the_fresh_keys_prevent(tmp_path, broker, rig, secrets_root, mpbuild):
    """The failure the fresh keys exist for, shown with the same harness: the same key (and marker) on two
    erased boards makes both start at 0, the wire carries repeated (kid, PIV) pairs, and the receiver can
    only keep one of each: readings are lost. (The harness copies the marker like a hand copy would.)"""
    rx, registry, wire = rig
    ident = provision_device(f"dev-same-{mpbuild}", root=secrets_root)
    deploy_keys(ident.device_id, root=secrets_root, registry=registry)
    _, ra = run_board(tmp_path, "one", broker, ident, batches=3)
    _, rb = run_board(tmp_path, "two", broker, ident, batches=3)
    kid = load_identity(ident.device_id, secrets_root).kid.hex()
    rx.wait_for(lambda s: s["received"] >= len(ra["sealed"]) + len(rb["sealed"]), what="both")
    wire.collect()
    assert wire.repeats() != []  # the same nonce for two different plaintexts
    assert stored(rx, kid) == sorted(set(ra["sealed"]) | set(rb["sealed"]))  # one of each pair, the other lost
    assert len(stored(rx, kid)) < len(ra["sealed"]) + len(rb["sealed"]) and rx.stats()["duplicates"] > 0
