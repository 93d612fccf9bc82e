"""The audit log is hash-chained: editing, deleting or reordering any entry is detected and named."""

from __future__ import annotations

import json
import threading

import pytest

from oxilink.cli import main as oxilink
from oxilink.receiver.audit import AuditLog, entry_hash, verify

N = 8


@pytest.fixture
def log(tmp_path):
    a = AuditLog(tmp_path / "audit.log", "receiver:test@host")
    for i in range(N):
        a.append("verification_failed", reason="authentication failure", topic=f"oxilink/dev-{i}/vitals", n=i)
    return a


def lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines(keepends=True)


def run_verify(log: AuditLog, capsys) -> tuple[int, str]:
    rc = oxilink(["audit", "verify", "--audit", str(log.path)])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_intact_log_verifies(log, capsys):
    rc, out = run_verify(log, capsys)
    assert rc == 0 and f"intact, {N} entries" in out
    entries = list(log.entries())
    assert [e["seq"] for e in entries] == list(range(1, N + 1))
    assert all(e["prev"] == p["hash"] for p, e in zip(entries, entries[1:], strict=False))


@pytest.mark.parametrize("index", range(N))
def test_editing_any_entry_fails_and_names_it(log, capsys, index):
    ls = lines(log)
    entry = json.loads(ls[index])
    entry["detail"]["reason"] = "nothing to see"
    ls[index] = json.dumps(entry) + "\n"
    log.path.write_text("".join(ls))
    rc, out = run_verify(log, capsys)
    assert rc == 1 and f"entry seq {index + 1} (line {index + 1})" in out and "edited" in out


@pytest.mark.parametrize("index", range(N))
def test_editing_and_rehashing_an_entry_still_fails_and_names_it(log, capsys, index):
    ls = lines(log)
    entry = json.loads(ls[index])
    entry["actor"] = "someone else"
    entry["hash"] = entry_hash(entry)
    ls[index] = json.dumps(entry) + "\n"
    log.path.write_text("".join(ls))
    rc, out = run_verify(log, capsys)
    assert rc == 1 and f"entry seq {index + 1}" in out


@pytest.mark.parametrize("index", range(N))
def test_deleting_any_entry_fails_and_names_it(log, capsys, index):
    ls = lines(log)
    del ls[index]
    log.path.write_text("".join(ls))
    rc, out = run_verify(log, capsys)
    assert rc == 1 and f"entry seq {index + 1} is missing" in out


def test_swapping_two_entries_fails(log, capsys):
    ls = lines(log)
    ls[2], ls[3] = ls[3], ls[2]
    log.path.write_text("".join(ls))
    rc, out = run_verify(log, capsys)
    assert rc == 1 and "entry seq 4" in out


def test_appends_from_many_writers_keep_one_chain(tmp_path):
    path = tmp_path / "audit.log"

    def writer(k: int) -> None:
        a = AuditLog(path, f"writer-{k}")
        for i in range(50):
            a.extend([("export", {"k": k, "i": i}), ("export", {"k": k, "i": i, "second": True})])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    count, problems = verify(path)
    assert (count, problems) == (400, [])


def test_appending_after_a_damaged_tail_refuses(log):
    with open(log.path, "a") as f:
        f.write('{"seq": 9, "half an entry\n')
    with pytest.raises(RuntimeError, match="audit verify"):
        log.append("export")


def test_duplicate_keys_are_an_edit(log, capsys):
    """A second "event" key before the real one: json.loads keeps the last value, so the hash still matches, but
    a reader of the raw line (grep, a SIEM) sees the other. The log never writes that: verify names it."""
    text = lines(log)
    forged = text[2].replace('"event":', '"event":"key_registered","event":', 1)
    assert json.loads(forged) == json.loads(text[2])  # the same content to a lax parser
    log.path.write_text("".join(text[:2] + [forged] + text[3:]))
    rc, out = run_verify(log, capsys)
    assert rc == 1
    assert "entry seq 3 (line 3): duplicate key 'event'" in out


def test_nested_duplicate_keys_and_non_canonical_spelling_are_edits(log, capsys):
    text = lines(log)
    nested = text[1].replace('"detail":{', '"detail":{"reason":"replay",', 1)
    spaced = text[4].replace('","', '", "', 1)  # parses to the same entry and the same hash
    assert json.loads(spaced) == json.loads(text[4])
    log.path.write_text("".join(text[:1] + [nested] + text[2:4] + [spaced] + text[5:]))
    rc, out = run_verify(log, capsys)
    assert rc == 1
    assert "entry seq 2 (line 2): duplicate key 'reason'" in out
    assert "entry seq 5 (line 5): not in the canonical form the log writes (edited)" in out
