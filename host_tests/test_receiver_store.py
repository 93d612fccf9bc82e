"""The store: versioned migrations, one row per (device, counter[, offset]) whatever is re-sent, the same
answers from every backend. Each contract test runs on SQLite and on a real PostgreSQL (pgserver.py)."""

from __future__ import annotations

import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from oxilink.receiver.deviceinfo import DeviceVersion, describe
from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.model import Accepted
from oxilink.receiver.store import SQLITE_MIGRATIONS, Reading, open_store
from oxilink.receiver.store_pg import PG_MIGRATIONS
from oxilink.sealed import decode_batch, decode_status, encode_status

pytest_plugins = ["pgserver"]

MAX_COUNTER = 2**63 - 1  # the highest counter verify.py lets through


def accepted(dev: SimDevice, counter: int, start: int) -> Accepted:
    return Accepted(dev.topic(), "vitals", dev.device_id, dev.kid, counter, time.time(),
                    batch=decode_batch(dev.batch_payload(start)))


def accepted_status(dev: SimDevice, counter: int) -> Accepted:
    status = decode_status(encode_status(fw="sim-1.0", board="sim", uptime_s=60, reset_cause="power-on",
                                         free_heap=90000, queue_depth=0, dropped=0, fifo_overflows=0,
                                         reconnects=0, tls_failures=0))
    return Accepted(dev.topic("status"), "status", dev.device_id, dev.kid, counter, time.time(), status=status)


@dataclass
class Backend:
    name: str
    url: str
    migrations: list
    integrity_error: type[Exception]

    def sql(self, statement: str) -> list[tuple]:
        """Runs one statement on a separate connection, committed; returns the rows (if any)."""
        if self.name == "sqlite":
            with sqlite3.connect(self.url) as db:
                return db.execute(statement).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            cur = db.execute(statement)
            return cur.fetchall() if cur.description else []


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "r.sqlite"), SQLITE_MIGRATIONS, sqlite3.IntegrityError)
    import psycopg

    return Backend("postgresql", request.getfixturevalue("postgres_url"), PG_MIGRATIONS, psycopg.IntegrityError)


def test_migrations_are_versioned_and_idempotent(backend):
    store = open_store(backend.url)
    latest = backend.migrations[-1][0]
    assert store.schema_version() == latest
    assert store.migrate() == latest  # again: nothing to do
    second = open_store(backend.url)
    assert second.schema_version() == latest  # and from a second connection
    second.close()
    store.close()
    assert [v for (v,) in backend.sql("SELECT version FROM schema_migrations ORDER BY version")] == \
        [v for v, _, _ in backend.migrations] == list(range(1, latest + 1))
    backend.sql(f"INSERT INTO schema_migrations VALUES ({latest + 1}, 'from the future', 0)")
    with pytest.raises(RuntimeError, match="newer than this oxilink"):
        open_store(backend.url)


def test_a_schema_1_database_keeps_its_batches_and_gains_device_versions(backend):
    """Batches stored before device versions existed read back with a key made of their fw and cfg; new
    batches name their stored version; device_versions() lists both in the order they first appear."""
    backend.sql("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                "applied_at REAL NOT NULL)")
    for sql in backend.migrations[0][2]:  # version 1 exactly as it shipped
        backend.sql(sql)
    backend.sql("INSERT INTO schema_migrations VALUES (1, 'messages and readings', 0)")
    kid = "x'01'" if backend.name == "sqlite" else "'\\x01'::bytea"
    t0 = 1_795_000_000
    backend.sql(f"INSERT INTO messages VALUES ('dev-a', 1, 'vitals', {kid}, 'oxilink/dev-a/vitals', 0, {t0}, 1000, "
                "'sim-1.0', 0, 1, NULL)")
    backend.sql(f"INSERT INTO readings VALUES ('dev-a', 1, 0, {t0}, 70.0, 97.0, 1.5, 0)")

    store = open_store(backend.url)
    assert store.schema_version() == backend.migrations[-1][0]
    assert [r.device_version for r in store.readings()] == ["legacy:sim-1.0:0"]
    m = accepted(SimDevice.new("dev-a"), 2, t0 + 30)
    m.device_version = DeviceVersion.of(describe("dev-a", "sim-1.0", 0, board_name="sim"))
    assert store.write([m, accepted_status(SimDevice.new("dev-a"), 3)]) == [True, True]
    assert store.device_versions() == [("dev-a", "legacy:sim-1.0:0", None),
                                       ("dev-a", m.device_version.id, m.device_version.json())]
    assert store.device_versions("dev-a", since=t0 + 30) == store.device_versions(until=t0 + 31)[1:]
    assert store.device_versions("dev-z") == []
    assert {r.device_version for r in store.readings(since=t0 + 30)} == {m.device_version.id}
    store.close()


