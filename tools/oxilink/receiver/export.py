"""Data out: CSV rows, and FHIR (NDJSON or a transaction Bundle), streamed from the store to a text file."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from .deviceinfo import DeviceVersion, version_from_store
from .fhir import Context, Key, PatientMap, fhir_datetime, reading_resources
from .fhir_bundle import NdjsonWriter, TransactionWriter
from .fhir_device import device_key, device_resource, gateway_key, gateway_resource
from .fhir_summary import summary_resources, windows
from .store import Reading, Store

CSV_COLUMNS = ("device", "counter", "t", "hr_bpm", "spo2_pct", "pi_pct", "quality")


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
        w.writerow((r.device, r.counter, fhir_datetime(r.t), _cell(r.hr_bpm), _cell(r.spo2_pct), _cell(r.pi_pct),
                    r.quality))
        n += 1
    return n


def whole_periods(since: float | None, until: float | None, period: int) -> tuple[float | None, float | None]:
    """The span widened to whole periods, so a summary always covers all of its period."""
    return (None if since is None else math.floor(since / period) * period,
            None if until is None else math.ceil(until / period) * period)


@dataclass
class FhirExport:
    counts: Counter = field(default_factory=Counter)  # resources by type
    without_subject: int = 0  # Observations whose device the patient table does not map


class _Devices:
    """Device versions named by the exported batches, written (after the gateway) just before the first
    resource that refers to them."""

    def __init__(self, store: Store, writer, device: str | None, since: float | None, until: float | None):
        self.store = store
        self.writer = writer
        self.docs = {(d, v): doc for d, v, doc in store.device_versions(device, since, until)}
        self.written: set[str] = set()  # device version ids, and the gateway's

    def key(self, device: str, version: str) -> tuple[DeviceVersion, Key]:
        if (device, version) not in self.docs:  # a batch that arrived after the span was looked up
            self.docs.update({(d, v): doc for d, v, doc in self.store.device_versions(device)})
        v = version_from_store(device, version, self.docs.get((device, version)))
        if "gateway" not in self.written:
            self.writer.add(*gateway_resource())
            self.written.add("gateway")
        if v.id not in self.written:
            self.writer.add(*device_resource(v))
            self.written.add(v.id)
        return v, device_key(v)


def write_fhir(store: Store, patients: PatientMap, out: TextIO, *, device: str | None = None,
               since: float | None = None, until: float | None = None, bundle: bool = False,
               period: int = 1) -> FhirExport:
    """Per-second Observations (period 1) or summaries over `period` seconds (60: fhir_summary.py), with the
    Devices they name; as NDJSON or as one transaction Bundle. A summary span is widened to whole periods."""
    if period > 1:
        since, until = whole_periods(since, until, period)
    writer = TransactionWriter(out) if bundle else NdjsonWriter(out)
    ctx = Context(patients, writer.refer, gateway_key())
    devices = _Devices(store, writer, device, since, until)
    result = FhirExport(counts=writer.counts)
    readings = store.readings(device, since, until)

    def emit(resources: list[tuple[dict, Key]]) -> None:
        for resource, key in resources:
            writer.add(resource, key)
            result.without_subject += resource["resourceType"] == "Observation" and "subject" not in resource

    if period == 1:
        for r in readings:
            emit(reading_resources(r, devices.key(r.device, r.device_version)[1], ctx))
    else:
        for dev, start, version, rs in windows(readings, period):
            v, key = devices.key(dev, version)
            emit(summary_resources(dev, start, v.id, rs, key, ctx, period))
    writer.close()
    return result
