"""A throwaway PostgreSQL server for the store tests: loopback only, in a temp folder, gone afterwards.

`PostgresServer()` runs initdb and postgres from Debian's packages (/usr/lib/postgresql/<ver>/bin), as the
`postgres` user when we are root (PostgreSQL refuses to run as root), with its data directory and unix
socket in a fresh folder under the system temp dir owned by that user, listening on 127.0.0.1 only, on a
free port. Trust authentication is safe there: nothing outside this machine can reach it.

Used as a pytest plugin (`pytest_plugins = ["pgserver"]`): the `postgres_server` fixture starts one server
per session (per xdist worker), installing the packages with `make system-deps` if they are missing;
`postgres_url` gives each test a new empty database on it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER = "oxilink"  # the database superuser initdb creates (not an OS account)
_STARTUP_S = 60  # a deadline for a broken install, not a measurement


def postgres_bindir() -> Path:
    """The newest installed server's bin folder (Debian keeps initdb and postgres off PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    on_path = shutil.which("postgres") or shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    raise FileNotFoundError("no PostgreSQL server binaries (initdb, postgres): run `make system-deps`")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path | None = None):
        self.bindir = bindir or postgres_bindir()
        self.as_root = os.geteuid() == 0
        self.folder = Path(tempfile.mkdtemp(prefix="oxilink-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._databases = itertools.count(1)

    def _user_kw(self) -> dict:
        """Run as `postgres` when root (the way runuser -u postgres would, minus a PAM session)."""
        if not self.as_root:
            return {}
        return {"user": "postgres", "group": "postgres", "extra_groups": [], "cwd": self.folder}

    def start(self) -> PostgresServer:
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
                        "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                       check=True, capture_output=True, text=True, **self._user_kw())
        for _ in range(5):  # another process may take the free port before postgres binds it
            self.port = free_port()
            if self._launch():
                return self
        raise RuntimeError(f"postgres did not start; last log:\n{self.log.read_text(errors='replace')}")

    def _launch(self) -> bool:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.folder}",
                 "-c", "fsync=off", "-c", "max_connections=50"],
                stdout=log, stderr=subprocess.STDOUT, **self._user_kw())
        deadline = time.monotonic() + _STARTUP_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            ready = subprocess.run([str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1",
                                    "-p", str(self.port), "-U", USER, "-d", "postgres"])
            if ready.returncode == 0:
                return True
            time.sleep(0.05)
        log = self.log.read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"postgres not ready after {_STARTUP_S} s:\n{log}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, **options: str) -> str:
        """A new empty database; options such as locale_provider='icu', icu_locale='en-US'. Returns its URL."""
        import psycopg
        from psycopg import sql

        name = f"t{os.getpid()}_{next(self._databases)}"
        clauses = sql.SQL(" ").join(sql.SQL(f"{k.upper()} ") + sql.Literal(v) for k, v in options.items())
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ").format(sql.Identifier(name)) + clauses)
        return self.url(name)

    def halt(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected) and keep its data: an outage."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)

    def resume(self) -> None:
        """Start the halted server again, on the same port and data."""
        if not self._launch():
            raise RuntimeError(f"postgres did not restart; log:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: disconnects clients, no checkpoint wait
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL on 127.0.0.1 for the session; installed from the system packages if missing."""
    try:
        postgres_bindir()
    except FileNotFoundError:
        subprocess.run(["make", "-C", str(ROOT), "system-deps"], check=True)
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """A new, empty database for one test, with ICU en-US collation as a production database usually has
    (its text order is not SQLite's bytewise one: the store must not depend on it)."""
    return postgres_server.create_database(locale_provider="icu", icu_locale="en-US")
