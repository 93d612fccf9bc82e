"""The FHIR export against the rules of the HL7 PHD IG (STU 2) that can be checked without the official
validator: both codings (MDC + LOINC) and UCUM units on every measurement, a Device per device version that
every Observation names, the device status as ASN.1 BITS components, stable identifiers and conditional
creates, one-minute summaries that agree with the CSV, and docs/fhir.md agreeing with the code. Every
resource is also parsed with fhir.resources (R4B). The golden comparison: test_receiver_fhir_golden.py."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import time
from collections import defaultdict
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

from oxilink import paths, sealed
from oxilink.cli import main as oxilink
from oxilink.firmware_facts import quality_flags
from oxilink.receiver import fhir_device
from oxilink.receiver.audit import AuditLog
from oxilink.receiver.deviceinfo import DeviceFacts
from oxilink.receiver.devstatus import DEV_STATUS_BITS, FLAG_BITS, bits16
from oxilink.receiver.fhir import MEASURES, Context, Key, PatientMap, logical_reference, reading_resources
from oxilink.receiver.fhir_device import gateway_key
from oxilink.receiver.fleet import SimDevice
from oxilink.receiver.pipeline import Pipeline
from oxilink.receiver.registry import DeviceRegistry
from oxilink.receiver.store import SQLITE_MIGRATIONS, Reading, open_store
from oxilink.receiver.verify import Verifier

T0 = 1_795_000_000  # 2026-11-18T11:06:40Z
MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
PHD = "http://hl7.org/fhir/uv/phd/StructureDefinition/"
DOCS = paths.ROOT / "docs" / "fhir.md"


class Ward:
    """A receiver database filled through the receiver's own pipeline, with a registry and a boards folder."""

    def __init__(self, root: Path, boards: Path = paths.BOARDS):
        self.root = root
        self.db = root / "r.sqlite"
        self.registry = DeviceRegistry(root / "devices.json")
        self.boards = boards
        self.devices: dict[str, SimDevice] = {}
        self.facts = DeviceFacts(self.registry, self.boards)  # one for the ward's life, as in a running receiver

    def device(self, name: str, board: str = "sim", serial: str = "1a2b3c") -> SimDevice:
        dev = self.devices[name] = SimDevice.new(name)
        dev.register(self.registry)
        self.registry.describe_device(name, board=board, certificate_serial=serial)
        return dev

    def ingest(self, payloads: list[tuple[SimDevice, bytes]]) -> None:
        store = open_store(self.db)
        try:
            p = Pipeline(Verifier(self.registry, store.high_counter), store, AuditLog(self.root / "audit.log", "t"),
                         facts=self.facts)
            results = p.process([(dev.topic(), dev.seal(payload)) for dev, payload in payloads])
            assert all(r.kind == "vitals" for r in results), results
        finally:
            store.close()

    def batches(self, name: str, starts: list[int], fw: str = "sim-1.0") -> None:
        dev = self.devices[name]
        self.ingest([(dev, _with_fw(dev.batch_payload(s), fw)) for s in starts])

    def export(self, *args: str, patients: dict | None = None) -> str:
        table = self.root / "patients.json"
        table.write_text(json.dumps(patients or {}))
        out = self.root / f"export-{time.monotonic_ns()}.out"
        assert oxilink(["export", "fhir", "--db", str(self.db), "--audit", str(self.root / "audit.log"),
                        "--patients", str(table), "-o", str(out), *args]) == 0
        return out.read_text()

    def csv(self) -> list[dict]:
        out = self.root / "all.csv"
        assert oxilink(["export", "csv", "--db", str(self.db), "--audit", str(self.root / "audit.log"),
                        "-o", str(out)]) == 0
        return list(csv.DictReader(io.StringIO(out.read_text())))


def _with_fw(payload: bytes, fw: str) -> bytes:
    b = sealed.decode_batch(payload)
    raw = [tuple(None if r[k] is None else round(r[k] * scale) for k, scale in
                 (("hr_bpm", 10), ("spo2_pct", 10), ("pi_pct", 100))) + (r["quality"],) for r in b["readings"]]
    return sealed.encode_batch(b["device"], b["start"], b["period_ms"], fw, b["cfg"], raw)


def ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def validate(resources: list[dict]) -> None:
    for r in resources:
        get_fhir_model_class(r["resourceType"]).model_validate(r)


def codings(resource: dict, system: str) -> list[str]:
    return [c["code"] for c in resource["code"]["coding"] if c["system"] == system]


def check_phd_bundle(bundle: dict, flagged: set[tuple[str, int, int]]) -> dict[str, int]:
    """The acceptance checks of a transaction Bundle: it parses (R4B); every entry is a conditional create on
    the resource's first identifier; every SpO2, pulse rate and PI Observation has its MDC and LOINC codings,
    a UCUM unit and references a PhdDevice and the PhgDevice of the Bundle; every reading in `flagged`
    ((device, counter, offset) with quality flags) has a device status Observation. Returns counts by type."""
    Bundle.model_validate(bundle)
    by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    status = set()
    counts: dict[str, int] = defaultdict(int)
    for e in bundle["entry"]:
        r = e["resource"]
        counts[r["resourceType"]] += 1
        assert e["request"]["ifNoneExist"] == "identifier={system}|{value}".format(**r["identifier"][0])
        if r["resourceType"] != "Observation":
            continue
        assert by_url[r["device"]["reference"]]["meta"]["profile"] == [PHD + "PhdDevice"]
        assert by_url[r["extension"][0]["valueReference"]["reference"]]["meta"]["profile"] == [PHD + "PhgDevice"]
        mdc = codings(r, MDC)
        if mdc == ["150604"]:
            device, counter, offset, _ = r["identifier"][0]["value"].split("/")
            status.add((device, int(counter), int(offset)))
            continue
        m = next(m for m in MEASURES if mdc == [str(m.mdc[0])])
        assert codings(r, LOINC) == [c for c, _ in m.loinc]
        assert (r["valueQuantity"]["system"], r["valueQuantity"]["code"]) == (UCUM, m.ucum)
    assert status == flagged
    return dict(counts)


@pytest.fixture
def ward(tmp_path) -> Ward:
    w = Ward(tmp_path)
    w.device("dev-a")
    w.batches("dev-a", [T0 + 30 * i for i in range(4)])
    return w


def test_every_measurement_has_both_codings_ucum_units_and_its_profiles(ward):
    resources = ndjson(ward.export(patients={"dev-a": "Patient/p1"}))
    validate(resources)
    measured = [r for r in resources if "valueQuantity" in r]
    assert len(measured) == 3 * 116
    for m in MEASURES:
        obs = [r for r in measured if codings(r, MDC) == [str(m.mdc[0])]]
        assert len(obs) == 116, m.text
        for o in obs:
            assert codings(o, LOINC) == [c for c, _ in m.loinc]
            assert o["valueQuantity"]["system"] == UCUM and o["valueQuantity"]["code"] == m.ucum
            assert PHD + "PhdNumericObservation" in o["meta"]["profile"]
            assert {c["coding"][0]["code"] for c in o["category"]} == ({"vital-signs", "phd"} if m.vital_sign
                                                                      else {"phd"})
            assert o["subject"] == {"reference": "Patient/p1"}
    spo2 = next(r for r in measured if codings(r, MDC) == ["150456"])
    assert spo2["meta"]["profile"][0] == "http://hl7.org/fhir/StructureDefinition/oxygensat"
    assert spo2["identifier"][1]["system"] == PHD + "PhdBaseObservation"  # the PHD conditional-create identifier
    assert spo2["identifier"][1]["value"] == f"dev-a-p1-150456-{T0 - 946684800}"


