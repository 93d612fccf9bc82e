"""Reconnect backoff (firmware/backoff.py, docs/transport.md "Backoff"): 1 s doubling to 60 s, each delay
drawn uniformly from [d/2, d], reset by a successful connect.

Tested twice: the Backoff object directly (its bounds and that the jitter really spreads), and the real
default schedule as a board runs it: a Transport built without a backoff argument, failing to reach a
broker through a proxy, on a virtual clock that jumps ahead while the loop idles, so ten minutes of retries
take a moment. The connect attempts are real (TCP through FaultProxy to a plain Mosquitto listener)."""

from __future__ import annotations

from devicerun import DeviceProcess
from faultproxy import FaultProxy

CAP_MS = 60000


def nominal(attempt: int) -> int:
    """d for the attempt-th retry after a failure (0-based): 1 s doubling, capped at 60 s."""
    return min(1000 << attempt, CAP_MS)


def test_schedule_and_jitter_bounds(mp):
    out = mp.json("""
from backoff import Backoff
from mptest import report
SAMPLES = 400
per_attempt = []
for k in range(12):
    lo, hi, total = 1 << 30, 0, 0
    for _ in range(SAMPLES):
        b = Backoff()
        b.attempts = k
        d = b.next_ms()
        lo, hi, total = min(lo, d), max(hi, d), total + d
    per_attempt.append([lo, hi, total // SAMPLES])
b = Backoff()
sequence = [b.next_ms() for _ in range(40)]   # one device failing 40 times in a row
b.reset()
after_reset = b.next_ms()
report(per_attempt=per_attempt, sequence=sequence, after_reset=after_reset)
""")
    for k, (lo, hi, mean) in enumerate(out["per_attempt"]):
        d = nominal(k)
        assert d // 2 <= lo and hi <= d, (k, lo, hi, d)  # never outside [d/2, d]
        # ... and really spread over it: 400 uniform draws all missing the outer tenth has p = 0.9**400
        assert lo < d // 2 + d // 10 and hi > d - d // 10, (k, lo, hi, d)
        assert abs(mean - 3 * d // 4) < d // 20, (k, mean, d)
    for k, delay in enumerate(out["sequence"]):
        assert nominal(k) // 2 <= delay <= nominal(k), (k, delay)  # doubling, then capped at 60 s for good
    assert 500 <= out["after_reset"] <= 1000


DEFAULT_SCHEDULE = """
import json, sys, time
from sim_device import say, exists
from sim.vclock import VirtualClock
from transport import Transport
from mqtt_link import MqttLink
from device_link import mount_queue

with open(sys.argv[1]) as f:
    o = json.load(f)
clock = VirtualClock()
bd, q = mount_queue()
link = MqttLink("dev-backoff", "localhost", o["port"], keepalive=60, timeout_ms=1500)
attempts = []  # virtual ms of every connect attempt
connect = link.connect
def counted_connect(clean_session=False):
    attempts.append(clock.ticks_ms())
    return connect(clean_session)
link.connect = counted_connect
# no backoff argument: the board's default schedule, on the virtual clock (the sockets stay real)
t = Transport(link, q, "dev-backoff", clock=clock)

def run(until, step_ms=10, limit=200000):
    for _ in range(limit):
        if until():
            return True
        t.step()
        clock.advance_ms(step_ms)
    return False

def gaps():
    return [clock.ticks_diff(b, a) for a, b in zip(attempts, attempts[1:])]

run(lambda: len(attempts) >= 11)  # refused 10 times: 1+2+4+...+60+60+60 s of virtual time
say("refused", {"gaps": gaps(), "counts": t.counts})
while not exists("pass"):
    time.sleep_ms(5)  # virtual time stands still meanwhile: no attempt falls due
first = len(attempts)
run(lambda: t.up)
say("connected", {"gaps": gaps()[first - 1:], "counts": t.counts})
while not exists("refuse"):
    time.sleep_ms(5)
q.put(b"trigger")  # the next publish finds the link gone
run(lambda: len(attempts) >= first + 4)
say("report", {"gaps": gaps()[first:], "counts": t.counts})
"""


def test_default_schedule_observed_on_an_accelerated_clock(tmp_path, plain_broker, mpbuild):
    with (FaultProxy(plain_broker.plain_port, mode="refuse") as proxy,
          DeviceProcess(tmp_path / "dev", DEFAULT_SCHEDULE, {"port": proxy.port}) as dev):
        refused = dev.expect("refused")
        proxy.mode = "pass"
        dev.signal("pass")
        connected = dev.expect("connected")
        proxy.mode = "refuse"
        proxy.drop_all()
        dev.signal("refuse")
        report = dev.finish()
    step = 10  # the loop's virtual time step: an attempt is seen at most this late
    gaps = refused["gaps"]
    failed = refused["counts"]["refused"] + refused["counts"]["connect_failures"]  # closed before/after CONNECT
    assert len(gaps) == 10 and failed == 11 and refused["counts"]["connects"] == 0, refused
    for k, gap in enumerate(gaps):
        assert nominal(k) // 2 <= gap <= nominal(k) + step, (k, gap, gaps)
    # the broker is back: the next attempt comes on schedule (at most 60 s later) and succeeds
    assert len(connected["gaps"]) == 1 and connected["gaps"][0] <= CAP_MS + step
    assert connected["counts"]["connects"] == 1
    # a successful connect reset the schedule: the next outage starts again at 1 s, 2 s, 4 s
    gaps = report["gaps"]
    assert report["counts"]["link_lost"] == 1 and len(gaps) == 3, report
    for k, gap in enumerate(gaps):  # the first gap also holds the step in which the loss was found
        assert nominal(k) // 2 <= gap <= nominal(k) + 2 * step, (k, gap, gaps)
