"""Where verified messages end up: the Store interface, versioned migrations, and the SQLite backend.

Tables (the same in every backend; store_pg.py has the PostgreSQL dialect):
  messages  one row per accepted sealed message, primary key (device, counter): the device's message
            counter (the COSE Partial IV) is unique for the device's life, so a re-delivered or replayed
            message can never be stored twice.
  readings  one row per reading of a vitals batch, primary key (device, counter, offset).
  schema_migrations  the versions applied, with when.

`open_store("var/x.sqlite")` or `open_store("postgresql://...")` picks the backend. SQLite runs in WAL
mode with synchronous=FULL by default: write() returns only after the commit is on disk, which is what lets
the receiver acknowledge a message to the broker right after.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .model import Accepted

READING_COLUMNS = ("device", "counter", "offset", "t", "hr_bpm", "spo2_pct", "pi_pct", "quality")

# (version, description, statements). Append only: never edit a migration that has shipped.
SQLITE_MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "messages and readings", [
        """CREATE TABLE messages (
             device TEXT NOT NULL, counter INTEGER NOT NULL, kind TEXT NOT NULL, kid BLOB NOT NULL,
             topic TEXT NOT NULL, received_at REAL NOT NULL,
             start REAL, period_ms INTEGER, fw TEXT, cfg INTEGER, n_readings INTEGER, status_json TEXT,
             PRIMARY KEY (device, counter)) WITHOUT ROWID""",
        """CREATE TABLE readings (
             device TEXT NOT NULL, counter INTEGER NOT NULL, "offset" INTEGER NOT NULL, t REAL NOT NULL,
             hr_bpm REAL, spo2_pct REAL, pi_pct REAL, quality INTEGER NOT NULL,
             PRIMARY KEY (device, counter, "offset")) WITHOUT ROWID""",
        # Time-range queries go through the batches (30x fewer rows than readings): an index on readings
        # (device, t) would make every insert land in two scattered B-trees and halve ingest throughput.
        "CREATE INDEX messages_by_time ON messages (device, start)",
    ]),
]


@dataclass(frozen=True)
class Reading:
    device: str
    counter: int
    offset: int
    t: float
    hr_bpm: float | None
    spo2_pct: float | None
    pi_pct: float | None
    quality: int


class Store(Protocol):
    """What the receiver, the exports and the plots need from a backend."""

    def migrate(self) -> int: ...

    def schema_version(self) -> int: ...

    def write(self, messages: Sequence[Accepted]) -> list[bool]:
        """Stores the messages in one transaction, durable on return; per message, True if it was new and
        False if (device, counter) was already stored (a duplicate: nothing written)."""
        ...

    def high_counter(self, device: str) -> int | None: ...

    def readings(self, device: str | None = None, since: float | None = None,
                 until: float | None = None) -> Iterator[Reading]: ...

    def devices(self) -> list[str]: ...

    def counts(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def message_row(m: Accepted) -> tuple:
    b = m.batch or {}
    return (m.device, m.counter, m.kind, m.kid, m.topic, m.received_at, b.get("start"), b.get("period_ms"),
            b.get("fw"), b.get("cfg"), len(b["readings"]) if m.batch else None, m.status_json())


def reading_rows(m: Accepted) -> list[tuple]:
    if not m.batch:
        return []
    return [(m.device, m.counter, i, r["t"], r["hr_bpm"], r["spo2_pct"], r["pi_pct"], r["quality"])
            for i, r in enumerate(m.batch["readings"])]


def readings_query(device: str | None, since: float | None, until: float | None, mark: str) -> tuple[str, list]:
    """SELECT of readings in [since, until) for one or all devices; `mark` is the driver's placeholder.

    Narrows by batch first (messages_by_time), then reads each batch's readings by primary key. A batch
    covers [start, start + n_readings * period_ms / 1000).
    """
    conds, args = ["m.kind = 'vitals'"], []
    if device is not None:
        conds.append(f"m.device = {mark}")
        args.append(device)
    if until is not None:
        conds += [f"m.start < {mark}", f"r.t < {mark}"]
        args += [until, until]
    if since is not None:
        conds += [f"m.start + m.n_readings * m.period_ms / 1000.0 > {mark}", f"r.t >= {mark}"]
        args += [since, since]
    columns = ", ".join(f'r."{c}"' for c in READING_COLUMNS)
    sql = (f"SELECT {columns} FROM messages m JOIN readings r ON r.device = m.device AND r.counter = m.counter "
           f"WHERE {' AND '.join(conds)} ORDER BY r.device, r.t, r.counter, r.\"offset\"")
    return sql, args


class SQLiteStore:
    def __init__(self, path: Path | str, synchronous: str = "FULL"):
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self.db.execute("PRAGMA foreign_keys=ON")

    def schema_version(self) -> int:
        exists = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'").fetchone()
        if not exists:
            return 0
        return self.db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]

    def migrate(self) -> int:
        """Applies the missing migrations, each in its own transaction; returns the schema version."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                            "description TEXT NOT NULL, applied_at REAL NOT NULL)")
            current = self.schema_version()
            for version, description, statements in SQLITE_MIGRATIONS:
                if version <= current:
                    continue
                for sql in statements:
                    self.db.execute(sql)
                self.db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, description, time.time()))
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # SQLite has already rolled back after e.g. SQLITE_FULL or an I/O error
                self.db.execute("ROLLBACK")
            raise
        latest = SQLITE_MIGRATIONS[-1][0]
        version = self.schema_version()
        if version > latest:
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this oxilink ({latest})")
        return version

    def write(self, messages: Sequence[Accepted]) -> list[bool]:
        fresh: list[bool] = []
        rows: list[tuple] = []
        cur = self.db.cursor()
        cur.execute("BEGIN")
        try:
            for m in messages:
                cur.execute("INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                            message_row(m))
                new = cur.rowcount == 1
                fresh.append(new)
                if new:
                    rows += reading_rows(m)
            if rows:
                cur.executemany("INSERT INTO readings VALUES (?,?,?,?,?,?,?,?)", rows)
            cur.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # not after SQLITE_FULL or an I/O error: SQLite rolled back itself,
                cur.execute("ROLLBACK")  # and a second ROLLBACK would hide the real error
            raise
        return fresh

    def high_counter(self, device: str) -> int | None:
        return self.db.execute("SELECT MAX(counter) FROM messages WHERE device = ?", (device,)).fetchone()[0]

    def readings(self, device: str | None = None, since: float | None = None,
                 until: float | None = None) -> Iterator[Reading]:
        sql, args = readings_query(device, since, until, "?")
        for row in self.db.execute(sql, args):
            yield Reading(*row)

    def devices(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT device FROM messages ORDER BY device")]

    def counts(self) -> dict[str, int]:
        return {"messages": self.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0],
                "readings": self.db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]}

    def close(self) -> None:
        self.db.close()


def open_store(url: str | Path, *, synchronous: str = "FULL", migrate: bool = True) -> Store:
    """A path (or sqlite:///path) opens SQLite; postgresql://... opens PostgreSQL (needs psycopg)."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        from .store_pg import PostgresStore

        store: Store = PostgresStore(text)
    else:
        store = SQLiteStore(Path(text.removeprefix("sqlite://")), synchronous=synchronous)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()  # e.g. a database newer than this code: refused, and not left open
            raise
    return store