def test_every_observation_names_a_device_version_and_the_gateway(ward):
    resources = ndjson(ward.export())
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in resources}
    devices = [r for r in resources if r["resourceType"] == "Device"]
    assert [d["meta"]["profile"] for d in devices] == [[PHD + "PhgDevice"], [PHD + "PhdDevice"]]
    gateway, device = devices
    assert gateway["type"]["coding"][0]["code"] == "531981"
    assert device["type"]["coding"][0]["code"] == "65573"  # PhdDevice: MDC_MOC_VMS_MDS_SIMP
    assert device["specialization"][0]["systemType"]["coding"][0]["code"] == "528388"  # pulse oximeter
    assert {i["system"]: i["value"] for i in device["identifier"]} == {
        "urn:oxilink:device-version": device["identifier"][0]["value"], "urn:oxilink:device": "dev-a",
        "urn:oxilink:device-certificate": "1a2b3c"}
    assert (device["manufacturer"], device["modelNumber"]) == ("oxilink project", "oxilink simulated board")
    versions = {v["type"]["coding"][0]["code"]: v["value"] for v in device["version"]}
    assert versions["531976"] == "sim-1.0" and versions["board-config"] == "0"  # firmware and cfg of the batches
    props = {p["type"]["coding"][0]["code"]: p for p in device["property"]}
    assert props["sensor"]["valueCode"][0]["coding"][0]["code"] == "max30102"
    assert [q["value"] for q in props["spo2-calibration"]["valueQuantity"]] == [110.0, -25.0, 0.0]
    for o in (r for r in resources if r["resourceType"] == "Observation"):
        assert by_ref[o["device"]["reference"]] is device
        assert by_ref[o["extension"][0]["valueReference"]["reference"]] is gateway


def test_flagged_readings_get_a_device_status_observation(ward):
    resources = ndjson(ward.export())
    store = open_store(ward.db)
    flagged = {(r.counter, r.offset): r.quality for r in store.readings() if r.quality}
    store.close()
    assert flagged  # SimDevice withholds one reading per batch with the motion flag
    status = {tuple(map(int, o["identifier"][0]["value"].split("/")[1:3])): o
              for o in resources if o["resourceType"] == "Observation" and codings(o, MDC) == ["150604"]}
    assert set(status) == set(flagged)
    for where in flagged:
        o = status[where]
        assert o["meta"]["profile"] == [PHD + "PhdBitsEnumerationObservation"] and "valueQuantity" not in o
        assert [c["code"]["coding"][0]["code"] for c in o["component"]] == ["150604.7"]  # motion
        assert all(c["valueBoolean"] is True for c in o["component"])
        same_second = [r for r in resources if r.get("effectiveDateTime") == o["effectiveDateTime"]]
        assert all(r["device"] == o["device"] for r in same_second)


@pytest.mark.parametrize(("quality", "bits", "value"), [
    (1, [4], 0x0800),  # no finger: sensor-off
    (4, [7], 0x0100),  # motion: signal-pulse-questionable
    (8 | 16, [10], 0x0020),  # low perfusion (irregular has no bit)
    (1 | 2 | 4 | 8 | 32 | 64, [3, 4, 5, 6, 7, 10], 0x1F20),
    (16, [], 0),
])
def test_quality_flags_become_asn1_bits_components(quality, bits, value):
    ctx = Context(PatientMap({}), logical_reference, gateway_key())
    device = Key("Device", "oxl-dev-dev-a-0", "urn:oxilink:device-version", "dev-a/0")
    r = Reading("dev-a", 5, 3, T0 + 0.5, None, None, None, quality | 0x100)
    (status, key), = reading_resources(r, device, ctx)
    validate([status])
    assert key.value == "dev-a/5/3/status" and status["effectiveDateTime"] == "2026-11-18T11:06:40.500Z"
    components = status.get("component", [])
    assert [c["code"]["coding"][0] for c in components] == [
        {"system": "http://terminology.hl7.org/CodeSystem/ASN1ToHL7", "code": f"150604.{b}",
         "display": DEV_STATUS_BITS[b]} for b in bits]
    assert bits16(bits) == value  # ASN.1 BITS-16: bit 0 is the most significant
    note = status["note"][0]["text"]
    assert note.startswith(f"firmware quality flags 0x{quality | 0x100:x}:") and "0x100" in note
    assert ("irregular" in note.split("no MDC_PULS_OXIM_DEV_STATUS bit for:")[-1]) == bool(quality & 16)


