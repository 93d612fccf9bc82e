"""The PostgreSQL backend: the same Store interface and schema as store.py, for deployments where several
receivers (a shared-subscription group) write one database.

Needs psycopg 3 (`psycopg[binary]`), which is not in the default pins: see docs/receiver.md. Uniqueness of
(device, counter) is enforced by the primary key, so receivers need no coordination between them; schema
migrations take a transaction-level advisory lock so two receivers starting together migrate once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from .model import Accepted
from .store import Reading, message_row, reading_rows, readings_query

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
]
_MIGRATION_LOCK = 0x6F786C6B  # "oxlk"


class PostgresStore:
    def __init__(self, url: str):
        try:
            import psycopg
        except ImportError as e:
            raise RuntimeError("PostgreSQL needs psycopg: pip install 'psycopg[binary]==3.3.9' "
                               "(see docs/receiver.md)") from e
        self.url = url
        self.db = psycopg.connect(url, autocommit=False)

    def schema_version(self) -> int:
        with self.db.cursor() as cur:
            cur.execute("SELECT to_regclass('schema_migrations')")
            if cur.fetchone()[0] is None:
                return 0
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            return cur.fetchone()[0]

    def migrate(self) -> int:
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
        self.db.commit()
        version = self.schema_version()
        self.db.commit()
        if version > PG_MIGRATIONS[-1][0]:
            raise RuntimeError(f"schema version {version} is newer than this oxilink ({PG_MIGRATIONS[-1][0]})")
        return version

    def write(self, messages: Sequence[Accepted]) -> list[bool]:
        fresh: list[bool] = []
        rows: list[tuple] = []
        with self.db.transaction(), self.db.cursor() as cur:
            for m in messages:
                cur.execute("INSERT INTO messages VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                            "ON CONFLICT DO NOTHING", message_row(m))
                fresh.append(cur.rowcount == 1)
                if fresh[-1]:
                    rows += reading_rows(m)
            if rows:
                cur.executemany("INSERT INTO readings VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", rows)
        self.db.commit()
        return fresh

    def high_counter(self, device: str) -> int | None:
        with self.db.cursor() as cur:
            cur.execute("SELECT MAX(counter) FROM messages WHERE device = %s", (device,))
            value = cur.fetchone()[0]
        self.db.commit()
        return value

    def readings(self, device: str | None = None, since: float | None = None,
                 until: float | None = None) -> Iterator[Reading]:
        sql, args = readings_query(device, since, until, "%s")
        with self.db.cursor() as cur:
            cur.execute(sql, args)
            for row in cur:
                yield Reading(*row)
        self.db.commit()

    def devices(self) -> list[str]:
        with self.db.cursor() as cur:
            cur.execute("SELECT DISTINCT device FROM messages ORDER BY device")
            out = [r[0] for r in cur]
        self.db.commit()
        return out

    def counts(self) -> dict[str, int]:
        with self.db.cursor() as cur:
            cur.execute("SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM readings)")
            messages, readings = cur.fetchone()
        self.db.commit()
        return {"messages": messages, "readings": readings}

    def close(self) -> None:
        self.db.close()
