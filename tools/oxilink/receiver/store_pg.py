"""The PostgreSQL backend: the same Store interface and schema as store.py, for deployments where several
receivers (a shared-subscription group) write one database.

Needs psycopg 3 (`psycopg[binary]`, pinned in tools/requirements.lock): see docs/receiver.md. Uniqueness of
(device, kid, counter) is enforced by the primary key, so receivers need no coordination between them; schema
migrations take a transaction-level advisory lock so two receivers starting together migrate once.

The connection runs in autocommit: a query outside write() and migrate() holds no transaction open between
calls. write() is one explicit transaction, committed (and so durable) when it returns. readings() streams
through a server-side cursor inside a read transaction that lasts while the iterator is consumed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence

from .model import Accepted
from .store import (
    INSERT_DEVICE_VERSION,
    MESSAGE_COLUMNS,
    QUARANTINE_COLUMNS,
    READING_INSERT_COLUMNS,
    QuarantineEntry,
    Reading,
    device_version_rows,
    device_versions_query,
    insert_sql,
    message_row,
    quarantined_rows,
    reading_rows,
    readings_query,
)

PG_MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "messages and readings", [
        """CREATE TABLE messages (
             device TEXT NOT NULL, counter BIGINT NOT NULL, kind TEXT NOT NULL, kid BYTEA NOT NULL,
             topic TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL,
             start DOUBLE PRECISION, period_ms INTEGER, fw TEXT, cfg BIGINT, n_readings INTEGER, status_json TEXT,
             PRIMARY KEY (device, counter))""",
        """CREATE TABLE readings (
             device TEXT NOT NULL, counter BIGINT NOT NULL, "offset" INTEGER NOT NULL, t DOUBLE PRECISION NOT NULL,
             hr_bpm DOUBLE PRECISION, spo2_pct DOUBLE PRECISION, pi_pct DOUBLE PRECISION, quality INTEGER NOT NULL,
             PRIMARY KEY (device, counter, "offset"))""",
        "CREATE INDEX messages_by_time ON messages (device, start)",
    ]),
    # SQLite compares TEXT byte by byte; PostgreSQL by the database's locale (en_US.UTF-8 puts "dev_c" before
    # "Dev-B"). Device order in devices() and readings() must not depend on how the database was created.
    (2, "device ids compare bytewise (COLLATE \"C\"), as in SQLite", [
        'ALTER TABLE messages ALTER COLUMN device TYPE TEXT COLLATE "C"',
        'ALTER TABLE readings ALTER COLUMN device TYPE TEXT COLLATE "C"',
    ]),
    (3, "device versions: what each device was when it sent a batch", [
        "ALTER TABLE messages ADD COLUMN device_version TEXT",
        """CREATE TABLE device_versions (
             device TEXT COLLATE "C" NOT NULL, version TEXT NOT NULL, doc TEXT NOT NULL,
             recorded_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (device, version))""",
    ]),
    # As SQLite's v3: a deploy's fresh key restarts the counter, so (kid, counter) is what is unique.
    (4, "messages and readings keyed on (device, kid, counter)", [
        "ALTER TABLE messages DROP CONSTRAINT messages_pkey",
        "ALTER TABLE messages ADD PRIMARY KEY (device, kid, counter)",
        "ALTER TABLE readings ADD COLUMN kid BYTEA",
        "UPDATE readings r SET kid = m.kid FROM messages m WHERE m.device = r.device AND m.counter = r.counter",
        "ALTER TABLE readings ALTER COLUMN kid SET NOT NULL",
        "ALTER TABLE readings DROP CONSTRAINT readings_pkey",
        'ALTER TABLE readings ADD PRIMARY KEY (device, kid, counter, "offset")',
    ]),
    (5, "quarantine: messages the database refused, kept with the reason", [
        """CREATE TABLE quarantine (
             id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, received_at DOUBLE PRECISION NOT NULL,
             topic TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT NOT NULL, payload BYTEA NOT NULL,
             sha256 TEXT NOT NULL)""",
    ]),
]
_MIGRATION_LOCK = 0x6F786C6B  # "oxlk"
_MESSAGE_INSERT = insert_sql("messages", MESSAGE_COLUMNS, "%s", " ON CONFLICT DO NOTHING")
_READING_INSERT = insert_sql("readings", READING_INSERT_COLUMNS, "%s")


class PostgresStore:
    def __init__(self, url: str):
        try:
            import psycopg
        except ImportError as e:
            raise RuntimeError("PostgreSQL needs psycopg: pip install 'psycopg[binary]==3.3.9' "
                               "(see docs/receiver.md)") from e
        # A value PostgreSQL refuses (NUL in text, out of range, a constraint) is the message's problem;
        # OperationalError (connection, disk) is the database's and stops the receiver.
        self.data_errors = (psycopg.DataError, psycopg.IntegrityError, OverflowError, ValueError, TypeError)
        self.url = url
        self.db = psycopg.connect(url, autocommit=True)
        self._idle = psycopg.pq.TransactionStatus.IDLE
        self._cursor_names = itertools.count(1)

    def schema_version(self) -> int:
        if self.db.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
            return 0
        return self.db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]

    def migrate(self) -> int:
        """Applies the missing migrations in one transaction, under an advisory lock; returns the version."""
        with self.db.transaction(), self.db.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                        "description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            current = self.schema_version()
            for version, description, statements in PG_MIGRATIONS:
                if version > current:
                    for sql in statements:
                        cur.execute(sql)
                    cur.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                                (version, description, time.time()))
        latest = PG_MIGRATIONS[-1][0]
        version = self.schema_version()
        if version > latest:
            raise RuntimeError(f"{self.db.info.dbname}: schema version {version} is newer than this oxilink "
                               f"({latest})")
        return version

    def write(self, messages: Sequence[Accepted]) -> list[bool]:
        if self.db.info.transaction_status != self._idle:
            # Inside another transaction (a readings() iteration) this would only be a savepoint: not durable
            # on return, which is what the receiver acks on.
            raise RuntimeError("PostgresStore.write() while a transaction is open on this connection "
                               "(finish or close the readings() iterator first)")
        fresh = [False] * len(messages)
        rows: list[tuple] = []
        # Inserted in key order: two receivers handed overlapping batches (a re-delivery to another member of
        # the group) then wait on each other's rows in the same order instead of deadlocking. The sort is
        # stable, so of two copies in one batch the first is the one stored, as in SQLite.
        order = sorted(range(len(messages)),
                       key=lambda i: (messages[i].device, messages[i].kid, messages[i].counter))
        with self.db.transaction(), self.db.cursor() as cur:
            for i in order:
                cur.execute(_MESSAGE_INSERT, message_row(messages[i]))
                fresh[i] = cur.rowcount == 1
                if fresh[i]:
                    rows += reading_rows(messages[i])
            if rows:
                cur.executemany(_READING_INSERT, rows)
            versions = device_version_rows(messages, fresh)  # in key order too
            if versions:
                cur.executemany(INSERT_DEVICE_VERSION.format("%s"), versions)
        return fresh

    def quarantine(self, entries: Sequence[QuarantineEntry]) -> None:
        with self.db.transaction(), self.db.cursor() as cur:
            cur.executemany(insert_sql("quarantine", QUARANTINE_COLUMNS, "%s"), [e.row() for e in entries])

    def quarantined(self) -> list[dict]:
        columns = ", ".join(QUARANTINE_COLUMNS)
        return quarantined_rows(self.db.execute(f"SELECT id, {columns} FROM quarantine ORDER BY id"))

    def high_counter(self, device: str, kid: bytes) -> int | None:
        return self.db.execute("SELECT MAX(counter) FROM messages WHERE device = %s AND kid = %s",
                               (device, kid)).fetchone()[0]

    def readings(self, device: str | None = None, since: float | None = None,
                 until: float | None = None) -> Iterator[Reading]:
        """Streams (a server-side cursor, 2,000 rows a round trip): an export of a month of a ward's readings
        does not have to fit in memory. Closing the iterator early ends its read transaction."""
        sql, args = readings_query(device, since, until, "%s")
        name = f"oxilink_readings_{next(self._cursor_names)}"
        with self.db.transaction(), self.db.cursor(name=name) as cur:
            cur.itersize = 2000
            cur.execute(sql, args)
            for row in cur:
                yield Reading(*row)

    def device_versions(self, device: str | None = None, since: float | None = None,
                        until: float | None = None) -> list[tuple[str, str, str | None]]:
        sql, args = device_versions_query(device, since, until, "%s")
        return [(d, v, doc) for d, v, _, doc in self.db.execute(sql, args)]

    def devices(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT device FROM messages ORDER BY device")]

    def counts(self) -> dict[str, int]:
        messages, readings = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM readings)").fetchone()
        return {"messages": messages, "readings": readings}

    def close(self) -> None:
        self.db.close()
