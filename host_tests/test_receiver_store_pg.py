"""PostgreSQL only: what several receivers sharing one database rely on, and the CLI on a postgresql:// URL.
The store contract itself runs on both backends in test_receiver_store.py."""

from __future__ import annotations

import threading

import psycopg
import pytest
from test_receiver_store import accepted

from oxilink.cli import main as oxilink
from oxilink.receiver.audit import read_entries
from oxilink.receiver.deviceinfo import DeviceFacts
from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.store import open_store
from oxilink.receiver.store_pg import PG_MIGRATIONS, PostgresStore

pytest_plugins = ["pgserver"]

T0 = 1_795_000_000


def together(n: int, work) -> list:
    """Runs work(i) in n threads released at once; returns their results, re-raising the first error."""
    start = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_receivers_starting_together_migrate_once(postgres_url):
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    assert together(4, lambda i: stores[i].migrate()) == [PG_MIGRATIONS[-1][0]] * 4
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall() == \
            [(v,) for v, _, _ in PG_MIGRATIONS]
    for s in stores:
        s.close()


def test_receivers_writing_the_same_messages_store_each_once(postgres_url):
    """A message re-delivered to another receiver of the group while the first still commits it: each
    (device, counter) is new for exactly one of them, and opposite batch orders do not deadlock."""
    open_store(postgres_url).close()
    devs = [SimDevice.new(f"dev-{i}") for i in range(4)]
    messages = [accepted(d, c, T0 + 30 * c) for d in devs for c in range(1, 11)]
    orders = [messages, messages[::-1], messages[1::2] + messages[::2]]
    stores = [open_store(postgres_url, migrate=False) for _ in orders]

    def receive(i: int) -> list[bool]:
        batch = orders[i]
        fresh: list[bool] = []
        for k in range(0, len(batch), 8):
            fresh += stores[i].write(batch[k:k + 8])
        return [fresh[batch.index(m)] for m in messages]

    per_store = together(len(orders), receive)
    assert [sum(col) for col in zip(*per_store, strict=True)] == [1] * len(messages)
    assert stores[0].counts() == {"messages": 40, "readings": 1200}
    for s in stores:
        s.close()


def test_a_write_inside_an_open_read_is_refused_not_left_uncommitted(postgres_url):
    store = open_store(postgres_url)
    dev = SimDevice.new("dev-a")
    store.write([accepted(dev, 1, T0)])
    rows = store.readings()
    next(rows)
    with pytest.raises(RuntimeError, match="transaction is open"):
        store.write([accepted(dev, 2, T0 + 30)])
    assert store.devices() == ["dev-a"]  # reads are fine meanwhile
    assert len(list(rows)) == 29
    assert store.write([accepted(dev, 2, T0 + 30)]) == [True]
    store.close()


def test_export_csv_from_postgresql_matches_sqlite(postgres_url, tmp_path):
    devs = [SimDevice.new(name) for name in ("ward3-bed7", "ward3-bed10")]
    messages = [accepted(d, c, T0 + 30 * c) for d in devs for c in range(1, 5)]
    sqlite_path = tmp_path / "r.sqlite"
    for url in (postgres_url, str(sqlite_path)):
        store = open_store(url)
        assert store.write(messages) == [True] * len(messages)
        store.close()
    audit = tmp_path / "audit.log"
    args = ["--audit", str(audit), "--since", str(T0 + 45), "--until", str(T0 + 125)]
    assert oxilink(["export", "csv", "--db", postgres_url, "-o", str(tmp_path / "pg.csv"), *args]) == 0
    assert oxilink(["export", "csv", "--db", str(sqlite_path), "-o", str(tmp_path / "lite.csv"), *args]) == 0
    pg_csv = (tmp_path / "pg.csv").read_text()
    lines = pg_csv.splitlines()
    assert lines[0] == "device,counter,t,hr_bpm,spo2_pct,pi_pct,quality"
    assert len(lines) == 1 + 2 * 80 and lines[1].startswith("ward3-bed10,1,")
    assert pg_csv == (tmp_path / "lite.csv").read_text()
    exports = [e["detail"] for e in read_entries(audit) if e["event"] == "export"]
    assert [(e["db"], e["rows"]) for e in exports] == [(postgres_url, 160), (str(sqlite_path), 160)]


def test_export_fhir_from_postgresql_matches_sqlite(postgres_url, tmp_path):
    """Device versions, legacy batches without one, both resolutions: the same bytes from either backend."""
    devs = [SimDevice.new(name) for name in ("ward3-bed7", "ward3-bed10")]
    messages = [accepted(d, c, T0 + 30 * c) for d in devs for c in range(1, 5)]
    facts = DeviceFacts(None)
    for m in messages[2:]:  # the first two batches as an older receiver stored them: no device version
        m.device_version = facts.version(m.device, m.batch["fw"], m.batch["cfg"])
    sqlite_path = tmp_path / "r.sqlite"
    for url in (postgres_url, str(sqlite_path)):
        store = open_store(url)
        assert store.write(messages) == [True] * len(messages)
        store.close()
    for resolution in ("1s", "1m"):
        args = ["--audit", str(tmp_path / "audit.log"), "--since", str(T0 + 45), "--bundle", "transaction",
                "--resolution", resolution, "--patients", str(tmp_path / "none.json")]
        assert oxilink(["export", "fhir", "--db", postgres_url, "-o", str(tmp_path / "pg.json"), *args]) == 0
        assert oxilink(["export", "fhir", "--db", str(sqlite_path), "-o", str(tmp_path / "lite.json"), *args]) == 0
        pg = (tmp_path / "pg.json").read_text()
        assert pg == (tmp_path / "lite.json").read_text()
        devices = [line for line in pg.splitlines() if '"resourceType":"Device"' in line]
        # The gateway and one Device per board: with no registry facts, ward3-bed7's stored version says what
        # its legacy batches say (fw and cfg only), so both are the same version.
        assert len(devices) == 1 + 2


def test_database_password_never_reaches_the_audit_log(postgres_url, tmp_path):
    from urllib.parse import urlsplit, urlunsplit

    from oxilink.receiver.setup import db_label

    parts = urlsplit(postgres_url)  # the test server trusts loopback, so any password is accepted
    netloc = f"{parts.username or 'postgres'}:s3cret-pw@{parts.hostname}:{parts.port}"
    with_password = urlunsplit(parts._replace(netloc=netloc))
    audit = tmp_path / "audit.log"
    assert oxilink(["export", "csv", "--db", with_password, "-o", str(tmp_path / "x.csv"), "--audit", str(audit)]) == 0
    assert "s3cret-pw" not in audit.read_text()
    assert [e["detail"]["db"] for e in read_entries(audit) if e["event"] == "export"] == [db_label(with_password)]
    assert db_label("var/receiver/readings.sqlite") == "var/receiver/readings.sqlite"