def test_every_firmware_flag_is_mapped_or_explicitly_unmappable():
    names = [name for _, name in quality_flags()]
    assert names and sorted(FLAG_BITS) == sorted(names)
    assert {b for b in FLAG_BITS.values() if b is not None} <= set(DEV_STATUS_BITS)


def _table(heading: str) -> list[list[str]]:
    """The rows (cells without backticks) of the first Markdown table after a heading in docs/fhir.md."""
    text = DOCS.read_text()
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip().replace("`", "") for c in line.strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]


def test_docs_code_table_is_what_the_exporter_writes():
    rows = {r[2]: r for r in _table("## Codes and units")}
    for m in MEASURES:
        row = rows[str(m.mdc[0])]
        assert row[3] == m.mdc[1] and re.findall(r"\d+-\d", row[4]) == [c for c, _ in m.loinc] and row[5] == m.ucum
        assert row[6], f"no source for {m.text}"
    assert rows["150604"][3] == "MDC_PULS_OXIM_DEV_STATUS" and rows["150604"][6]


def test_docs_flag_table_is_the_mapping():
    rows = {r[0]: r for r in _table("## Quality flags as MDC_PULS_OXIM_DEV_STATUS bits")}
    for bit, name in quality_flags():
        row = rows[name]
        assert row[1] == str(bit)
        mapped = FLAG_BITS[name]
        assert row[2] == (f"150604.{mapped} {DEV_STATUS_BITS[mapped]}" if mapped is not None else "unmappable")
        assert row[3], f"no reason or source for {name}"


def test_same_span_exports_byte_for_byte_and_identifiers_stay_put(ward):
    first = ward.export("--until", str(T0 + 60), "--bundle", "transaction")
    ndjson_before = ward.export("--until", str(T0 + 60))
    ward.batches("dev-a", [T0 + 120, T0 + 150])  # more data arrives later
    assert ward.export("--until", str(T0 + 60), "--bundle", "transaction") == first
    assert ward.export("--until", str(T0 + 60)) == ndjson_before
    everything = set(ward.export().splitlines())
    assert set(ndjson_before.splitlines()) <= everything  # the same readings give the same resources
    ids = [json.loads(line)["id"] for line in everything]
    assert len(ids) == len(set(ids))
    values = {json.loads(line)["identifier"][0]["value"] for line in ndjson_before.splitlines()}
    assert {"dev-a/1/0/hr", "dev-a/1/0/spo2", "dev-a/1/0/pi", "dev-a/1/16/status"} <= values


class FhirServer:
    """Just enough of a FHIR server to run a transaction of conditional creates (FHIR R4 http.html#ccreate):
    an entry whose ifNoneExist matches an existing resource creates nothing, and references to its fullUrl
    then point to that resource. References that are not urn:uuid (the Patient) name what the server has."""

    def __init__(self):
        self.resources: dict[str, list[dict]] = defaultdict(list)

    def transaction(self, bundle: dict) -> int:
        resolved, created = {}, []
        for e in bundle["entry"]:
            kind = e["request"]["url"]
            assert e["request"]["method"] == "POST" and "id" not in e["resource"]
            system, value = e["request"]["ifNoneExist"].removeprefix("identifier=").split("|", 1)
            match = [r for r in self.resources[kind]
                     if any(i.get("system") == system and i["value"] == value for i in r["identifier"])]
            if not match:
                match = [dict(e["resource"], id=str(len(self.resources[kind]) + 1))]
                self.resources[kind] += match
                created.append(match[0])
            resolved[e["fullUrl"]] = f"{kind}/{match[0]['id']}"
        for r in created:
            self._resolve(r, resolved)
        return len(created)

    def _resolve(self, node, resolved: dict) -> None:
        for value in (node.values() if isinstance(node, dict) else node if isinstance(node, list) else []):
            self._resolve(value, resolved)
        if isinstance(node, dict) and node.get("reference", "").startswith("urn:uuid:"):
            assert node["reference"] in resolved, f"dangling reference {node['reference']}"
            node["reference"] = resolved[node["reference"]]


