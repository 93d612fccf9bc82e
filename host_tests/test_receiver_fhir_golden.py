"""Golden FHIR exports of a short recorded run, compared field by field, so that any change in what the
exporter writes is a visible, reviewable diff.

The recording (data/fhir/sim-run.json) is what a 40-second `oxilink sim` run stored: the firmware on the
unix port measuring the simulator's synthetic signal (no patient data), its batches as the device sealed
them, and the board file and registry entry the receiver used. It is replayed through the receiver's own
pipeline (sealed, verified, stored), then exported per second and per minute as transaction Bundles.

After an intended change, regenerate and review the diff:
    OXILINK_UPDATE_GOLDEN=1 .venv/bin/python -m pytest host_tests/test_receiver_fhir_golden.py
A new recording (from a run's database, registry and board file):
    .venv/bin/python host_tests/test_receiver_fhir_golden.py var/sim/readings.sqlite var/sim/secrets/devices.json
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from fhir.resources.R4B.bundle import Bundle

from oxilink import sealed
from oxilink.cli import main as oxilink
from oxilink.receiver.audit import AuditLog
from oxilink.receiver.deviceinfo import DeviceFacts
from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.pipeline import Pipeline
from oxilink.receiver.registry import DeviceRegistry
from oxilink.receiver.store import open_store
from oxilink.receiver.verify import Verifier

DATA = Path(__file__).parent / "data" / "fhir"
RECORDING = DATA / "sim-run.json"
PATIENTS = {"sim-01": "Patient/example"}


def record(db: Path, registry: Path, boards: Path = Path("boards")) -> dict:
    """The recording of a run: its vitals batches (raw device units), board file and registry entry."""
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT device, counter, start, period_ms, fw, cfg FROM messages WHERE kind = 'vitals' "
                         "ORDER BY device, counter").fetchall()
        batches = []
        for device, counter, start, period_ms, fw, cfg in rows:
            readings = c.execute('SELECT hr_bpm, spo2_pct, pi_pct, quality FROM readings WHERE device = ? AND '
                                 'counter = ? ORDER BY "offset"', (device, counter)).fetchall()
            raw = [[None if v is None else round(v * scale) for v, scale in zip(r[:3], (10, 10, 100), strict=True)]
                   + [r[3]] for r in readings]
            batches.append({"device": device, "counter": counter, "start": int(start), "period_ms": period_ms,
                            "fw": fw, "cfg": cfg, "readings": raw})
    devices = json.loads(registry.read_text())["devices"]
    described = {d: {k: devices[d].get(k) for k in ("board", "certificate_serial")} for d in devices}
    board_names = {v["board"] for v in described.values() if v["board"]}
    return {"batches": batches, "registry": described,
            "boards": {name: json.loads((boards / f"{name}.json").read_text()) for name in sorted(board_names)}}


def replay(recording: dict, root: Path) -> Path:
    """A receiver database holding the recording, filled through the receiver's pipeline."""
    boards = root / "boards"
    boards.mkdir()
    for name, board in recording["boards"].items():
        (boards / f"{name}.json").write_text(json.dumps(board))
    registry = DeviceRegistry(root / "devices.json")
    devices = {}
    for name, facts in recording["registry"].items():
        devices[name] = SimDevice.new(name)
        devices[name].register(registry)
        registry.describe_device(name, **facts)
    store = open_store(root / "r.sqlite")
    pipeline = Pipeline(Verifier(registry, store.high_counter), store, AuditLog(root / "audit.log", "golden"),
                        facts=DeviceFacts(registry, boards))
    messages = []
    for b in recording["batches"]:
        dev = devices[b["device"]]
        payload = sealed.encode_batch(b["device"], b["start"], b["period_ms"], b["fw"], b["cfg"], b["readings"])
        messages.append((dev.topic(), dev.seal(payload, counter=b["counter"])))
    assert all(r.kind == "vitals" for r in pipeline.process(messages))
    store.close()
    return root / "r.sqlite"


def differences(got, want, path: str = "") -> list[str]:
    """Every field where got and want differ, as `path: got != want`."""
    if isinstance(got, dict) and isinstance(want, dict):
        return [d for k in sorted(set(got) | set(want), key=str)
                for d in (differences(got[k], want[k], f"{path}.{k}".lstrip(".")) if k in got and k in want
                          else [f"{path}.{k}".lstrip(".") + f": {'missing' if k in want else 'unexpected'}"])]
    if isinstance(got, list) and isinstance(want, list):
        out = [d for i, (g, w) in enumerate(zip(got, want, strict=False)) for d in differences(g, w, f"{path}[{i}]")]
        return out + ([f"{path}: {len(got)} items, golden has {len(want)}"] if len(got) != len(want) else [])
    return [] if got == want and type(got) is type(want) else [f"{path}: {got!r} != golden {want!r}"]


@pytest.mark.parametrize("resolution", ["1s", "1m"])
def test_export_of_the_recorded_run_matches_the_golden_field_by_field(tmp_path, resolution):
    db = replay(json.loads(RECORDING.read_text()), tmp_path)
    (tmp_path / "patients.json").write_text(json.dumps(PATIENTS))
    out = tmp_path / "export.json"
    assert oxilink(["export", "fhir", "--db", str(db), "--audit", str(tmp_path / "audit.log"), "--bundle",
                    "transaction", "--resolution", resolution, "--patients", str(tmp_path / "patients.json"),
                    "-o", str(out)]) == 0
    text = out.read_text()
    Bundle.model_validate_json(text)
    golden = DATA / f"sim-run.{resolution}.bundle.json"
    if os.environ.get("OXILINK_UPDATE_GOLDEN"):
        golden.write_text(text)
    diff = differences(json.loads(text), json.loads(golden.read_text()))
    assert not diff, f"{len(diff)} fields differ from {golden.name} (first 20):\n" + "\n".join(diff[:20])
    assert text == golden.read_text()  # and byte for byte: the export is deterministic


def test_the_field_comparison_names_what_changed():
    want = {"entry": [{"resource": {"code": {"coding": [{"code": "150456"}]}, "valueQuantity": {"value": 97.1}}}]}
    got = {"entry": [{"resource": {"code": {"coding": [{"code": "150448"}]}, "valueQuantity": {"value": 97}}}]}
    assert differences(got, want) == ["entry[0].resource.code.coding[0].code: '150448' != golden '150456'",
                                      "entry[0].resource.valueQuantity.value: 97 != golden 97.1"]
    assert differences({"a": [1]}, {"a": [1, 2], "b": 1}) == ["a: 1 items, golden has 2", "b: missing"]


if __name__ == "__main__":
    rec = record(Path(sys.argv[1]), Path(sys.argv[2]))
    RECORDING.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps({k: v for k, v in rec.items() if k != "batches"}, indent=1)[:-2]
    RECORDING.write_text(head + ',\n "batches": [\n' + ",\n".join(json.dumps(b) for b in rec["batches"]) + "\n]}\n")
    print(f"wrote {RECORDING}")
