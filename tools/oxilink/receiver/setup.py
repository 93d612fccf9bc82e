"""Options shared by the commands that touch the receiver's files (--db, --audit, --registry, --operator)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .audit import AuditLog, default_actor
from .locations import DEFAULT_AUDIT, DEFAULT_DB, DEFAULT_REGISTRY
from .store import Store, open_store


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=str(DEFAULT_DB),
                   help=f"readings database: a SQLite path or postgresql://... (default {DEFAULT_DB})")


def add_audit(p: argparse.ArgumentParser, operator: bool = True) -> None:
    p.add_argument("--audit", type=Path, default=DEFAULT_AUDIT, help=f"audit log (default {DEFAULT_AUDIT})")
    if operator:
        p.add_argument("--operator", help="who is doing this, for the audit log (default: the OS user)")


def add_registry(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY,
                   help=f"device registry (default {DEFAULT_REGISTRY})")


def db_label(db: str | Path) -> str:
    """The database as it may appear in logs and the audit trail: a URL's password is never recorded."""
    from urllib.parse import urlsplit, urlunsplit

    text = str(db)
    if "://" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def open_db(args: argparse.Namespace, **kw) -> Store:
    return open_store(args.db, **kw)


def open_audit(args: argparse.Namespace, role: str) -> AuditLog:
    return AuditLog(args.audit, default_actor(role, getattr(args, "operator", None)))
