"""The receiver acknowledges a message to the broker only after it is durable (docs/receiver.md, "Ingest and
acknowledgement"): killed at any moment, or stopped by a database or disk error, it loses nothing and
stores nothing twice once it runs again, because whatever it had not committed was never acked and the
broker re-sends it into the persistent session.

Each test runs `oxilink receive` as a process against a real Mosquitto, breaks it in a way SIGTERM's orderly
drain cannot hide (SIGKILL; a full disk; a read-only file system; PostgreSQL going away), restarts it, and
reads the database back: every (device, counter) published is there exactly once. A receiver that acked on
receipt fails each of them (the acked, uncommitted messages are gone).

`synchronous=FULL` (the commit is on disk before the ack) is checked on the system calls: under strace,
every commit of the receiver fsyncs the SQLite write-ahead log, and with `--sync normal` none does."""

from __future__ import annotations

import contextlib
import errno
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_receiver_ingest import ReceiverProcess

from mqtt_peer import Peer
from oxilink.receiver.audit import verify
from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.registry import DeviceRegistry

pytest_plugins = ["pgserver"]

START = int(time.time()) - 7 * 24 * 3600  # a week ago: inside the receiver's plausibility window


# --- helpers ---------------------------------------------------------------------------------------------

def relocate(rx: ReceiverProcess, *, db: str | None = None, audit: Path | None = None) -> None:
    """Point the receiver's database and/or audit log elsewhere (a tmpfs, PostgreSQL); stats and log stay."""
    for flag, value in (("--db", db), ("--audit", audit)):
        if value is not None:
            rx.args[rx.args.index(flag) + 1] = str(value)


def stored(db: str | Path) -> list[tuple[str, int]]:
    """(device, counter) of every stored message, sorted, read from SQLite or PostgreSQL."""
    text = str(db)
    sql = "SELECT device, counter FROM messages ORDER BY device, counter"
    if text.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(text) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
    with contextlib.closing(sqlite3.connect(f"file:{text}?mode=ro", uri=True, timeout=30)) as conn:
        return conn.execute(sql).fetchall()


def reading_count(db: str | Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]


def wait_stored(db: str | Path, n: int, rx: ReceiverProcess | None = None, timeout: float = 90.0) -> list:
    deadline = time.monotonic() + timeout
    rows: list = []
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.OperationalError):  # the first moments: no tables yet
            rows = stored(db)
        if len(rows) >= n:
            return rows
        if rx is not None and rx.proc is not None and rx.proc.poll() is not None:
            pytest.fail(f"receiver exited ({rx.proc.returncode}) with {len(rows)} of {n} stored:\n{rx.log()}")
        time.sleep(0.05)
    pytest.fail(f"{len(rows)} of {n} messages stored after {timeout} s" + (f"\n{rx.log()}" if rx else ""))


def wait_exit(rx: ReceiverProcess, timeout: float = 60.0) -> int:
    assert rx.proc is not None
    try:
        rc = rx.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"receiver still running {timeout} s after the fault:\n{rx.log()}")
    rx.proc = None
    return rc


class Fleet:
    """Devices registered with the receiver, each with a publishing MQTT client holding its certificate."""

    def __init__(self, rx: ReceiverProcess, broker, pki, names: list[str]):
        self.devices = [SimDevice.new(n) for n in names]
        registry = DeviceRegistry(rx.registry_path)
        for d in self.devices:
            d.register(registry)
        self.peers = [Peer(broker, pki.issue(d.device_id), pki.cert_path) for d in self.devices]
        self.sent: list[tuple[str, int]] = []

    def publish(self, per_device: int, wait: bool = True, only: str | None = None) -> None:
        """per_device new sealed batches from every device (or only that one), QoS 1; with wait, until the
        broker has them all."""
        infos = []
        for d, p in zip(self.devices, self.peers, strict=True):
            for _ in range(per_device if only in (None, d.device_id) else 0):
                counter = d.counter + 1
                infos.append(p.client.publish(d.topic(), d.sealed_batch(START + 30 * counter), qos=1))
                self.sent.append((d.device_id, counter))
        if wait:
            for info in infos:
                info.wait_for_publish(60)

    def expected(self) -> list[tuple[str, int]]:
        return sorted(self.sent)

    def close(self) -> None:
        for p in self.peers:
            p.close()


@pytest.fixture
def rx(tmp_path, broker, pki):
    r = ReceiverProcess(tmp_path, broker, pki)
    yield r
    if r.proc is not None and r.proc.poll() is None:
        r.proc.kill()
        r.proc.wait(10)


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, size): a fresh tmpfs of that size under tmp_path (we are root); unmounted afterwards."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], check=True)


