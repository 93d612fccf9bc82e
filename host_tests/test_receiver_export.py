"""Data out: CSV columns and empty cells, FHIR Observations (validated by fhir.resources), patient mapping
with periods, time arguments, and the plot. The PHD IG rules of the FHIR export: test_receiver_fhir.py."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.observation import Observation

from oxilink.cli import main as oxilink
from oxilink.receiver.audit import read_entries
from oxilink.receiver.fhir import Context, Key, PatientMap, logical_reference, reading_resources
from oxilink.receiver.fhir_device import gateway_key
from oxilink.receiver.store import Reading, open_store
from oxilink.receiver.timeparse import parse_time

T0 = 1_795_000_000  # 2026-11-18T11:06:40Z


def reading(offset: int, hr=72.5, spo2=97.0, pi=1.25, quality=0, device="dev-a", counter=9) -> Reading:
    return Reading(device, counter, offset, T0 + offset, hr, spo2, pi, quality)


@pytest.fixture
def db(tmp_path):
    """A store filled through the receiver's own pipeline from sealed batches."""
    from oxilink.receiver.audit import AuditLog
    from oxilink.receiver.fleet import SimDevice
    from oxilink.receiver.pipeline import Pipeline
    from oxilink.receiver.registry import DeviceRegistry
    from oxilink.receiver.verify import Verifier

    path = tmp_path / "r.sqlite"
    store = open_store(path)
    registry = DeviceRegistry(tmp_path / "devices.json")
    dev = SimDevice.new("dev-a")
    dev.register(registry)
    p = Pipeline(Verifier(registry, store.high_counter), store, AuditLog(tmp_path / "audit.log", "t"))
    p.process([(dev.topic(), dev.sealed_batch(T0 + 30 * i)) for i in range(4)])
    store.close()
    return path


def test_csv_columns_iso_times_and_empty_cells(db, tmp_path, capsys):
    assert oxilink(["export", "csv", "--db", str(db), "--audit", str(tmp_path / "audit.log"),
                    "--since", "2026-11-18T11:07:00Z", "--until", str(T0 + 60)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "device,counter,t,hr_bpm,spo2_pct,pi_pct,quality"
    assert len(lines) == 1 + 40  # from T0 + 20 (11:07:00Z) up to T0 + 60
    first = lines[1].split(",")
    assert first[:3] == ["dev-a", "1", "2026-11-18T11:07:00Z"]
    withheld = [line for line in lines[1:] if line.endswith(",4")]
    assert withheld and all(line.split(",")[3:6] == ["", "", ""] for line in withheld)
    entry = [e for e in read_entries(tmp_path / "audit.log") if e["event"] == "export"][-1]
    assert entry["detail"]["rows"] == 40 and entry["detail"]["since"] == T0 + 20


def test_every_observation_validates_and_follows_the_vital_signs_profile(db, tmp_path):
    patients = tmp_path / "patients.json"
    patients.write_text(json.dumps({"dev-a": [{"patient": "Patient/a", "until": str(T0 + 60)},
                                              {"patient": "Patient/b", "from": str(T0 + 60)}]}))
    out = tmp_path / "obs.ndjson"
    assert oxilink(["export", "fhir", "--device", "dev-a", "--since", str(T0), "--db", str(db), "--patients",
                    str(patients), "--audit", str(tmp_path / "audit.log"), "-o", str(out)]) == 0
    obs = [o for line in out.read_text().splitlines() if (o := json.loads(line))["resourceType"] == "Observation"]
    valued = [o for o in obs if "valueQuantity" in o]
    assert len(valued) == 3 * (120 - 4 * 1)  # SpO2, pulse rate, PI; one withheld reading per batch (the 17th)
    for o in obs:
        Observation.model_validate(o)
        assert o["status"] == "final" and o["device"]["reference"].startswith("Device/oxl-dev-dev-a-")
    vital = [o for o in valued if o["category"][0]["coding"][0]["code"] == "vital-signs"]
    assert len(vital) == 2 * 116
    hr = [o for o in obs if any(c["code"] == "8867-4" for c in o["code"]["coding"])]
    assert len(hr) == 116 and {o["valueQuantity"]["code"] for o in hr} == {"/min"}
    assert {o["valueQuantity"]["system"] for o in valued} == {"http://unitsofmeasure.org"}
    subjects = [o["subject"]["reference"] for o in obs]
    assert subjects[0] == "Patient/a" and subjects[-1] == "Patient/b"
    assert len({o["id"] for o in obs}) == len(obs)
    entry = [e for e in read_entries(tmp_path / "audit.log") if e["event"] == "export"][-1]
    assert entry["detail"]["resources"] == {"Device": 2, "Observation": 3 * 116 + 4}


def test_unmapped_device_has_no_subject_and_a_warning(db, tmp_path, capsys):
    assert oxilink(["export", "fhir", "--db", str(db), "--patients", str(tmp_path / "none.json"),
                    "--audit", str(tmp_path / "audit.log")]) == 0
    cap = capsys.readouterr()
    assert "have no subject" in cap.err and "Observation 352" in cap.err
    assert all("subject" not in json.loads(line) for line in cap.out.splitlines())


def test_quality_flags_travel_as_a_note():
    ctx = Context(PatientMap({}), logical_reference, gateway_key())
    device = Key("Device", "oxl-dev-dev-a-0", "urn:oxilink:device-version", "dev-a/0")
    resources = reading_resources(reading(0, quality=16 | 8), device, ctx)
    assert [r["code"]["coding"][0]["code"] for r, _ in resources] == ["150456", "149530", "150448", "150604"]
    obs = resources[0][0]
    assert obs["note"] == [{"text": "signal quality flags: low_perfusion, irregular"}]
    assert obs["effectiveDateTime"].endswith("Z")
    Observation.model_validate(obs)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-18T11:06:40Z", T0), ("2026-11-18T12:06:40+01:00", T0), ("2026-11-18T11:06:40", T0), (str(T0), T0),
    ("2h", T0 - 7200), ("-30m", T0 - 1800), ("7d", T0 - 7 * 86400),
])
def test_time_arguments(text, expected):
    assert parse_time(text, now=T0) == expected


def test_bad_time_argument_is_an_error(db, tmp_path, capsys):
    assert oxilink(["export", "csv", "--db", str(db), "--since", "yesterday-ish"]) == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_plot_writes_a_png(db, tmp_path, capsys):
    out = tmp_path / "trend.png"
    assert oxilink(["plot", "--device", "dev-a", "--since", str(T0), "--db", str(db), "-o", str(out),
                    "--audit", str(tmp_path / "audit.log")]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    from PIL import Image

    with Image.open(out) as img:
        assert img.size == (1100, 600)
        colours = img.convert("RGB").getcolors(1 << 20)
        assert len(colours) > 50  # curves, shading, text: not a blank canvas
    assert oxilink(["plot", "--device", "nobody", "--db", str(db), "-o", str(tmp_path / "x.png"),
                    "--audit", str(tmp_path / "audit.log")]) == 1