def test_sqlite_runs_in_wal_mode(tmp_path):
    open_store(tmp_path / "r.sqlite").close()
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_rewriting_a_message_stores_nothing_twice(backend):
    store = open_store(backend.url)
    dev = SimDevice.new("dev-a")
    a, b = accepted(dev, 7, 1_795_000_000), accepted(dev, 8, 1_795_000_030)
    assert store.write([a, b, a]) == [True, True, False]
    assert store.write([b]) == [False]
    assert store.counts() == {"messages": 2, "readings": 60}
    assert store.high_counter("dev-a", dev.kid) == 8 and store.high_counter("dev-z", dev.kid) is None
    assert store.high_counter("dev-a", b"another kid") is None
    assert store.devices() == ["dev-a"]
    rows = list(store.readings("dev-a", since=1_795_000_010, until=1_795_000_040))
    assert [r.t for r in rows] == list(range(1_795_000_010, 1_795_000_040))
    assert rows[0].counter == 7 and rows[-1].counter == 8 and rows[-1].offset == 9
    store.close()
    reopened = open_store(backend.url)  # what write() returned for is committed
    assert reopened.counts() == {"messages": 2, "readings": 60} and reopened.write([a]) == [False]
    reopened.close()


def test_a_failed_transaction_leaves_nothing_behind(backend):
    store = open_store(backend.url)
    dev = SimDevice.new("dev-a")
    good = accepted(dev, 1, 1_795_000_000)
    bad = accepted(dev, 2, 1_795_000_000)
    bad.batch["readings"][3]["t"] = None  # NOT NULL: the whole group must roll back
    with pytest.raises(backend.integrity_error):
        store.write([good, bad])
    assert store.counts() == {"messages": 0, "readings": 0}
    assert store.write([good]) == [True]
    assert store.counts() == {"messages": 1, "readings": 30}
    store.close()


def test_every_backend_gives_the_same_answers(backend):
    """Device order is bytewise, withheld values come back as None, status messages have no readings,
    counters reach 2^63-1, and time filters cut inside a batch."""
    store = open_store(backend.url)
    devs = {name: SimDevice.new(name) for name in ("dev_c", "dev-a", "Dev-B")}
    t0 = 1_795_000_000
    assert store.write([accepted(devs["dev_c"], 1, t0), accepted_status(devs["dev_c"], 2),
                        accepted(devs["dev-a"], MAX_COUNTER, t0 + 15), accepted(devs["Dev-B"], 5, t0 + 5),
                        accepted(devs["Dev-B"], 4, t0 - 30)]) == [True] * 5
    assert store.devices() == ["Dev-B", "dev-a", "dev_c"]  # as sorted() orders them, not as a locale would
    assert store.counts() == {"messages": 5, "readings": 120}
    assert [store.high_counter(d, devs.get(d, devs["dev_c"]).kid) for d in ("dev_c", "dev-a", "Dev-B", "dev-c")] \
        == [2, MAX_COUNTER, 5, None]
    assert store.write([accepted(devs["dev-a"], MAX_COUNTER, t0)]) == [False]

    everything = list(store.readings())
    assert all(isinstance(r, Reading) for r in everything) and len(everything) == 120
    keys = [(r.device, r.t, r.counter, r.offset) for r in everything]
    assert keys == sorted(keys) and [k[0] for k in keys[::30]] == ["Dev-B", "Dev-B", "dev-a", "dev_c"]
    withheld = [r for r in everything if r.quality == 4]
    assert withheld and all((r.hr_bpm, r.spo2_pct, r.pi_pct) == (None, None, None) for r in withheld)
    valued = [r for r in everything if r.quality == 0]
    assert all(40 <= r.hr_bpm <= 180 and 90 <= r.spo2_pct <= 100 and r.pi_pct > 0 for r in valued)
    assert {type(r.counter) for r in everything} == {int} and {type(r.t) for r in everything} == {float}

    window = list(store.readings(since=t0 + 10, until=t0 + 20))
    assert sorted({r.device for r in window}) == ["Dev-B", "dev-a", "dev_c"]
    assert len(window) == 10 + 5 + 10 and all(t0 + 10 <= r.t < t0 + 20 for r in window)
    one = list(store.readings("dev-a", since=t0 + 40))
    assert [(r.counter, r.offset) for r in one] == [(MAX_COUNTER, o) for o in range(25, 30)]
    assert list(store.readings("dev-z")) == [] and list(store.readings(until=t0 - 30)) == []
    store.close()


