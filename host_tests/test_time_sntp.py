"""Issue 12 point 4, time: the board sets its clock by SNTP without ever blocking the loop; until it has, no
TLS attempt and no batch stamped, while sampling goes on; batches that waited are stamped with their true
start times; a full wait drops the oldest batch and counts it (firmware/sntp.py, app.py, docs/time.md).
Board-level behaviour on the double: test_double_boot.py."""

from __future__ import annotations

import json
import time

from devicerun import DeviceProcess

from oxilink.double.sntpserver import SntpServer, ntp_timestamp
from oxilink.provision import provision_device

SYNC = """
import json, sys, time
from sntp import TimeSync
set_to = []
log = []

class Log:
    def info(self, m): log.append(("info", m))
    def warning(self, m): log.append(("warning", m))
    def error(self, m): log.append(("error", m))

o = json.loads(sys.argv[1])
set_at = []

def set_clock(s, us):
    set_to.append((s, us))
    set_at.append(time.ticks_ms())

ts = TimeSync(o["server"], set_clock, Log(), timeout_ms=o["timeout_ms"], tries=2,
              retry_ms=o["retry_ms"], resync_ms=o["resync_ms"])
longest = 0
steps = 0
t0 = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), t0) < o["run_ms"]:
    a = time.ticks_us()
    ts.step()
    longest = max(longest, time.ticks_diff(time.ticks_us(), a))
    steps += 1
    time.sleep_ms(5)
after = [time.ticks_diff(t, set_at[0]) for t in set_at]
print(json.dumps({"set_to": set_to, "set_after_ms": after, "log": log, "longest_step_us": longest, "steps": steps,
                  "synced": ts.synced, "failures": ts.failures, "host_now": None}))
"""


def run_sync(mp, server: str, run_ms: int = 1500, timeout_ms: int = 300, retry_ms: int = 60000,
             resync_ms: int = 6 * 3600 * 1000) -> dict:
    return mp.json(SYNC, args=[json.dumps({"server": server, "run_ms": run_ms, "timeout_ms": timeout_ms,
                                           "retry_ms": retry_ms, "resync_ms": resync_ms})])


def test_sntp_sets_the_clock_from_a_loopback_server(mp):
    with SntpServer(offset_s=1234.5) as srv:
        got = run_sync(mp, srv.address)
        now = time.time() + 1234.5
    assert got["synced"] and len(got["set_to"]) == 1 and srv.requests == 1
    secs, us = got["set_to"][0]
    assert abs(secs + us / 1e6 - now) < 2.0  # the server's time (offset included), not the host's
    assert [level for level, _ in got["log"]] == ["info"] and srv.address in got["log"][0][1]


def test_sntp_resyncs_every_resync_period_and_a_later_failure_keeps_the_time_with_one_warning(mp):
    with SntpServer(offset_s=50.0) as srv:
        got = run_sync(mp, srv.address, run_ms=2000, timeout_ms=1000, resync_ms=600)
    after = got["set_after_ms"]
    assert got["synced"] and 2 <= len(after) <= 4  # at 0, then every 600 ms (fewer if the machine is slow)
    assert all(b - a >= 600 for a, b in zip(after, after[1:], strict=False))  # never sooner than the period
    assert srv.requests == srv.replies == len(after)  # each resync one request, answered
    assert [level for level, _ in got["log"]] == ["info"]  # one line for the first sync, none per resync

    with SntpServer(offset_s=50.0) as srv:
        srv.answers_left = 1
        got = run_sync(mp, srv.address, run_ms=3500, timeout_ms=1000, retry_ms=60000, resync_ms=400)
    assert got["synced"] and len(got["set_to"]) == 1  # the time it has is kept: never reset or cleared
    assert srv.replies == 1 and srv.requests - srv.replies == 2  # the resync's 2 tries, then it waits retry_ms
    warnings = [m for level, m in got["log"] if level == "warning"]
    assert [level for level, _ in got["log"]] == ["info", "warning"]
    assert srv.address in warnings[0] and "keeping the current time" in warnings[0] and "no answer" in warnings[0]


def test_sntp_never_blocks_and_one_line_names_server_and_cause(mp):
    with SntpServer() as srv:
        srv.answer = False
        got = run_sync(mp, srv.address, run_ms=1500, timeout_ms=300)
    assert not got["synced"] and got["set_to"] == []
    assert srv.requests == 2  # `tries` requests, then it waits retry_ms before the next round
    assert got["longest_step_us"] < 20000 and got["steps"] > 100  # the loop kept turning while it waited
    errors = [m for level, m in got["log"] if level == "error"]
    assert len(errors) == 1 and srv.address in errors[0] and "no answer" in errors[0]


