"""`oxilink receive --broker HOST:PORT`: subscribe, verify, store once, audit (docs/receiver.md)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import threading
from pathlib import Path

from .pki import Issued
from .receiver import setup
from .receiver.alerts import BurstDetector
from .receiver.ingest import BrokerConfig, Receiver, client_id_for, parse_broker
from .receiver.locations import PKI, RECEIVER_VAR
from .receiver.pipeline import Pipeline
from .receiver.registry import DeviceRegistry
from .receiver.verify import DEFAULT_WINDOW, Verifier

log = logging.getLogger("oxilink.receiver")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("receive", help="receive sealed batches from the broker, verify, store and audit them")
    p.add_argument("--broker", required=True, help="HOST:PORT of the MQTT broker (TLS)")
    p.add_argument("--ca", type=Path, default=PKI / "ca.pem", help="CA certificate of the broker")
    p.add_argument("--cert", type=Path, default=PKI / "issued" / "oxilink-receiver.pem", help="client certificate")
    p.add_argument("--key", type=Path, default=PKI / "issued" / "oxilink-receiver.key", help="client key")
    p.add_argument("--client-id", help="MQTT client id (stable: it names the persistent session); each receiver "
                                       "of a group needs its own. The broker takes only <certificate CN>/<suffix>: "
                                       "a value outside that becomes the suffix (default: this host's name)")
    p.add_argument("--group", help="share the load: subscribe as $share/GROUP/... with the other receivers")
    setup.add_db(p)
    setup.add_audit(p, operator=False)
    setup.add_registry(p)
    p.add_argument("--stats", type=Path, default=RECEIVER_VAR / "stats.json", help="counters, rewritten every second")
    p.add_argument("--stats-every", type=float, default=1.0, help="seconds between rewrites of --stats")
    p.add_argument("--replay-window", type=int, default=DEFAULT_WINDOW,
                   help=f"counters this far behind a device's newest are replays (default {DEFAULT_WINDOW})")
    p.add_argument("--sync", choices=["full", "normal"], default="full",
                   help="SQLite synchronous mode: full = each commit fsynced before the ack (default)")
    p.add_argument("--alert-threshold", type=int, default=20, help="verification failures that make a burst")
    p.add_argument("--alert-window", type=float, default=10.0, help="seconds over which a burst is counted")
    p.add_argument("--max-batch", type=int, default=1000, help="messages per store transaction, at most")
    p.add_argument("--max-delay-ms", type=float, default=5.0, help="how long to gather messages into one commit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=do_receive)


def _database_errors(db: str) -> tuple[type[Exception], ...]:
    """What a failing database raises: SQLite's errors, or psycopg's for a PostgreSQL URL."""
    if db.startswith(("postgresql://", "postgres://")):
        import psycopg

        return (psycopg.Error,)
    return (sqlite3.Error,)


def _why(db: str, e: Exception) -> str:
    folder = Path(db).parent
    if isinstance(e, sqlite3.Error) and folder.is_dir() and not os.access(folder, os.W_OK):
        return f"{e} ({folder} is not writable: a read-only file system?)"
    return str(e)


def do_receive(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = parse_broker(args.broker)
    db_errors = _database_errors(str(args.db))
    try:
        store = setup.open_db(args, synchronous=args.sync)
    except db_errors as e:
        log.error("cannot open the database %s: %s", setup.db_label(args.db), _why(str(args.db), e))
        return 1
    audit = setup.open_audit(args, "receiver")
    registry = DeviceRegistry(args.registry)
    verifier = Verifier(registry, store.high_counter, window=args.replay_window)
    pipeline = Pipeline(verifier, store, audit, BurstDetector(args.alert_threshold, args.alert_window))
    broker = BrokerConfig(host, port, args.ca, args.cert, args.key, group=args.group,
                          client_id=client_id_for(Issued(args.cert, args.key).common_name(), args.client_id))
    receiver = Receiver(broker, pipeline, max_batch=args.max_batch, max_delay_s=args.max_delay_ms / 1000,
                        stats_path=args.stats, stats_every_s=args.stats_every)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    audit.append("receiver_started", broker=args.broker, client_id=broker.client_id, group=args.group,
                 topics=broker.topics(), db=setup.db_label(args.db), registry=str(args.registry))
    log.info("receiving from %s into %s", args.broker, setup.db_label(args.db))
    code = 0
    try:
        receiver.run(stop)
    except db_errors as e:  # nothing uncommitted was acked: the broker keeps it for this session
        log.error("database %s failed: %s; stopped without acknowledging what was not committed",
                  setup.db_label(args.db), _why(str(args.db), e))
        code = 1
    finally:
        stats = pipeline.stats.as_dict()
        try:
            audit.append("receiver_stopped", **{k: v for k, v in stats.items() if k not in ("started", "updated")})
        except OSError as e:  # e.g. the disk that failed the database holds the audit log too
            log.error("audit log %s: cannot record receiver_stopped: %s", args.audit, e)
            code = 1
        store.close()
        log.info("stopped: %s", stats)
    return code
