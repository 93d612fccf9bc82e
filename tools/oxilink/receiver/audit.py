"""Append-only, hash-chained audit log: one JSON object per line, each carrying the hash of the one before.

    {"seq": 7, "ts": "2026-11-21T20:45:01.250Z", "actor": "receiver:alice@host", "event": "replay",
     "detail": {...}, "prev": "<hash of entry 6>", "hash": "<sha256 of this entry without 'hash'>"}

The hash is SHA-256 over the canonical JSON (sorted keys, no spaces, UTF-8) of the entry without its own
"hash" field; "prev" is inside what is hashed, so an entry cannot be edited, removed or moved without
breaking the chain from there on. Deleting the newest entries leaves a valid but shorter chain: a sidecar
head file (`<log>.head`, the last seq and hash, rewritten after every append) catches that, and anyone who
wants more than tamper-evidence on one disk ships the head hash elsewhere (docs/receiver.md).

Appends take an exclusive flock on the log, so the receiver, exports and provisioning can all write to it.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def iso_utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def default_actor(role: str, operator: str | None = None) -> str:
    """Who did it: the operator name if given, else the OS user, with the host and the role."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    who = operator or user
    return f"{role}:{who}@{socket.gethostname()}" + (f" (os user {user})" if operator and operator != user else "")


def _last_line(f) -> bytes:
    """The last complete line of an open binary file, or b"" for an empty file."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    pos = end
    chunk = 4096
    tail = b""
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        f.seek(pos)
        tail = f.read(step) + tail
        stripped = tail.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    return tail.rstrip(b"\n")


class AuditLog:
    """Appends entries for one actor; every append is durable (fsync) before it returns."""

    def __init__(self, path: Path, actor: str):
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.actor = actor
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, event: str, **detail: Any) -> dict:
        return self.extend([(event, detail)])[-1]

    def extend(self, events: Iterable[tuple[str, dict]], now: float | None = None) -> list[dict]:
        """Appends several entries under one lock and one fsync; returns them as written."""
        events = list(events)
        if not events:
            return []
        ts = iso_utc(time.time() if now is None else now)
        with open(self.path, "a+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                seq, prev = self._tail(f)
                out: list[dict] = []
                lines = []
                if f.tell() and not self._ends_with_newline(f):
                    lines.append(b"\n")  # a torn write before us stays visible to verify, but we start clean
                for event, detail in events:
                    seq += 1
                    entry = {"seq": seq, "ts": ts, "actor": self.actor, "event": event, "detail": detail,
                             "prev": prev}
                    entry["hash"] = prev = entry_hash(entry)
                    out.append(entry)
                    lines.append(canonical(entry) + b"\n")
                f.seek(0, os.SEEK_END)
                f.write(b"".join(lines))
                f.flush()
                os.fsync(f.fileno())
                self._write_head(seq, prev)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
        return out

    @staticmethod
    def _ends_with_newline(f) -> bool:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"

    @staticmethod
    def _tail(f) -> tuple[int, str]:
        line = _last_line(f)
        f.seek(0, os.SEEK_END)
        if not line:
            return 0, GENESIS
        try:
            last = json.loads(line)
            return int(last["seq"]), str(last["hash"])
        except (ValueError, KeyError, TypeError):
            # The last line is damaged: refuse to chain onto something we cannot read (verify names it).
            raise AuditError(f"{f.name}: last line is not an audit entry; run `oxilink audit verify`") from None

    def _write_head(self, seq: int, digest: str) -> None:
        tmp = self.head_path.with_name(self.head_path.name + ".tmp")
        tmp.write_text(json.dumps({"seq": seq, "hash": digest}) + "\n")
        os.replace(tmp, self.head_path)

    def entries(self) -> Iterator[dict]:
        yield from read_entries(self.path)


class AuditError(RuntimeError):
    pass


def read_entries(path: Path) -> Iterator[dict]:
    try:
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    except FileNotFoundError:
        return


class DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """json object hook: a key that appears twice is an error (json.loads would keep the last one)."""
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(repr(k))
        out[k] = v
    return out


@dataclass(frozen=True)
class Problem:
    line: int | None  # 1-based line in the log, None for the head file
    seq: int | None  # the entry's sequence number, when it can be told
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "head"
        what = f"entry seq {self.seq}" if self.seq is not None else "entry"
        return f"{what} ({where}): {self.message}"


def verify(path: Path) -> tuple[int, list[Problem]]:
    """Checks the whole chain; returns (entries checked, problems). No problems means intact."""
    path = Path(path)
    problems: list[Problem] = []
    prev = GENESIS
    expected_seq = 1
    count = 0
    last_seq, last_hash = 0, GENESIS
    prev_line: int | None = None
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0, [Problem(None, None, f"{path} does not exist")]
    with f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                problems.append(Problem(lineno, None, "blank line (an entry was removed or the file edited)"))
                continue
            try:
                entry = json.loads(raw, object_pairs_hook=_unique_keys)
                seq = entry["seq"]
                if not isinstance(entry, dict) or not isinstance(seq, int):
                    raise TypeError
            except DuplicateKey as e:
                problems.append(Problem(lineno, expected_seq, f"duplicate key {e} (edited: one value hides another)"))
                expected_seq += 1
                continue
            except (ValueError, KeyError, TypeError):
                problems.append(Problem(lineno, expected_seq, "not a valid audit entry (edited or torn)"))
                expected_seq += 1
                continue
            count += 1
            if raw != canonical(entry) + b"\n":
                # The log only ever writes the canonical form: any other spelling of an entry was edited, even
                # one that parses to the same hashed content.
                problems.append(Problem(lineno, seq, "not in the canonical form the log writes (edited)"))
            if seq != expected_seq:
                if seq > expected_seq:
                    missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}..{seq - 1}"
                    problems.append(Problem(lineno, seq, f"entry seq {missing} is missing (deleted)"))
                else:
                    problems.append(Problem(lineno, seq, f"out of order: expected seq {expected_seq}"))
            if entry_hash(entry) != entry.get("hash"):
                problems.append(Problem(lineno, seq, "content does not match its hash (edited)"))
            elif entry.get("prev") != prev and seq == expected_seq:
                problems.append(Problem(prev_line, seq - 1, f"altered and re-hashed, or replaced: entry seq {seq} "
                                        "no longer chains to it"))
            prev = entry.get("hash", "")
            prev_line = lineno
            expected_seq = seq + 1
            last_seq, last_hash = seq, prev
    problems += _check_head(path, last_seq, last_hash)
    return count, problems


def _check_head(path: Path, last_seq: int, last_hash: str) -> list[Problem]:
    head_path = path.with_name(path.name + ".head")
    try:
        head = json.loads(head_path.read_text())
        seq, digest = int(head["seq"]), str(head["hash"])
    except FileNotFoundError:
        return [Problem(None, None, f"{head_path.name} is missing (cannot tell whether the newest entries "
                        "were deleted)")] if last_seq else []
    except (ValueError, KeyError, TypeError):
        return [Problem(None, None, f"{head_path.name} is unreadable")]
    if seq > last_seq:
        missing = f"{last_seq + 1}" if seq == last_seq + 1 else f"{last_seq + 1}..{seq}"
        return [Problem(None, seq, f"entry seq {missing} is missing from the end of the log (deleted)")]
    if seq == last_seq and digest != last_hash:
        return [Problem(None, seq, "newest entry differs from the recorded head (edited)")]
    # seq < last_seq: a crash between the log's fsync and the head update; the chain itself is intact.
    return []
