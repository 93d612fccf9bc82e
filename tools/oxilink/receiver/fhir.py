"""FHIR R4 Observations for stored readings, following the vital-signs profiles.

  SpO2        http://hl7.org/fhir/StructureDefinition/oxygensat: LOINC 2708-6 (required by the profile) and
              59408-5 (by pulse oximetry), UCUM "%".
  heart rate  http://hl7.org/fhir/StructureDefinition/heartrate: LOINC 8867-4, UCUM "/min".

The device is the Observation's `device` (Device/<id>). The device knows no patient (minimum necessary):
`subject` comes from a mapping table the operator controls (PatientMap), and is left out for a device the
table does not map. Ids and identifiers are derived from (device, counter, offset), so exporting the same
reading twice yields the same resource and an import can be made idempotent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .audit import iso_utc
from .store import Reading
from .timeparse import parse_time

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs", "display": "Vital Signs"}], "text": "Vital Signs"}
IDENTIFIER_SYSTEM = "urn:oxilink:reading"

# firmware/vitals.py quality bits; a value is only present when the firmware trusted it, but some flags
# (irregular rhythm, low perfusion) still come with a value and are worth telling the reader.
QUALITY_FLAGS = {1: "no_finger", 2: "saturated", 4: "motion", 8: "low_perfusion", 16: "irregular",
                 32: "warming_up", 64: "channels_swapped", 128: "lost"}


def quality_names(quality: int) -> list[str]:
    return [name for bit, name in QUALITY_FLAGS.items() if quality & bit] + (
        [f"0x{quality & ~sum(QUALITY_FLAGS):x}"] if quality & ~sum(QUALITY_FLAGS) else [])


@dataclass(frozen=True)
class Measure:
    field: str
    key: str
    profile: str
    codings: tuple[tuple[str, str], ...]
    text: str
    unit: str
    ucum: str


SPO2 = Measure("spo2_pct", "spo2", "http://hl7.org/fhir/StructureDefinition/oxygensat",
               (("2708-6", "Oxygen saturation in Arterial blood"),
                ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry")),
               "SpO2", "%", "%")
HEART_RATE = Measure("hr_bpm", "hr", "http://hl7.org/fhir/StructureDefinition/heartrate",
                     (("8867-4", "Heart rate"),), "Heart rate", "beats/minute", "/min")
MEASURES = (SPO2, HEART_RATE)


class PatientMap:
    """device id → patient reference, optionally per period (a device moves from patient to patient).

    File (JSON): {"dev-a": "Patient/123",
                  "dev-b": [{"patient": "Patient/7", "from": "2026-01-01T00:00:00Z", "until": "2026-02-01"},
                            {"patient": "Patient/9", "from": "2026-02-01"}]}
    """

    def __init__(self, table: dict[str, list[tuple[str, float | None, float | None]]]):
        self.table = table

    @classmethod
    def load(cls, path: Path | None) -> PatientMap:
        if path is None or not Path(path).exists():
            return cls({})
        doc = json.loads(Path(path).read_text())
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected an object of device id → patient reference")
        table = {}
        for device, spec in doc.items():
            periods = [{"patient": spec}] if isinstance(spec, str) else spec
            if not isinstance(periods, list) or not all(isinstance(p, dict) and "patient" in p for p in periods):
                raise ValueError(f"{path}: {device}: expected a reference or a list of {{patient, from, until}}")
            table[device] = [(p["patient"], parse_time(p["from"]) if p.get("from") else None,
                              parse_time(p["until"]) if p.get("until") else None) for p in periods]
        return cls(table)

    def patient(self, device: str, t: float) -> str | None:
        for ref, start, end in self.table.get(device, []):
            if (start is None or t >= start) and (end is None or t < end):
                return ref
        return None


def _fhir_id(*parts: object) -> str:
    text = "-".join(str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9\-.]", "-", text)[:64]


def _datetime(t: float) -> str:
    return iso_utc(t) if t % 1 else iso_utc(t).replace(".000Z", "Z")


def observation(r: Reading, m: Measure, patient: str | None) -> dict:
    value = getattr(r, m.field)
    ident = f"{r.device}/{r.counter}/{r.offset}/{m.key}"
    obs: dict = {
        "resourceType": "Observation",
        "id": _fhir_id("oxl", m.key, r.device, r.counter, r.offset),
        "meta": {"profile": [m.profile]},
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": ident}],
        "status": "final",
        "category": [CATEGORY],
        "code": {"coding": [{"system": LOINC, "code": c, "display": d} for c, d in m.codings], "text": m.text},
        "effectiveDateTime": _datetime(r.t),
        "valueQuantity": {"value": value, "unit": m.unit, "system": UCUM, "code": m.ucum},
        "device": {"reference": f"Device/{_fhir_id(r.device)}", "display": r.device},
    }
    if patient:
        obs["subject"] = {"reference": patient}
    if r.quality:
        obs["note"] = [{"text": "signal quality flags: " + ", ".join(quality_names(r.quality))}]
    return obs


def observations(readings: Iterator[Reading], patients: PatientMap) -> Iterator[dict]:
    """One Observation per present value: a reading without a valid SpO2 gives no SpO2 Observation."""
    for r in readings:
        patient = patients.patient(r.device, r.t)
        for m in MEASURES:
            if getattr(r, m.field) is not None:
                yield observation(r, m, patient)