def test_transaction_bundle_of_conditional_creates_imports_once(ward):
    text = ward.export("--bundle", "transaction", patients={"dev-a": "Patient/p1"})
    bundle = json.loads(text)
    assert check_phd_bundle(bundle, {("dev-a", c, 16) for c in range(1, 5)}) == {"Device": 2,
                                                                                  "Observation": 3 * 116 + 4}
    assert bundle["type"] == "transaction" and len(text.splitlines()) == len(bundle["entry"]) + 2
    for e in bundle["entry"]:
        ident = e["resource"]["identifier"][0]
        assert e["request"]["ifNoneExist"] == f"identifier={ident['system']}|{ident['value']}"
        assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", e["fullUrl"])
    server = FhirServer()
    assert server.transaction(bundle) == len(bundle["entry"]) == 2 + 3 * 116 + 4
    assert server.transaction(json.loads(text)) == 0  # the same span again: nothing new
    wider = json.loads(ward.export("--bundle", "transaction", "--since", str(T0 + 100)))
    assert server.transaction(wider) == 0  # a part of it: nothing new either
    obs = server.resources["Observation"][0]
    assert obs["device"]["reference"] == "Device/2" and obs["subject"] == {"reference": "Patient/p1"}


def test_a_firmware_update_recalibration_or_new_certificate_is_a_new_device_version(tmp_path):
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "sim.json").write_text((paths.BOARDS / "sim.json").read_text())
    ward = Ward(tmp_path, boards)
    ward.device("dev-a")
    ward.batches("dev-a", [T0, T0 + 30])
    ward.batches("dev-a", [T0 + 60], fw="sim-1.1")
    board = json.loads((boards / "sim.json").read_text())
    board["vitals"] = {"spo2_curve": [104.5, -17.0, 0.0]}  # `oxilink calibrate` wrote a new curve
    (boards / "sim.json").write_text(json.dumps(board))
    ward.batches("dev-a", [T0 + 90], fw="sim-1.1")
    ward.registry.describe_device("dev-a", board="sim", certificate_serial="9f8e7d")  # re-provisioned
    ward.batches("dev-a", [T0 + 120], fw="sim-1.1")

    resources = ndjson(ward.export())
    validate(resources)
    devices = [r for r in resources if r["resourceType"] == "Device"][1:]
    assert len(devices) == 4 and len({d["id"] for d in devices}) == 4
    serials = [next(i["value"] for i in d["identifier"] if i["system"] == fhir_device.CERTIFICATE_SYSTEM)
               for d in devices]
    assert serials == ["1a2b3c", "1a2b3c", "1a2b3c", "9f8e7d"]
    assert all(d["identifier"][1] == {"system": "urn:oxilink:device", "value": "dev-a"} for d in devices)
    firmware = [next(v["value"] for v in d["version"] if v["type"]["coding"][0]["code"] == "531976") for d in devices]
    curves = [[q["value"] for q in next(p for p in d["property"] if p["type"]["coding"][0]["code"] ==
                                        "spo2-calibration")["valueQuantity"]] for d in devices]
    assert firmware == ["sim-1.0", "sim-1.1", "sim-1.1", "sim-1.1"]
    assert curves == [[110.0, -25.0, 0.0], [110.0, -25.0, 0.0], [104.5, -17.0, 0.0], [104.5, -17.0, 0.0]]
    by_counter = defaultdict(set)
    for o in (r for r in resources if r["resourceType"] == "Observation"):
        by_counter[int(o["identifier"][0]["value"].split("/")[1])].add(o["device"]["reference"])
    refs = [f"Device/{d['id']}" for d in devices]
    assert dict(by_counter) == {1: {refs[0]}, 2: {refs[0]}, 3: {refs[1]}, 4: {refs[2]}, 5: {refs[3]}}
    first = ward.export("--until", str(T0 + 60))  # the old span still shows the device as it was
    assert f'"id":"{devices[0]["id"]}"' in first and devices[2]["id"] not in first


