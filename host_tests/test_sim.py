"""`oxilink sim` (what `make sim` runs): broker, simulated devices running the firmware, receiver — with a
broker outage in the middle, every sealed batch reaches the database and each device leaves >= 50 s of
valid readings for 60 s of signal."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fleet_with_broker_outage_loses_nothing(tmp_path, mpbuild):
    proc = subprocess.run([ROOT / ".venv" / "bin" / "oxilink", "sim", "--devices", "3", "--duration", "60",
                           "--broker-outage", "10", "--root", str(tmp_path), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "broker outage: stopping Mosquitto for 10 s" in proc.stdout
    con = sqlite3.connect(tmp_path / "readings.sqlite")
    for device in ("sim-01", "sim-02", "sim-03"):
        report = json.loads((tmp_path / "reports" / f"{device}.json").read_text())
        stored = {c for (c,) in con.execute("SELECT counter FROM messages WHERE device = ?", (device,))}
        assert set(report["vitals_counters"]) <= stored, device  # every batch it sealed is in the database
        valid = con.execute("SELECT COUNT(*) FROM readings WHERE device = ? AND hr_bpm IS NOT NULL",
                            (device,)).fetchone()[0]
        assert valid >= 50, (device, valid)
        assert report["lost_samples"] == 0
    # every batch names the board file it was taken under (docs/format.md: cfg)
    from test_boardconf import config_id

    assert set(con.execute("SELECT DISTINCT cfg FROM messages WHERE kind = 'vitals'")) == \
        {(config_id((ROOT / "boards" / "sim.json").read_bytes()),)}
    assert "oxilink export fhir" in proc.stdout  # tells the user what to do next
    # What it stored exports as PHD IG FHIR: a transaction Bundle in which every measurement has both
    # codings and its Device, and every flagged second its device status (test_receiver_fhir.py).
    from test_receiver_fhir import check_phd_bundle

    flagged = set(con.execute('SELECT device, counter, "offset" FROM readings WHERE quality != 0'))
    out = tmp_path / "export.json"
    assert subprocess.run([ROOT / ".venv" / "bin" / "oxilink", "export", "fhir", "--bundle", "transaction",
                           "--db", str(tmp_path / "readings.sqlite"), "--audit", str(tmp_path / "audit.log"),
                           "-o", str(out)], timeout=120).returncode == 0
    counts = check_phd_bundle(json.loads(out.read_text()), flagged)
    assert counts["Device"] == 1 + 3  # the receiver and the three boards (one firmware each)


def _sim(*args: str, timeout: int = 300, quiet: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROOT / ".venv" / "bin" / "oxilink", "sim", *(["--quiet"] if quiet else []), *args],
                          capture_output=True, text=True, timeout=timeout)


def test_every_run_starts_a_fresh_system(tmp_path, mpbuild):
    """The simulated boards' flash is RAM (counters restart at 0): a second run must not reuse the first run's
    keys or database, where its batches would be taken for duplicates and silently dropped."""
    root = tmp_path / "sim"
    kids = []
    for run in range(2):
        proc = _sim("--duration", "12", "--speed", "3", "--root", str(root), quiet=bool(run))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        if run == 0:  # the live table of decoded readings, as `make sim` shows it
            assert re.search(r"device +HR +SpO2 +PI +q +stored +valid HR\nsim-01 +\d+\.\d +", proc.stdout), \
                proc.stdout[-2000:]
        stats = json.loads((root / "receiver-stats.json").read_text())
        assert stats["duplicates"] == 0 and stats["stored"] >= 2, stats
        secrets = json.loads((root / "secrets" / "devices" / "sim-01" / "secrets.json").read_text())
        kids.append(secrets["kid"])
    assert kids[0] != kids[1]  # a fresh key: counters from 0 never meet last run's nonces
    stale = tmp_path / "stale.sqlite"
    stale.write_bytes((root / "readings.sqlite").read_bytes())
    proc = _sim("--duration", "5", "--root", str(tmp_path / "other"), "--db", str(stale))
    assert proc.returncode == 2 and "already holds messages of sim-01" in proc.stderr, proc.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a sim folder")
    proc = _sim("--duration", "5", "--root", str(tmp_path / "mine"))
    assert proc.returncode == 2 and "not a sim folder" in proc.stderr, proc.stderr
    assert (tmp_path / "mine" / "notes.txt").exists()