def test_a_reading_iterator_left_half_way_does_not_block_writes(backend):
    store = open_store(backend.url)
    dev = SimDevice.new("dev-a")
    assert store.write([accepted(dev, 1, 1_795_000_000)]) == [True]
    rows = store.readings()
    assert next(rows).offset == 0
    rows.close()
    assert store.write([accepted(dev, 2, 1_795_000_030)]) == [True]
    store.close()
    reopened = open_store(backend.url)
    assert reopened.counts() == {"messages": 2, "readings": 60}
    reopened.close()


def test_postgresql_url_needs_psycopg_and_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(RuntimeError, match=r"psycopg\[binary\]==3\.3\.9"):
        open_store("postgresql://oxilink@127.0.0.1:1/oxilink")


def test_postgresql_url_with_no_server_fails_loudly():
    import psycopg

    with pytest.raises(psycopg.OperationalError):  # nothing listens on port 1
        open_store("postgresql://oxilink@127.0.0.1:1/oxilink")


def test_a_path_that_looks_like_a_url_is_still_sqlite(tmp_path):
    store = open_store(f"sqlite://{tmp_path / 'r.sqlite'}")
    assert store.schema_version() == SQLITE_MIGRATIONS[-1][0] and Path(tmp_path / "r.sqlite").exists()
    store.close()


def test_existing_databases_migrate_to_kid_keys(backend):
    """A database from before (device, counter) keys became (device, kid, counter): its rows keep their kid,
    readings get it from their message, and afterwards the same counter under a new key is a new message."""
    old = [m for m in backend.migrations if "kid" not in m[1] and "quarantine" not in m[1]]
    backend.sql("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                "applied_at REAL NOT NULL)")
    for version, description, statements in old:
        for statement in statements:
            backend.sql(statement)
        backend.sql(f"INSERT INTO schema_migrations VALUES ({version}, '{description}', 0)")
    blob = "X'6b31'" if backend.name == "sqlite" else "'\\x6b31'::bytea"  # kid b"k1"
    backend.sql(f"INSERT INTO messages VALUES ('dev-a', 7, 'vitals', {blob}, 'oxilink/dev-a/vitals', 1.0, "
                "1795000000, 1000, 'fw', 1, 2, NULL, NULL)")  # the last: device_version (schema v2, v3 on PG)
    backend.sql("INSERT INTO readings VALUES ('dev-a', 7, 0, 1795000000, 72.5, 97.0, 1.5, 0), "
                "('dev-a', 7, 1, 1795000001, NULL, NULL, NULL, 4)")
    store = open_store(backend.url)
    assert store.schema_version() == backend.migrations[-1][0]
    assert store.counts() == {"messages": 1, "readings": 2}
    assert [(r.kid, r.counter, r.offset, r.hr_bpm) for r in store.readings("dev-a")] == \
        [(b"k1", 7, 0, 72.5), (b"k1", 7, 1, None)]
    assert store.high_counter("dev-a", b"k1") == 7
    dev = SimDevice.new("dev-a")
    old_key, new_key = accepted(dev, 7, 1_795_000_100), accepted(dev, 7, 1_795_000_200)
    old_key.kid = b"k1"
    assert store.write([old_key, new_key]) == [False, True]  # a duplicate under k1, new under the new kid
    assert store.counts() == {"messages": 2, "readings": 32}
    assert store.quarantined() == []
    store.close()