def test_a_batch_from_another_board_file_is_logged(tmp_path, caplog):
    """cfg names the board file a batch was taken under (docs/format.md); when it is not the receiver's copy,
    the Device would describe a file the board is not running: the receiver says so, once per version."""
    from test_boardconf import config_id

    ward = Ward(tmp_path)
    dev = ward.device("dev-a")
    ours = config_id((paths.BOARDS / "sim.json").read_bytes())

    def with_cfg(start: int, cfg: int) -> bytes:
        b = sealed.decode_batch(dev.batch_payload(start))
        raw = [tuple(None if r[k] is None else round(r[k] * scale) for k, scale in
                     (("hr_bpm", 10), ("spo2_pct", 10), ("pi_pct", 100))) + (r["quality"],) for r in b["readings"]]
        return sealed.encode_batch(b["device"], b["start"], b["period_ms"], b["fw"], cfg, raw)

    with caplog.at_level("WARNING", logger="oxilink.receiver"):
        ward.ingest([(dev, with_cfg(T0, ours))])
        assert "config id" not in caplog.text
        ward.ingest([(dev, with_cfg(T0 + 30, ours + 1)), (dev, with_cfg(T0 + 60, ours + 1))])
    assert caplog.text.count(f"device dev-a runs board file config id {ours + 1}, the receiver's") == 1
    assert f"sim.json is {ours}" in caplog.text


def test_a_board_the_receiver_cannot_read_is_logged_and_left_out(tmp_path, caplog):
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "broken.json").write_text(json.dumps({"board": "broken", "platform": "unix", "sensr": {}}))
    ward = Ward(tmp_path, boards)
    ward.device("dev-a", board="broken")
    ward.device("dev-b", board="gone")
    with caplog.at_level("WARNING", logger="oxilink.receiver"):
        ward.batches("dev-a", [T0])
        ward.batches("dev-b", [T0])
    assert "sensr: unknown key" in caplog.text and "gone.json is missing" in caplog.text
    devices = [r for r in ndjson(ward.export()) if r["resourceType"] == "Device"][1:]
    assert [(d["manufacturer"], d["modelNumber"], "property" in d) for d in devices] == [
        ("unknown", "broken", False), ("unknown", "gone", False)]  # the batches are stored all the same


def test_a_database_from_before_device_versions_still_exports(tmp_path):
    db = tmp_path / "old.sqlite"
    import sqlite3

    with sqlite3.connect(db) as c:  # schema version 1, as written by an earlier oxilink
        c.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                  "applied_at REAL NOT NULL)")
        for sql in SQLITE_MIGRATIONS[0][2]:
            c.execute(sql)
        c.execute("INSERT INTO schema_migrations VALUES (1, 'messages and readings', 0)")
        c.execute("INSERT INTO messages VALUES ('dev-old', 1, 'vitals', x'01', 'oxilink/dev-old/vitals', 0, ?, "
                  "1000, '0.0.9', 3, 2, NULL)", (T0,))
        c.executemany("INSERT INTO readings VALUES ('dev-old', 1, ?, ?, 70.0, 97.0, 1.5, 0)", [(0, T0), (1, T0 + 1)])
    out = tmp_path / "old.ndjson"
    assert oxilink(["export", "fhir", "--db", str(db), "--audit", str(tmp_path / "a.log"), "-o", str(out)]) == 0
    resources = ndjson(out.read_text())
    validate(resources)
    device = resources[1]
    assert device["manufacturer"] == "unknown" and device["modelNumber"] == "unknown"
    assert [(v["type"]["text"], v["value"]) for v in device["version"]] == [
        ("Firmware revision", "0.0.9"), ("Board configuration version (cfg, sent in every batch)", "3")]
    assert len(resources) == 2 + 2 * 3 and all(r["device"]["reference"] == f"Device/{device['id']}"
                                               for r in resources[2:])