def remount(path: Path, mode: str) -> None:
    """Remount a tmpfs ro or rw; retried while a write is in progress (EBUSY)."""
    deadline = time.monotonic() + 10
    while True:
        r = subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], capture_output=True, text=True)
        if r.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"remount {mode} {path}: {r.stderr}")
        time.sleep(0.05)


def fill(folder: Path) -> Path:
    """Fill the file system holding folder until a write fails with ENOSPC; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return filler


# --- crashes -----------------------------------------------------------------------------------------------

def count_stored(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]


def test_sigkill_mid_stream_at_several_points_loses_nothing_and_stores_nothing_twice(tmp_path, broker, pki, rx):
    """Three times: a backlog of 500 batches (four devices) builds up while the receiver is paused, it resumes,
    and as soon as its first commit of them lands it is killed: most of the backlog is then in flight, received
    or still at the broker. A last 500 go through undisturbed. Commits of at most 20 keep each kill mid-backlog."""
    fleet = Fleet(rx, broker, pki, [f"dev-k{i}" for i in range(4)])
    rx.args += ["--max-batch", "20"]
    rx.start()
    kills = []
    for _ in range(3):
        rx.proc.send_signal(signal.SIGSTOP)
        fleet.publish(125)  # the broker has them all, queued for the paused receiver's session
        before = count_stored(rx.db_path)
        rx.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 60
        while count_stored(rx.db_path) == before:
            assert time.monotonic() < deadline and rx.proc.poll() is None, rx.log()
            time.sleep(0.002)
        rx.proc.send_signal(signal.SIGKILL)  # no drain, no disconnect: whatever was in flight is cut
        assert wait_exit(rx) == -signal.SIGKILL
        kills.append((before, count_stored(rx.db_path), len(fleet.sent)))
        rx.start()  # same client id: the broker resumes the session and re-sends everything not acked
    fleet.publish(125)
    rows = wait_stored(rx.db_path, 2000, rx)
    assert rx.stop() == 0
    fleet.close()
    print(f"(stored before the backlog, stored when killed, published): {kills}")
    assert rows == fleet.expected()  # every batch, once
    assert reading_count(rx.db_path) == 2000 * 30
    for before, at_kill, published in kills:
        assert before < at_kill < published  # each kill landed inside its backlog
    assert verify(rx.audit_path)[1] == []  # the audit chain survives the kills too


def test_first_connection_failure_is_loud(tmp_path, broker, pki, rx):
    """docs/receiver.md: the first connection to the broker fails loudly (exit with the error)."""
    from oxilink.broker import free_port

    rx.args[rx.args.index("--broker") + 1] = f"localhost:{free_port()}"
    rx.proc = subprocess.Popen(rx.args, stdout=subprocess.DEVNULL, stderr=open(rx.log_path, "ab"))
    assert wait_exit(rx, 60) != 0
    assert "Connection refused" in rx.log(), rx.log()


def test_broker_restart_mid_stream_is_handled_without_loss(tmp_path, broker, pki, rx):
    """Later outages are handled: the broker restarts while the receiver works through a backlog; the receiver
    reconnects into its session, and what it had not acked on the old connection comes back, once."""
    fleet = Fleet(rx, broker, pki, ["dev-br-a", "dev-br-b"])
    rx.args += ["--max-batch", "1"]  # one commit (and fsync) per message: the backlog lasts a while
    rx.start()
    fleet.publish(300)
    wait_stored(rx.db_path, 50, rx)
    broker.stop()  # Mosquitto saves the receiver's session and its queued messages (persistence true)
    at_restart = len(stored(rx.db_path))
    broker.start()
    rows = wait_stored(rx.db_path, 600, rx)
    stats = rx.wait_for(lambda s: s["subscribed"] and s["stored"] >= 600, "the resubscription")
    assert rx.stop() == 0
    fleet.close()
    print(f"stored before the broker restart: {at_restart} of 600")
    assert rows == fleet.expected()
    assert at_restart < 600 and stats["stored"] == 600  # the same process: it was not restarted


# --- database and disk errors ----------------------------------------------------------------------------

def test_full_disk_stops_ingest_without_acking_and_resumes_without_loss(tmp_path, broker, pki, rx, tmpfs):
    data = tmpfs("data", "16m")
    relocate(rx, db=data / "readings.sqlite", audit=data / "audit.log")
    db = data / "readings.sqlite"
    fleet = Fleet(rx, broker, pki, ["dev-full"])
    rx.start()
    fleet.publish(100)
    wait_stored(db, 100, rx)
    filler = fill(data)
    fleet.publish(100)  # the broker takes them; the receiver cannot store them
    rc = wait_exit(rx)
    log = rx.log()
    assert rc == 1 and f"database {db} failed: database or disk is full; stopped without acknowledging" in log, log
    assert len(stored(db)) == 100  # the failed transaction left nothing behind
    filler.unlink()
    rx.start()
    rows = wait_stored(db, 200, rx)
    # stats are written after the commit: wait for the stored count (received can show first)
    second = rx.wait_for(lambda s: s["stored"] >= 100, "the re-sent batches stored")
    assert rx.stop() == 0
    fleet.close()
    assert rows == fleet.expected()
    assert second["stored"] == 100  # the broker still had every one of them: none was acked
    assert verify(data / "audit.log")[1] == []


def test_read_only_audit_log_mid_stream_stops_without_acking_and_resumes_without_loss(
        tmp_path, broker, pki, rx, tmpfs):
    """The store commits, the audit append fails (read-only file system): the messages are on disk but must
    not be acked, since their audit entries (here: a new device's first message, `device_seen`) are not.
    They come back and count as duplicates."""
    audit_dir = tmpfs("audit", "4m")
    relocate(rx, audit=audit_dir / "audit.log")
    fleet = Fleet(rx, broker, pki, ["dev-ro-a", "dev-ro-b"])
    rx.start()
    fleet.publish(50, only="dev-ro-a")
    wait_stored(rx.db_path, 50, rx)
    remount(audit_dir, "ro")
    fleet.publish(50, only="dev-ro-b")
    rc = wait_exit(rx)
    log = rx.log()
    assert rc != 0 and "Read-only file system" in log, log
    committed_unacked = len(stored(rx.db_path)) - 50
    remount(audit_dir, "rw")
    rx.start()
    rows = wait_stored(rx.db_path, 100, rx)
    again = rx.wait_for(lambda s: s["stored"] >= 50 - committed_unacked and s["duplicates"] >= committed_unacked,
                        "the re-sent batches")
    assert rx.stop() == 0
    fleet.close()
    assert rows == fleet.expected()
    # all of the second half came back, including those already committed: none had been acked (some of the
    # first half may come back too: acked only after the failed commit, which the receiver did not reach)
    assert again["stored"] == 50 - committed_unacked and again["duplicates"] >= committed_unacked
    assert again["received"] == again["stored"] + again["duplicates"]
    assert verify(audit_dir / "audit.log")[1] == []


def test_read_only_database_refuses_to_start_and_loses_nothing(tmp_path, broker, pki, rx, tmpfs):
    data = tmpfs("data", "16m")
    relocate(rx, db=data / "readings.sqlite")
    db = data / "readings.sqlite"
    fleet = Fleet(rx, broker, pki, ["dev-rodb"])
    rx.start()
    fleet.publish(20)
    wait_stored(db, 20, rx)
    assert rx.stop() == 0
    fleet.publish(20)  # while no receiver runs: the broker keeps them for its session
    remount(data, "ro")
    rx.stats_path.unlink(missing_ok=True)
    rx.proc = subprocess.Popen(rx.args, stdout=subprocess.DEVNULL, stderr=open(rx.log_path, "ab"))
    rc = wait_exit(rx, 60)
    log = rx.log()
    assert rc == 1 and f"cannot open the database {db}: " in log and "read-only file system?" in log, log
    assert not rx.stats() or not rx.stats()["subscribed"]  # it never subscribed, so it acked nothing
    remount(data, "rw")
    rx.start()
    rows = wait_stored(db, 40, rx)
    assert rx.stop() == 0
    fleet.close()
    assert rows == fleet.expected()


def test_postgresql_going_away_stops_ingest_without_acking_and_resumes_without_loss(tmp_path, broker, pki, rx):
    from pgserver import PostgresServer

    with PostgresServer() as server:  # its own server: this test stops it
        url = server.create_database()
        relocate(rx, db=url)
        fleet = Fleet(rx, broker, pki, ["dev-pg"])
        rx.start()
        fleet.publish(100)
        wait_stored(url, 100, rx)
        server.halt()  # the database server stops (fast shutdown: our connection is terminated)
        fleet.publish(100)
        rc = wait_exit(rx)
        assert rc == 1 and f"database {url} failed: " in rx.log(), rx.log()
        server.resume()
        assert len(stored(url)) == 100
        rx.start()
        rows = wait_stored(url, 200, rx)
        again = rx.wait_for(lambda s: s["stored"] >= 100, "the re-sent batches stored")
        assert rx.stop() == 0
        fleet.close()
    assert rows == fleet.expected()
    assert again["stored"] == 100


# --- synchronous=FULL -----------------------------------------------------------------------------------

def wal_syncs(strace_log: Path, name: str) -> int:
    """fsync/fdatasync calls on files whose path ends with name, in an `strace -y` log."""
    pattern = re.compile(r"\b(?:fsync|fdatasync)\(\d+<[^>]*" + re.escape(name) + r">\) = 0")
    return len(pattern.findall(strace_log.read_text()))


STORE_WRITES = """
import sys, time
from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.model import Accepted
from oxilink.receiver.store import open_store
from oxilink.sealed import decode_batch
path, sync = sys.argv[1:3]
store = open_store(path) if sync == "default" else open_store(path, synchronous=sync)
dev = SimDevice.new("dev-fsync")
for counter in range(1, 6):  # five transactions
    batch = decode_batch(dev.batch_payload(1767225600 + 30 * counter))
    store.write([Accepted(dev.topic(), "vitals", dev.device_id, dev.kid, counter, time.time(), batch=batch)])
store.close()
"""


def test_store_commit_is_fsynced_before_write_returns(tmp_path):
    """SQLiteStore's default is synchronous=FULL: each write() (one transaction) fsyncs the write-ahead log
    before it returns. NORMAL, the control, syncs the log only when it creates it and when it checkpoints it
    (at close): the counts tell the two apart by one sync per commit."""
    counts = {}
    for sync in ("default", "NORMAL"):
        trace = tmp_path / f"strace-{sync}.log"
        subprocess.run(["strace", "-f", "-qq", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace),
                        sys.executable, "-c", STORE_WRITES, str(tmp_path / f"{sync}.sqlite"), sync],
                       check=True, timeout=120)
        counts[sync] = wal_syncs(trace, f"{sync}.sqlite-wal")
    assert counts["NORMAL"] <= 2 and counts["default"] >= counts["NORMAL"] + 5, counts


def receiver_children(pid: int) -> list[int]:
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(k) for k in kids]


def test_receiver_fsyncs_every_commit_before_acking(tmp_path, broker, pki):
    """The receiver as shipped (no --sync) fsyncs the write-ahead log at every commit, i.e. before it acks;
    `--sync normal`, the control, syncs it only when creating and checkpointing it."""
    counts = {}
    for sync in ("default", "normal"):
        folder = tmp_path / sync
        folder.mkdir()
        rx = ReceiverProcess(folder, broker, pki, f"rx-{sync}")
        trace = folder / "strace.log"
        rx.args = ["strace", "-f", "-qq", "--seccomp-bpf", "-y", "-e", "trace=fsync,fdatasync", "-o", str(trace),
                   *rx.args, *(["--sync", sync] if sync != "default" else [])]
        fleet = Fleet(rx, broker, pki, [f"dev-{sync}"])
        try:
            rx.start()
            for n in range(1, 6):  # five messages, one commit each
                fleet.publish(1)
                wait_stored(rx.db_path, n, rx)
            (child,) = receiver_children(rx.proc.pid)
            subprocess.run(["kill", "-TERM", str(child)], check=True)
            assert wait_exit(rx) == 0
        finally:
            fleet.close()
            if rx.proc is not None:
                rx.proc.kill()
        counts[sync] = wal_syncs(trace, "readings.sqlite-wal")
    print(f"fsyncs of the write-ahead log for 5 commits: {counts}")
    assert counts["normal"] <= 2 and counts["default"] >= counts["normal"] + 5, counts


def test_the_committer_acks_only_after_the_pipeline_returned():
    """The order itself, deterministically (the SIGKILL test catches an ack-before-commit only when a kill
    lands in the gap): PUBACKs follow a returned Pipeline.process(), none follow a failed one, and a message
    of an older connection (its mid means nothing on this one) is never acked."""
    from oxilink.receiver.ingest import Receiver

    events: list[tuple] = []

    class Pipeline:
        fail = False

        def process(self, messages):
            if self.fail:
                raise sqlite3.OperationalError("database or disk is full")
            events.append(("committed", [payload for _, payload in messages]))

    class Client:
        def ack(self, mid, qos):
            events.append(("ack", mid))

    r = object.__new__(Receiver)  # the committer alone: no broker, no paho thread
    r.pipeline, r.client, r._generation = Pipeline(), Client(), 2
    r._commit([("oxilink/a/vitals", b"1", 11, 1, 2), ("oxilink/a/vitals", b"2", 12, 1, 2),
               ("oxilink/a/vitals", b"3", 13, 1, 1)])
    assert events == [("committed", [b"1", b"2", b"3"]), ("ack", 11), ("ack", 12)]
    events.clear()
    r.pipeline.fail = True
    with pytest.raises(sqlite3.OperationalError):
        r._commit([("oxilink/a/vitals", b"4", 14, 1, 2)])
    assert events == []
