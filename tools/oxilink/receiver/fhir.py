"""FHIR R4 Observations for stored readings, shaped as an IEEE 11073 gateway publishes them (HL7 PHD IG STU 2)
and, where they apply, as the FHIR vital-signs profiles want them. docs/fhir.md has the code tables.

  SpO2        MDC 150456 + LOINC 2708-6, 59408-5, UCUM %     PhdNumericObservation + vital-signs oxygensat
  pulse rate  MDC 149530 + LOINC 8867-4, UCUM /min           PhdNumericObservation + vital-signs heartrate
  PI          MDC 150448 + LOINC 61006-3, UCUM %             PhdNumericObservation
  status      MDC 150604 (BITS, devstatus.py)                PhdBitsEnumerationObservation

Every Observation names its device version's Device (fhir_device.py) and the gateway that made it (the PHD
IG's gatewayDevice extension). The device knows no patient (minimum necessary): `subject` comes from a table
the operator controls (PatientMap) and is left out for a device the table does not map. Ids and identifiers
derive from (device, counter, offset), so exporting the same reading twice yields the same resource, and a
transaction import can use them for conditional creates.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..firmware_facts import quality_names
from .audit import iso_utc
from .devstatus import ASN1_SYSTEM, DEV_STATUS_BITS, MDC_PULS_OXIM_DEV_STATUS, bit_code, status_bits, unmapped_flags
from .store import Reading
from .timeparse import parse_time

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
MDC = "urn:iso:std:iso:11073:10101"
OXILINK_CODES = "urn:oxilink:codes"  # our own codes, where no standard one says it (docs/fhir.md)
PHD_PROFILE = "http://hl7.org/fhir/uv/phd/StructureDefinition/"
VITALS_PROFILE = "http://hl7.org/fhir/StructureDefinition/"
GATEWAY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
PHD_IDENTIFIER_SYSTEM = PHD_PROFILE + "PhdBaseObservation"  # the PHD IG's conditional-create identifier
READING_SYSTEM = "urn:oxilink:reading"
VITAL_SIGNS = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                           "code": "vital-signs", "display": "Vital Signs"}], "text": "Vital Signs"}
PHD_CATEGORY = {"coding": [{"system": "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories",
                            "code": "phd", "display": "PHD generated"}]}
GHS_EPOCH = 946684800  # 2000-01-01T00:00:00Z: the PHD identifier counts seconds from here


@dataclass(frozen=True)
class Key:
    """What a resource is known by: its type and id (NDJSON) and its stable identifier (conditional create)."""
    type: str
    id: str
    system: str
    value: str


class Referrer(Protocol):
    def __call__(self, key: Key) -> str: ...


def logical_reference(key: Key) -> str:
    return f"{key.type}/{key.id}"


@dataclass(frozen=True)
class Measure:
    field: str
    key: str  # in identifiers and ids: stable across versions of this exporter
    profiles: tuple[str, ...]
    mdc: tuple[int, str]
    loinc: tuple[tuple[str, str], ...]
    text: str
    unit: str
    ucum: str
    vital_sign: bool

    def code(self, text: str | None = None) -> dict:
        coding = [{"system": MDC, "code": str(self.mdc[0]), "display": self.mdc[1]}]
        coding += [{"system": LOINC, "code": c, "display": d} for c, d in self.loinc]
        return {"coding": coding, "text": text or self.text}

    def quantity(self, value: float) -> dict:
        return {"value": value, "unit": self.unit, "system": UCUM, "code": self.ucum}


NUMERIC = PHD_PROFILE + "PhdNumericObservation"
SPO2 = Measure("spo2_pct", "spo2", (VITALS_PROFILE + "oxygensat", NUMERIC), (150456, "MDC_PULS_OXIM_SAT_O2"),
               (("2708-6", "Oxygen saturation in Arterial blood"),
                ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry")), "SpO2", "%", "%", True)
PULSE_RATE = Measure("hr_bpm", "hr", (VITALS_PROFILE + "heartrate", NUMERIC), (149530, "MDC_PULS_OXIM_PULS_RATE"),
                     (("8867-4", "Heart rate"),), "Pulse rate", "beats/minute", "/min", True)
PERFUSION = Measure("pi_pct", "pi", (NUMERIC,), (150448, "MDC_PULS_OXIM_PERF_REL"),
                    (("61006-3", "Perfusion index Tissue by Pulse oximetry"),), "Perfusion index", "%", "%", False)
MEASURES = (SPO2, PULSE_RATE, PERFUSION)
DEV_STATUS_CODE = {"coding": [{"system": MDC, "code": str(MDC_PULS_OXIM_DEV_STATUS),
                               "display": "MDC_PULS_OXIM_DEV_STATUS"}], "text": "Pulse oximeter device status"}


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


def fhir_id(*parts: object) -> str:
    """A FHIR id ([A-Za-z0-9-.]{1,64}); a longer one keeps its start and gets a hash of the whole."""
    text = re.sub(r"[^A-Za-z0-9\-.]", "-", "-".join(str(p) for p in parts))
    return text if len(text) <= 64 else f"{text[:47]}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def fhir_datetime(t: float) -> str:
    """ISO 8601 UTC, with milliseconds only when the time has a fraction (also the CSV's time format)."""
    return iso_utc(t) if t % 1 else iso_utc(t).replace(".000Z", "Z")


def phd_identifier(device: str, patient: str | None, code: int | str, t: float) -> list[dict]:
    """The PHD IG's conditional-create identifier (device-patient-type-timestamp), when a patient is known.
    The device part is our pseudonym (there is no IEEE EUI-64); the timestamp counts seconds from 2000."""
    if patient is None:
        return []
    since_2000 = t - GHS_EPOCH
    stamp = f"{since_2000:.0f}" if since_2000 % 1 == 0 else f"{since_2000:.3f}"
    return [{"system": PHD_IDENTIFIER_SYSTEM, "value": f"{device}-{patient.rsplit('/', 1)[-1]}-{code}-{stamp}"}]


@dataclass
class Context:
    """What every Observation of an export refers to."""
    patients: PatientMap
    refer: Referrer
    gateway: Key

    def gateway_extension(self) -> list[dict]:
        return [{"url": GATEWAY_EXTENSION, "valueReference": {"reference": self.refer(self.gateway)}}]

    def subject(self, patient: str | None) -> dict:
        return {"subject": {"reference": patient}} if patient else {}


def observation(r: Reading, m: Measure, device: Key, ctx: Context) -> tuple[dict, Key]:
    patient = ctx.patients.patient(r.device, r.t)
    key = Key("Observation", fhir_id("oxl", m.key, r.device, r.counter, r.offset), READING_SYSTEM,
              f"{r.device}/{r.counter}/{r.offset}/{m.key}")
    obs: dict = {
        "resourceType": "Observation",
        "id": key.id,
        "meta": {"profile": list(m.profiles)},
        "extension": ctx.gateway_extension(),
        "identifier": [{"system": key.system, "value": key.value},
                       *phd_identifier(r.device, patient, m.mdc[0], r.t)],
        "status": "final",
        "category": [VITAL_SIGNS, PHD_CATEGORY] if m.vital_sign else [PHD_CATEGORY],
        "code": m.code(),
        **ctx.subject(patient),
        "effectiveDateTime": fhir_datetime(r.t),
        "valueQuantity": m.quantity(getattr(r, m.field)),
        "device": {"reference": ctx.refer(device), "display": r.device},
    }
    if r.quality:
        obs["note"] = [{"text": "signal quality flags: " + ", ".join(quality_names(r.quality))}]
    return obs, key


def status_components(bits: list[int]) -> list[dict]:
    return [{"code": {"coding": [{"system": ASN1_SYSTEM, "code": bit_code(b), "display": DEV_STATUS_BITS[b]}]},
             "valueBoolean": True} for b in bits]


def status_note(quality: int) -> str:
    text = f"firmware quality flags 0x{quality:x}: " + ", ".join(quality_names(quality))
    unmapped = unmapped_flags(quality)
    return text + (f"; no MDC_PULS_OXIM_DEV_STATUS bit for: {', '.join(unmapped)}" if unmapped else "")


def device_status(key: Key, device: Key, device_name: str, ctx: Context, patient: str | None, when: dict,
                  quality: int, note: str, identifiers: list[dict] | None = None) -> dict:
    """A PhdBitsEnumerationObservation of MDC_PULS_OXIM_DEV_STATUS: one component per 150604 bit the quality
    mask sets (all of them are events: only set bits are reported)."""
    obs = {
        "resourceType": "Observation",
        "id": key.id,
        "meta": {"profile": [PHD_PROFILE + "PhdBitsEnumerationObservation"]},
        "extension": ctx.gateway_extension(),
        "identifier": [{"system": key.system, "value": key.value}, *(identifiers or [])],
        "status": "final",
        "category": [PHD_CATEGORY],
        "code": DEV_STATUS_CODE,
        **ctx.subject(patient),
        **when,
        "device": {"reference": ctx.refer(device), "display": device_name},
        "note": [{"text": note}],
    }
    components = status_components(status_bits(quality))
    if components:
        obs["component"] = components
    return obs


def status_observation(r: Reading, device: Key, ctx: Context) -> tuple[dict, Key]:
    """The pulse oximeter's device status for a reading with quality flags."""
    patient = ctx.patients.patient(r.device, r.t)
    key = Key("Observation", fhir_id("oxl", "status", r.device, r.counter, r.offset), READING_SYSTEM,
              f"{r.device}/{r.counter}/{r.offset}/status")
    return device_status(key, device, r.device, ctx, patient, {"effectiveDateTime": fhir_datetime(r.t)},
                         r.quality, status_note(r.quality),
                         phd_identifier(r.device, patient, MDC_PULS_OXIM_DEV_STATUS, r.t)), key


def reading_resources(r: Reading, device: Key, ctx: Context) -> list[tuple[dict, Key]]:
    """One Observation per present value (a reading without a valid SpO2 gives no SpO2 Observation), and the
    device status when the reading carries quality flags."""
    out = [observation(r, m, device, ctx) for m in MEASURES if getattr(r, m.field) is not None]
    if r.quality:
        out.append(status_observation(r, device, ctx))
    return out
