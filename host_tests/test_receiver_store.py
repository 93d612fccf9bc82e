"""The store: versioned migrations, WAL, one row per (device, counter[, offset]) whatever is re-sent."""

from __future__ import annotations

import sqlite3
import time

import pytest

from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.model import Accepted
from oxilink.receiver.store import SQLITE_MIGRATIONS, SQLiteStore, open_store
from oxilink.sealed import decode_batch


def accepted(dev: SimDevice, counter: int, start: int) -> Accepted:
    return Accepted(dev.topic(), "vitals", dev.device_id, dev.kid, counter, time.time(),
                    batch=decode_batch(dev.batch_payload(start)))


def test_migrations_are_versioned_and_idempotent(tmp_path):
    path = tmp_path / "r.sqlite"
    store = open_store(path)
    latest = SQLITE_MIGRATIONS[-1][0]
    assert store.schema_version() == latest
    assert store.migrate() == latest  # again: nothing to do
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert [v for (v,) in db.execute("SELECT version FROM schema_migrations")] == \
            [v for v, _, _ in SQLITE_MIGRATIONS]
        db.execute("INSERT INTO schema_migrations VALUES (?, 'from the future', 0)", (latest + 1,))
    with pytest.raises(RuntimeError, match="newer than this oxilink"):
        open_store(path)


def test_rewriting_a_message_stores_nothing_twice(tmp_path):
    store = open_store(tmp_path / "r.sqlite")
    dev = SimDevice.new("dev-a")
    a, b = accepted(dev, 7, 1_795_000_000), accepted(dev, 8, 1_795_000_030)
    assert store.write([a, b, a]) == [True, True, False]
    assert store.write([b]) == [False]
    assert store.counts() == {"messages": 2, "readings": 60}
    assert store.high_counter("dev-a") == 8 and store.high_counter("dev-z") is None
    rows = list(store.readings("dev-a", since=1_795_000_010, until=1_795_000_040))
    assert [r.t for r in rows] == list(range(1_795_000_010, 1_795_000_040))
    assert rows[0].counter == 7 and rows[-1].counter == 8 and rows[-1].offset == 9
    store.close()


def test_a_failed_transaction_leaves_nothing_behind(tmp_path):
    store = SQLiteStore(tmp_path / "r.sqlite")
    store.migrate()
    dev = SimDevice.new("dev-a")
    good = accepted(dev, 1, 1_795_000_000)
    bad = accepted(dev, 2, 1_795_000_000)
    bad.batch["readings"][3]["t"] = None  # NOT NULL: the whole group must roll back
    with pytest.raises(sqlite3.IntegrityError):
        store.write([good, bad])
    assert store.counts() == {"messages": 0, "readings": 0}
    assert store.write([good]) == [True]


def test_postgresql_url_needs_psycopg_and_says_so(tmp_path):
    try:
        import psycopg  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="psycopg"):
            open_store("postgresql://oxilink@127.0.0.1:1/oxilink")
    else:
        with pytest.raises(Exception):  # noqa: B017 - nothing listens on port 1
            open_store("postgresql://oxilink@127.0.0.1:1/oxilink")
