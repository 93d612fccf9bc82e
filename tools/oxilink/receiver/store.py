"""Where verified messages end up: the Store interface, versioned migrations, and the SQLite backend.

Tables (the same in every backend; store_pg.py has the PostgreSQL dialect):
  messages    one row per accepted sealed message, primary key (device, kid, counter): the message counter
              (the COSE Partial IV) is unique per key, and every deploy brings a fresh key whose counter
              starts at 0 (docs/format.md, "Key material"), so a re-delivered or replayed message can never be
              stored twice, and a board restarted under a new key is never taken for a replay.
  readings    one row per reading of a vitals batch, primary key (device, kid, counter, offset).
  device_versions  what a device was when it sent a batch (deviceinfo.py), one row per (device, version);
              messages.device_version names the version of each vitals batch (NULL for batches stored before
              schema version 2: readers fall back to the batch's own fw and cfg).
  quarantine  messages that passed verification but that the database refused (and messages whose
              verification failed unexpectedly): raw sealed bytes, reason and details, kept for an operator.
  schema_migrations  the versions applied, with when.

`open_store("var/x.sqlite")` or `open_store("postgresql://...")` picks the backend. SQLite runs in WAL
mode with synchronous=FULL by default: write() returns only after the commit is on disk, which is what lets
the receiver acknowledge a message to the broker right after.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .model import Accepted

READING_COLUMNS = ("device", "counter", "offset", "t", "hr_bpm", "spo2_pct", "pi_pct", "quality", "kid")
MESSAGE_COLUMNS = ("device", "kid", "counter", "kind", "topic", "received_at", "start", "period_ms", "fw", "cfg",
                   "n_readings", "status_json", "device_version")
QUARANTINE_COLUMNS = ("received_at", "topic", "reason", "detail", "payload", "sha256")

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
    (2, "device versions: what each device was when it sent a batch", [
        "ALTER TABLE messages ADD COLUMN device_version TEXT",
        """CREATE TABLE device_versions (
             device TEXT NOT NULL, version TEXT NOT NULL, doc TEXT NOT NULL, recorded_at REAL NOT NULL,
             PRIMARY KEY (device, version)) WITHOUT ROWID""",
    ]),
    # A deploy brings a fresh key whose counter starts at 0: (device, counter) is no longer unique, (kid, counter)
    # is. Existing rows keep their kid; readings get theirs from their message.
    (3, "messages and readings keyed on (device, kid, counter)", [
        """CREATE TABLE messages_v3 (
             device TEXT NOT NULL, kid BLOB NOT NULL, counter INTEGER NOT NULL, kind TEXT NOT NULL,
             topic TEXT NOT NULL, received_at REAL NOT NULL,
             start REAL, period_ms INTEGER, fw TEXT, cfg INTEGER, n_readings INTEGER, status_json TEXT,
             device_version TEXT, PRIMARY KEY (device, kid, counter)) WITHOUT ROWID""",
        """INSERT INTO messages_v3 SELECT device, kid, counter, kind, topic, received_at, start, period_ms, fw, cfg,
             n_readings, status_json, device_version FROM messages""",
        """CREATE TABLE readings_v3 (
             device TEXT NOT NULL, kid BLOB NOT NULL, counter INTEGER NOT NULL, "offset" INTEGER NOT NULL,
             t REAL NOT NULL, hr_bpm REAL, spo2_pct REAL, pi_pct REAL, quality INTEGER NOT NULL,
             PRIMARY KEY (device, kid, counter, "offset")) WITHOUT ROWID""",
        """INSERT INTO readings_v3 SELECT r.device, m.kid, r.counter, r."offset", r.t, r.hr_bpm, r.spo2_pct,
             r.pi_pct, r.quality FROM readings r JOIN messages m ON m.device = r.device AND m.counter = r.counter""",
        "DROP TABLE readings",
        "DROP TABLE messages",
        "ALTER TABLE messages_v3 RENAME TO messages",
        "ALTER TABLE readings_v3 RENAME TO readings",
        "CREATE INDEX messages_by_time ON messages (device, start)",
    ]),
    (4, "quarantine: messages the database refused, kept with the reason", [
        """CREATE TABLE quarantine (
             id INTEGER PRIMARY KEY, received_at REAL NOT NULL, topic TEXT NOT NULL, reason TEXT NOT NULL,
             detail TEXT NOT NULL, payload BLOB NOT NULL, sha256 TEXT NOT NULL)""",
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
    kid: bytes = b""  # with counter and offset, what names a reading uniquely (counters restart per key)
    device_version: str | None = None  # key of the batch's device version (deviceinfo.version_from_store)


@dataclass(frozen=True)
class QuarantineEntry:
    """A message kept because it could not be stored (or its verification failed unexpectedly)."""

    received_at: float
    topic: str
    reason: str  # short: "database refused", "internal error"
    detail: dict
    payload: bytes  # the sealed message exactly as received

    def row(self) -> tuple:
        return (self.received_at, self.topic, self.reason, json.dumps(self.detail, sort_keys=True, default=str),
                self.payload, hashlib.sha256(self.payload).hexdigest())


class Store(Protocol):
    """What the receiver, the exports and the plots need from a backend."""

    def migrate(self) -> int: ...

    def schema_version(self) -> int: ...

    # Exceptions of write() that are about a message's data (a value the database refuses), not about the
    # database itself: the receiver quarantines the message instead of stopping (pipeline.py).
    data_errors: tuple[type[BaseException], ...]

    def write(self, messages: Sequence[Accepted]) -> list[bool]:
        """Stores the messages in one transaction, durable on return; per message, True if it was new and
        False if (device, kid, counter) was already stored (a duplicate: nothing written)."""
        ...

    def quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        """Keeps the entries in one transaction, durable on return."""
        ...

    def quarantined(self) -> list[dict]: ...

    def high_counter(self, device: str, kid: bytes) -> int | None: ...

    def readings(self, device: str | None = None, since: float | None = None,
                 until: float | None = None) -> Iterator[Reading]: ...

    def device_versions(self, device: str | None = None, since: float | None = None,
                        until: float | None = None) -> list[tuple[str, str, str | None]]:
        """(device, version key, version document JSON or None for a legacy key) of the batches in the span,
        each once, by device and then by the first batch that carried it."""
        ...

    def devices(self) -> list[str]: ...

    def counts(self) -> dict[str, int]: ...

    def close(self) -> None: ...


def message_row(m: Accepted) -> tuple:
    """In MESSAGE_COLUMNS order."""
    b = m.batch or {}
    return (m.device, m.kid, m.counter, m.kind, m.topic, m.received_at, b.get("start"), b.get("period_ms"),
            b.get("fw"), b.get("cfg"), len(b["readings"]) if m.batch else None, m.status_json(),
            m.device_version.id if m.device_version else None)


def device_version_rows(messages: Sequence[Accepted], fresh: Sequence[bool]) -> list[tuple]:
    """One (device, version, doc, recorded_at) per version that new batches name, in key order."""
    rows = {(m.device, m.device_version.id): (m.device_version.json(), m.received_at)
            for m, new in zip(messages, fresh, strict=True) if new and m.device_version is not None}
    return [(device, version, doc, at) for (device, version), (doc, at) in sorted(rows.items())]


INSERT_DEVICE_VERSION = "INSERT INTO device_versions VALUES ({0}, {0}, {0}, {0}) ON CONFLICT DO NOTHING"

# The device version of a batch, or for one stored before there were versions a key made of its fw and cfg.
VERSION_KEY = ("COALESCE(m.device_version, 'legacy:' || COALESCE(m.fw, '') || ':' || "
               "COALESCE(CAST(m.cfg AS TEXT), ''))")


READING_INSERT_COLUMNS = ("device", "kid", "counter", "offset", "t", "hr_bpm", "spo2_pct", "pi_pct", "quality")


def reading_rows(m: Accepted) -> list[tuple]:
    """In READING_INSERT_COLUMNS order."""
    if not m.batch:
        return []
    return [(m.device, m.kid, m.counter, i, r["t"], r["hr_bpm"], r["spo2_pct"], r["pi_pct"], r["quality"])
            for i, r in enumerate(m.batch["readings"])]


def insert_sql(table: str, columns: Sequence[str], mark: str, conflict: str = "") -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({', '.join([mark] * len(columns))}){conflict}"


def quarantined_rows(rows: Iterator[tuple]) -> list[dict]:
    return [{"id": r[0], **dict(zip(QUARANTINE_COLUMNS, r[1:], strict=True))} for r in rows]


def readings_query(device: str | None, since: float | None, until: float | None, mark: str) -> tuple[str, list]:
    """SELECT of readings in [since, until) for one or all devices; `mark` is the driver's placeholder.

    Narrows by batch first (messages_by_time), then reads each batch's readings by primary key. A batch
    covers [start, start + n_readings * period_ms / 1000).
    """
    conds, args = batches_in_span(device, since, until, mark)
    if until is not None:
        conds.append(f"r.t < {mark}")
        args.append(until)
    if since is not None:
        conds.append(f"r.t >= {mark}")
        args.append(since)
    columns = ", ".join(f'r."{c}"' for c in READING_COLUMNS)
    sql = (f"SELECT {columns}, {VERSION_KEY} FROM messages m JOIN readings r ON r.device = m.device "
           f"AND r.kid = m.kid AND r.counter = m.counter WHERE {' AND '.join(conds)} "
           f"ORDER BY r.device, r.t, r.kid, r.counter, r.\"offset\"")
    return sql, args


def batches_in_span(device: str | None, since: float | None, until: float | None, mark: str) -> tuple[list, list]:
    """WHERE conditions (on messages m) for the vitals batches of one or all devices overlapping [since, until)."""
    conds, args = ["m.kind = 'vitals'"], []
    if device is not None:
        conds.append(f"m.device = {mark}")
        args.append(device)
    if until is not None:
        conds.append(f"m.start < {mark}")
        args.append(until)
    if since is not None:
        conds.append(f"m.start + m.n_readings * m.period_ms / 1000.0 > {mark}")
        args.append(since)
    return conds, args


def device_versions_query(device: str | None, since: float | None, until: float | None,
                          mark: str) -> tuple[str, list]:
    conds, args = batches_in_span(device, since, until, mark)
    sql = (f"SELECT m.device, {VERSION_KEY}, MIN(m.start), d.doc FROM messages m LEFT JOIN device_versions d "
           f"ON d.device = m.device AND d.version = m.device_version WHERE {' AND '.join(conds)} "
           "GROUP BY 1, 2, 4 ORDER BY 1, 3, 2")
    return sql, args


class SQLiteStore:
    # A value SQLite cannot bind or a constraint it refuses; OperationalError (disk, lock) and DatabaseError
    # (a damaged file) are the database's own trouble and stop the receiver instead.
    data_errors = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError, sqlite3.ProgrammingError,
                   OverflowError, ValueError, TypeError)

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
                cur.execute(_SQLITE_MESSAGE_INSERT, message_row(m))
                new = cur.rowcount == 1
                fresh.append(new)
                if new:
                    rows += reading_rows(m)
            if rows:
                cur.executemany(_SQLITE_READING_INSERT, rows)
            versions = device_version_rows(messages, fresh)
            if versions:
                cur.executemany(INSERT_DEVICE_VERSION.format("?"), versions)
            cur.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:  # not after SQLITE_FULL or an I/O error: SQLite rolled back itself,
                cur.execute("ROLLBACK")  # and a second ROLLBACK would hide the real error
            raise
        return fresh

    def quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        cur = self.db.cursor()
        cur.execute("BEGIN")
        try:
            cur.executemany(insert_sql("quarantine", QUARANTINE_COLUMNS, "?"), [e.row() for e in entries])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def quarantined(self) -> list[dict]:
        columns = ", ".join(QUARANTINE_COLUMNS)
        return quarantined_rows(self.db.execute(f"SELECT id, {columns} FROM quarantine ORDER BY id"))

    def high_counter(self, device: str, kid: bytes) -> int | None:
        return self.db.execute("SELECT MAX(counter) FROM messages WHERE device = ? AND kid = ?",
                               (device, kid)).fetchone()[0]

    def readings(self, device: str | None = None, since: float | None = None,
                 until: float | None = None) -> Iterator[Reading]:
        sql, args = readings_query(device, since, until, "?")
        for row in self.db.execute(sql, args):
            yield Reading(*row)

    def device_versions(self, device: str | None = None, since: float | None = None,
                        until: float | None = None) -> list[tuple[str, str, str | None]]:
        sql, args = device_versions_query(device, since, until, "?")
        return [(d, v, doc) for d, v, _, doc in self.db.execute(sql, args)]

    def devices(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT device FROM messages ORDER BY device")]

    def counts(self) -> dict[str, int]:
        return {"messages": self.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0],
                "readings": self.db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]}

    def close(self) -> None:
        self.db.close()


_SQLITE_MESSAGE_INSERT = insert_sql("messages", MESSAGE_COLUMNS, "?", " ON CONFLICT DO NOTHING")
_SQLITE_READING_INSERT = insert_sql("readings", READING_INSERT_COLUMNS, "?")


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