def _minute_figures(rows: list[dict]) -> dict[tuple[str, str], dict]:
    """Per (device, minute): median HR, minimum SpO2, median PI and their counts, from CSV rows."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["device"], row["t"][:16])].append(row)
    out = {}
    for key, rs in groups.items():
        hr, spo2, pi = ([float(r[c]) for r in rs if r[c]] for c in ("hr_bpm", "spo2_pct", "pi_pct"))
        out[key] = {"hr": (statistics.median(hr), len(hr)), "spo2": (min(spo2), len(spo2)),
                    "pi": (statistics.median(pi), len(pi)), "n": len(rs)}
    return out


def test_minute_summaries_match_the_csv_and_shrink_the_export_50_times(tmp_path):
    ward = Ward(tmp_path)
    for name in ("dev-a", "dev-b"):
        ward.device(name)
        ward.batches(name, [T0 + 5 + 30 * i for i in range(20)])  # 10 minutes each, from 11:06:45
    per_second = ward.export()
    summaries = ndjson(ward.export("--resolution", "1m"))
    validate(summaries)
    assert len(per_second.splitlines()) / len(summaries) >= 50
    expected = _minute_figures(ward.csv())
    got = {}
    for s in (r for r in summaries if r["resourceType"] == "Observation" and "component" in r
              and codings(r, "urn:oxilink:codes")):
        comp = {(c["code"]["coding"][0]["code"], c["extension"][0]["valueCoding"]["code"]): c for c in s["component"]}
        got[(s["device"]["display"], s["effectivePeriod"]["start"][:16])] = {
            "hr": (comp[("149530", "median")]["valueQuantity"]["value"], comp[("149530", "count")]["valueInteger"]),
            "spo2": (comp[("150456", "minimum")]["valueQuantity"]["value"], comp[("150456", "count")]["valueInteger"]),
            "pi": (comp[("150448", "median")]["valueQuantity"]["value"], comp[("150448", "count")]["valueInteger"]),
            "n": comp[("readings", "totalcount")]["valueInteger"]}
        assert s["effectivePeriod"]["end"][11:16] != s["effectivePeriod"]["start"][11:16]
    assert got.keys() == expected.keys() and len(got) == 2 * 11  # 11:06 to 11:16
    for key, figures in expected.items():
        for name in ("hr", "spo2", "pi"):
            assert got[key][name][0] == pytest.approx(figures[name][0], abs=0.1), (key, name)
            assert got[key][name][1] == figures[name][1]
        assert got[key]["n"] == figures["n"]


def test_a_minute_without_valid_values_says_why_and_counts_the_flags(tmp_path):
    ward = Ward(tmp_path)
    dev = ward.device("dev-a")
    raw = [(None, None, None, 1)] * 28 + [(None, None, None, 1 | 0x100), (None, None, None, 1 | 16 | 0x200)]
    ward.ingest([(dev, sealed.encode_batch("dev-a", T0 - 40, 1000, "sim-1.0", 0, raw))])  # 11:06:00 to :30
    bundle = json.loads(ward.export("--resolution", "1m", "--bundle", "transaction"))
    Bundle.model_validate(bundle)
    summary, status = (e["resource"] for e in bundle["entry"][2:])
    components = {(c["code"]["coding"][0]["code"], c["extension"][0]["valueCoding"]["code"]): c
                  for c in summary["component"]}
    assert components[("149530", "median")]["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert components[("149530", "count")]["valueInteger"] == 0 and components[("readings", "totalcount")][
        "valueInteger"] == 30
    assert [c["code"]["coding"][0]["code"] for c in status["component"]] == ["150604.4"]
    assert status["note"][0]["text"] == ("firmware quality flags in the period (seconds): no_finger 30, irregular 1, "
                                         "0x300 2; no MDC_PULS_OXIM_DEV_STATUS bit for: irregular, 0x300")
