"""Data out: CSV rows and FHIR NDJSON, streamed from the store to a text file."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import TextIO

from .audit import iso_utc
from .fhir import PatientMap, observations
from .store import Reading

CSV_COLUMNS = ("device", "counter", "t", "hr_bpm", "spo2_pct", "pi_pct", "quality")


def iso_t(t: float) -> str:
    """ISO 8601 UTC, with milliseconds only when the time has a fraction."""
    return iso_utc(t) if t % 1 else iso_utc(t).replace(".000Z", "Z")


def _cell(v: float | int | None) -> str:
    if v is None:
        return ""
    return str(v) if isinstance(v, int) else f"{v:g}"


def write_csv(readings: Iterable[Reading], out: TextIO) -> int:
    """device,counter,t,hr_bpm,spo2_pct,pi_pct,quality; an absent value is an empty cell. Returns rows."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    n = 0
    for r in readings:
        w.writerow((r.device, r.counter, iso_t(r.t), _cell(r.hr_bpm), _cell(r.spo2_pct), _cell(r.pi_pct),
                    r.quality))
        n += 1
    return n


def write_fhir_ndjson(readings: Iterable[Reading], patients: PatientMap, out: TextIO) -> tuple[int, int]:
    """One Observation per line; returns (observations, observations without a subject)."""
    n = unmapped = 0
    for obs in observations(iter(readings), patients):
        out.write(json.dumps(obs, separators=(",", ":")) + "\n")
        n += 1
        unmapped += "subject" not in obs
    return n, unmapped
