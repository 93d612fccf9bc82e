"""`oxilink export fhir|csv`: stored readings out, for EHR interfaces and spreadsheets; every export is audited."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

from .receiver import setup
from .receiver.export import write_csv, write_fhir
from .receiver.fhir import PatientMap
from .receiver.locations import DEFAULT_PATIENTS
from .receiver.timeparse import parse_time

RESOLUTIONS = {"1s": 1, "1m": 60}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export stored readings (FHIR R4 or CSV)")
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, helptext in (("fhir", "FHIR R4 (HL7 PHD IG): Observations (SpO2, pulse rate, PI, device status) "
                                    "and Devices, as NDJSON or a transaction Bundle (docs/fhir.md)"),
                           ("csv", "device,counter,t,hr_bpm,spo2_pct,pi_pct,quality")):
        f = formats.add_parser(name, help=helptext)
        f.add_argument("--device", help="one device id (default: all)")
        f.add_argument("--since", help="from this time (ISO 8601, unix seconds, or an age like 24h)")
        f.add_argument("--until", help="up to this time, exclusive")
        f.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
        setup.add_db(f)
        setup.add_audit(f)
        if name == "fhir":
            f.add_argument("--patients", type=Path, default=DEFAULT_PATIENTS,
                           help=f"device → patient mapping (JSON; default {DEFAULT_PATIENTS})")
            f.add_argument("--bundle", choices=["transaction"],
                           help="one FHIR transaction Bundle of conditional creates instead of NDJSON")
            f.add_argument("--resolution", choices=sorted(RESOLUTIONS), default="1s",
                           help="1s: an Observation per reading (default); 1m: one summary per device and minute "
                                "(the span widens to whole minutes)")
        f.set_defaults(func=do_export)


def do_export(args: argparse.Namespace) -> int:
    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
        patients = PatientMap.load(args.patients) if args.format == "fhir" else None
    except ValueError as e:
        print(f"oxilink export: {e}", file=sys.stderr)
        return 2
    store = setup.open_db(args)
    try:
        target = open(args.output, "w", encoding="utf-8") if args.output else nullcontext(sys.stdout)
        with target as out:
            if patients is not None:
                period = RESOLUTIONS[args.resolution]
                done = write_fhir(store, patients, out, device=args.device, since=since, until=until,
                                  bundle=args.bundle == "transaction", period=period)
                counts = dict(sorted(done.counts.items()))
                what = {"resources": counts, "bundle": args.bundle, "resolution": args.resolution,
                        "without_subject": done.without_subject, "patients_file": str(args.patients)}
                print(f"oxilink export: {sum(counts.values())} resources ("
                      + ", ".join(f"{t} {n}" for t, n in counts.items()) + ")", file=sys.stderr)
                if done.without_subject:
                    print(f"oxilink export: {done.without_subject} observations have no subject: map their "
                          f"devices in {args.patients}", file=sys.stderr)
            else:
                what = {"rows": write_csv(store.readings(args.device, since, until), out)}
    finally:
        store.close()
    setup.open_audit(args, "export").append(
        "export", format=args.format, device=args.device, since=since, until=until,
        output=str(args.output) if args.output else "stdout", db=setup.db_label(args.db), **what)
    return 0
