"""`--resolution 1m`: one summary Observation per device and minute instead of one Observation per second.

Shape (docs/fhir.md, "Summaries"): the minute is `effectivePeriod` [start, start + 60 s); each statistic is
a `component` coded like the per-second Observation of its measure (MDC + LOINC) and qualified by an
extension naming the statistic in FHIR's observation-statistics code system:

  pulse rate  median  + count      SpO2  minimum + count      PI  median + count
  readings in the minute: totalcount

`count` is the number of valid one-second readings behind the statistic; a measure with none in the minute
has a dataAbsentReason instead of a value. Components rather than one Observation per statistic keep the
minute's figures together and the export small (one resource per device-minute, plus a device-status
Observation for a minute in which the firmware raised flags). Summaries are statistics made by the gateway,
not device measurements, so they claim neither the PHD nor the vital-signs profiles.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Iterator
from functools import reduce
from operator import or_

from ..firmware_facts import quality_flags, quality_names
from .devstatus import unmapped_flags
from .fhir import (
    OXILINK_CODES,
    PERFUSION,
    PULSE_RATE,
    SPO2,
    VITAL_SIGNS,
    Context,
    Key,
    Measure,
    device_status,
    fhir_datetime,
    fhir_id,
)
from .store import Reading

PERIOD_S = 60
SUMMARY_SYSTEM = "urn:oxilink:summary"
STATISTIC_EXTENSION = "urn:oxilink:extension:statistic"
STATISTICS = "http://terminology.hl7.org/CodeSystem/observation-statistics"
STATISTIC_NAMES = {"median": "Median", "minimum": "Minimum", "count": "Count", "totalcount": "Total Count"}
SUMMARIES: tuple[tuple[Measure, str], ...] = ((PULSE_RATE, "median"), (SPO2, "minimum"), (PERFUSION, "median"))
SUMMARY_CODE = {"coding": [{"system": OXILINK_CODES, "code": "pulse-oximetry-summary",
                            "display": "Pulse oximetry summary"}], "text": "Pulse oximetry, one-minute summary"}
NOT_PERFORMED = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                             "code": "not-performed", "display": "Not Performed"}],
                 "text": "no valid reading in the period"}


def statistic(values: list[float], name: str) -> float:
    value = statistics.median(values) if name == "median" else min(values)
    return round(value, 3)


def windows(readings: Iterable[Reading], period: int = PERIOD_S) -> Iterator[tuple[str, int, str, list[Reading]]]:
    """(device, period start, device version key, readings) for readings ordered by device and time; a period
    in which the device changed version (a firmware update mid-minute) gives one window per version."""
    current: tuple[str, int] | None = None
    groups: dict[str, list[Reading]] = {}
    for r in readings:
        where = (r.device, int(r.t // period) * period)
        if where != current:
            if current is not None:
                yield from ((*current, v, rs) for v, rs in groups.items())
            current, groups = where, {}
        groups.setdefault(r.device_version or "", []).append(r)
    if current is not None:
        yield from ((*current, v, rs) for v, rs in groups.items())


def _statistic(name: str) -> list[dict]:
    return [{"url": STATISTIC_EXTENSION,
             "valueCoding": {"system": STATISTICS, "code": name, "display": STATISTIC_NAMES[name]}}]


def _components(readings: list[Reading]) -> list[dict]:
    out = []
    for m, name in SUMMARIES:
        values = [v for r in readings if (v := getattr(r, m.field)) is not None]
        figure = {"valueQuantity": m.quantity(statistic(values, name))} if values else \
            {"dataAbsentReason": NOT_PERFORMED}
        out.append({"extension": _statistic(name), "code": m.code(f"{m.text}, {name} of the valid seconds"), **figure})
        out.append({"extension": _statistic("count"), "code": m.code(f"{m.text}, valid seconds"),
                    "valueInteger": len(values)})
    out.append({"extension": _statistic("totalcount"),
                "code": {"coding": [{"system": OXILINK_CODES, "code": "readings", "display": "Readings"}],
                         "text": "Readings in the period"},
                "valueInteger": len(readings)})
    return out


def _flag_note(readings: list[Reading], quality: int) -> str:
    """The seconds each flag was raised, in the firmware's order (bits it does not define counted together)."""
    bits = {name: bit for bit, name in quality_flags()}
    undefined = ~sum(bits.values())
    seconds = [(name, sum(1 for r in readings if r.quality & bits.get(name, undefined)))
               for name in quality_names(quality)]
    text = "firmware quality flags in the period (seconds): " + ", ".join(f"{name} {n}" for name, n in seconds)
    unmapped = unmapped_flags(quality)
    return text + (f"; no MDC_PULS_OXIM_DEV_STATUS bit for: {', '.join(unmapped)}" if unmapped else "")


def summary_resources(device: str, start: int, version: str, readings: list[Reading], device_key: Key,
                      ctx: Context, period: int = PERIOD_S) -> list[tuple[dict, Key]]:
    """The summary of one window (and its device status if flags were raised); `version` is the device
    version's id."""
    patient = ctx.patients.patient(device, start)
    ident = f"{device}/{fhir_datetime(start)}/PT{period // 60}M/{version}"
    key = Key("Observation", fhir_id("oxl-1m", device, start, version[:12]), SUMMARY_SYSTEM, ident)
    when = {"effectivePeriod": {"start": fhir_datetime(start), "end": fhir_datetime(start + period)}}
    device_ref = {"device": {"reference": ctx.refer(device_key), "display": device}}
    summary = {
        "resourceType": "Observation",
        "id": key.id,
        "identifier": [{"system": key.system, "value": key.value}],
        "status": "final",
        "category": [VITAL_SIGNS],
        "code": SUMMARY_CODE,
        **ctx.subject(patient),
        **when,
        **device_ref,
        "component": _components(readings),
    }
    out = [(summary, key)]
    flagged = [r for r in readings if r.quality]
    if flagged:
        quality = reduce(or_, (r.quality for r in flagged))  # an event bit set in any second is set for the period
        status_key = Key("Observation", fhir_id("oxl-1m-status", device, start, version[:12]), SUMMARY_SYSTEM,
                         ident + "/status")
        out.append((device_status(status_key, device_key, device, ctx, patient, when, quality,
                                  _flag_note(flagged, quality)), status_key))
    return out