def test_sntp_refused_and_unresolvable_say_so(mp):
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    got = run_sync(mp, f"localhost:{port}", run_ms=600)
    errors = [m for level, m in got["log"] if level == "error"]
    assert len(errors) == 1 and f"localhost:{port}" in errors[0] and "connection refused" in errors[0]
    got = run_sync(mp, "no-such-host.invalid:123", run_ms=300)
    errors = [m for level, m in got["log"] if level == "error"]
    assert len(errors) == 1 and "cannot resolve no-such-host.invalid" in errors[0]


def test_sntp_reply_checks(mp):
    nonce = bytes(range(8))
    good = bytes([0x24, 2, 4, 0xEC]) + bytes(20) + nonce + ntp_timestamp(1) + ntp_timestamp(1.5)
    cases = {"good": good, "kod": good[:1] + b"\0" + good[2:], "unsynced": bytes([0xE4]) + good[1:],
             "client": bytes([0x23]) + good[1:], "other_request": good[:24] + bytes(8) + good[32:],
             "short": good[:40]}
    got = mp.json(f"""
import json
from sntp import parse_reply
out = {{}}
for name, msg in {({k: v.hex() for k, v in cases.items()})!r}.items():
    try:
        out[name] = parse_reply(bytes.fromhex(msg), {nonce!r})
    except ValueError as e:
        out[name] = str(e)
print(json.dumps(out))
""")
    assert got["good"] == [1, 500000]
    assert "kiss" in got["kod"] and "not synchronised" in got["unsynced"] and "not a server" in got["client"]
    assert "does not answer our request" in got["other_request"] and "short" in got["short"]


BACKLOG = """
from sim_device import SimDevice, say
d = SimDevice()
dev, clock = d.dev, d.clock
start_wall = dev.wall_clock()
known = [False]
dev.wall_clock = lambda: start_wall + clock.elapsed_s() if known[0] else 0
began = []  # (device elapsed s) when each batch began
stamped = []
new_batch, seal = dev._new_batch, dev._seal

def note_new(b):
    new_batch(b)
    began.append(clock.elapsed_s())

def note_seal(b, start_s):
    stamped.append(start_s - start_wall)
    seal(b, start_s)

dev._new_batch, dev._seal = note_new, note_seal
began.append(0)
n = dev._wait.slots  # how many full batches may wait
d.run_until(lambda: dev.unstamped_dropped >= 2, 120)
say("waiting", {"batches": dev.batches, "unstamped": dev._wait.len, "dropped": dev.unstamped_dropped,
                "connects": dev.transport.counts["connects"], "lost": dev.acq.lost, "readings": dev.acq.readings,
                "began": began, "builders": n, "status_dropped": None})
known[0] = True
dev.stamp_waiting()
say("stamped", {"batches": dev.batches, "stamped": stamped, "depth": dev.queue.depth(), "began": began,
                "errors": [l for l in d.lines if "ERROR" in l]})
"""


def test_batches_wait_for_the_clock_and_carry_their_true_times(tmp_path, secrets_root, mpbuild):
    ident = provision_device("dev-time-backlog", root=secrets_root)
    with DeviceProcess(tmp_path / "dev", BACKLOG, {"secrets": str(ident.folder), "port": 1, "speed": 5,
                                                   "batch_seconds": 5}) as dev:
        waiting = dev.expect("waiting", 180)
        stamped = dev.finish(tag="stamped", timeout=60)
    n = waiting["builders"]
    assert n == 20  # 300 s of readings at 5 s per batch would be 60 batches: capped at 20
    assert waiting["batches"] == 0 and waiting["connects"] == 0  # nothing sealed, no TLS tried without a clock
    assert waiting["unstamped"] == n and waiting["dropped"] == 2  # full: the oldest went, counted
    assert waiting["lost"] == 0 and waiting["readings"] >= 5 * (n + 1)  # sampling and vitals went on
    assert stamped["batches"] == n and stamped["depth"] == n
    # the kept batches are the newest ones, each stamped with the time it began (to the second)
    began = stamped["began"]
    expected = began[2:2 + n]
    assert all(abs(s - b) <= 1 for s, b in zip(stamped["stamped"], expected, strict=True)), (stamped, began)
    assert len(stamped["errors"]) == 1 and "dropping the oldest unstamped batch" in stamped["errors"][0]
