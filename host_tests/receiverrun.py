"""`oxilink receive` as a child process for tests, with its database, audit log, registry and stats in one
folder."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oxilink.broker import RECEIVER_CN


class ReceiverProcess:
    """`oxilink receive` as a child process, with its files in one folder."""

    def __init__(self, folder: Path, broker, pki, name: str = "rx", *extra: str):
        self.folder = folder
        self.stats_path = folder / f"{name}.stats.json"
        self.log_path = folder / f"{name}.log"
        ident = pki.issue(RECEIVER_CN)
        self.args = [sys.executable, "-m", "oxilink.cli", "receive", "--broker", f"localhost:{broker.port}",
                     "--ca", str(pki.cert_path), "--cert", str(ident.cert), "--key", str(ident.key),
                     "--client-id", f"test-{name}", "--db", str(self.db_path), "--audit", str(self.audit_path),
                     "--registry", str(self.registry_path), "--stats", str(self.stats_path),
                     "--stats-every", "0.1", *extra]
        self.proc: subprocess.Popen | None = None

    @property
    def db_path(self) -> Path:
        return self.folder / "readings.sqlite"

    @property
    def audit_path(self) -> Path:
        return self.folder / "audit.log"

    @property
    def registry_path(self) -> Path:
        return self.folder / "devices.json"

    def start(self) -> ReceiverProcess:
        self.stats_path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "ab"))
        self.wait_for(lambda s: s["subscribed"], what="subscription")
        return self

    def stats(self) -> dict:
        try:
            return json.loads(self.stats_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def wait_for(self, cond, what: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.stats()
            if s and cond(s):
                return s
            if self.proc and self.proc.poll() is not None:
                pytest.fail(f"receiver exited ({self.proc.returncode}) waiting for {what}:\n{self.log()}")
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}; stats {self.stats()}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(30)
        self.proc = None
        return rc

    def rows(self, sql: str, *args) -> list[tuple]:
        with sqlite3.connect(self.db_path) as db:
            return db.execute(sql, args).fetchall()
