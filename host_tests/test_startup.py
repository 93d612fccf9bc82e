"""Boot policy on the unix port: clear errors for a broken board file, missing secrets or certificates, and
safe mode after repeated crashes (the counter is persisted before the app starts)."""

from __future__ import annotations

import json

BOOT = """
import json, startup
out = {}
for name, fn in (("board", lambda: startup.load_board("board.json")),
                 ("secrets", lambda: startup.load_secrets("secrets.json")),
                 ("certs", lambda: startup.load_certs("certs"))):
    try:
        fn()
        out[name] = "ok"
    except ValueError as e:
        out[name] = str(e)
print(json.dumps(out))
"""

CRASHES = """
import json, startup
def boots(causes):
    reasons = []
    for cause in causes:
        c = startup.CrashCounter("crashes")   # a fresh boot reads the persisted state
        reasons.append(startup.safe_mode_reason(c.boot(cause), flag_path="safe_mode"))
    return reasons
out = {}
# ordinary resets, many of them in a row, never count
out["ordinary"] = boots(["power-on", "power-on", "hard", "soft", "power-on", "deepsleep", "hard", "power-on"])
out["watchdog"] = boots(["watchdog", "watchdog", "power-on", "watchdog", "watchdog"])
startup.CrashCounter("crashes").healthy()
c = startup.CrashCounter("crashes")
c.boot("hard")
c.crashed()                                   # an unhandled exception, counted by main.py before it resets
c = startup.CrashCounter("crashes")
c.boot("hard")                                # machine.reset() after the exception
c.crashed()
out["exceptions"] = boots(["hard"])
c = startup.CrashCounter("crashes")
c.retry_app()                                 # safe mode timed out: one more try of the app
out["retry"] = boots(["hard", "watchdog"]) + [startup.CrashCounter("crashes").retries]
startup.CrashCounter("crashes").healthy()
c = startup.CrashCounter("crashes")
c.user_interrupted()                          # Ctrl-C / mpremote: the watchdog keeps running...
out["interrupted"] = boots(["watchdog", "watchdog", "watchdog"])  # ...its reset is not a crash, later ones are
open("safe_mode", "w").close()
out["flag"] = startup.safe_mode_reason(0, flag_path="safe_mode")
out["button"] = startup.safe_mode_reason(0, button_held=True, flag_path="nope")
out["stays"] = [startup.stays(out["flag"]), startup.stays(out["button"]), startup.stays(out["watchdog"][-1])]
print(json.dumps(out))
"""


def test_missing_and_broken_files_are_named(mp, tmp_path):
    (tmp_path / "board.json").write_text(json.dumps({"board": "board", "platform": "unix", "i2c": {"frq": 1}}))
    (tmp_path / "secrets.json").write_text(json.dumps({"device_id": "dev-1", "kid": "0102", "key": "00" * 15,
                                                       "base_iv": "11" * 13}))
    out = mp.json(BOOT)
    assert out["board"] == "board.json: i2c.frq: unknown key; allowed keys in i2c: bus, freq, scl, sda"
    assert out["secrets"] == "secrets.json: field 'key' must be 16 bytes (32 hex digits), got 15 bytes"
    assert out["certs"].startswith("certs/device.key.der: missing")


def test_good_files_load_and_broker_override(mp, tmp_path, repo):
    (tmp_path / "board.json").write_text((repo / "boards" / "sim.json").read_text().replace('"sim"', '"board"', 1))
    (tmp_path / "secrets.json").write_text(json.dumps({
        "device_id": "dev-1", "kid": "0102", "key": "00" * 16, "base_iv": "11" * 13,
        "wifi_ssid": "lab", "wifi_password": "pw", "broker": "broker.local:8884"}))
    (tmp_path / "certs").mkdir()
    for name in ("device.key.der", "device.crt.der", "ca.der"):
        (tmp_path / "certs" / name).write_bytes(b"x")
    out = mp.json("""
        import json, startup
        cfg = startup.load_board("board.json")
        keys, ssid, pw, broker = startup.load_secrets("secrets.json")
        startup.apply_broker(cfg, broker)
        try:
            startup.apply_broker(cfg, "no-port")
            bad = None
        except ValueError as e:
            bad = str(e)
        m = cfg["mqtt"]
        print(json.dumps([keys.device_id, ssid, m["host"], m["port"], len(startup.load_certs()), bad]))
        """)
    assert out == ["dev-1", "lab", "broker.local", 8884, 3,
                   "secrets.json: field 'broker' must be HOST:PORT, got \"no-port\""]


def test_safe_mode_counts_only_crashes(mp):
    out = mp.json(CRASHES)
    assert out["ordinary"] == [None] * 8  # 93e28bd: every boot counted; the 4th short boot entered safe mode
    crash3 = "3 crashes in a row (watchdog resets or unhandled exceptions)"
    assert out["watchdog"] == [None, None, None, crash3, "4 crashes in a row (watchdog resets or unhandled exceptions)"]
    assert out["exceptions"] == [None]  # two exceptions: 2 in a row, not yet safe mode
    assert out["retry"] == [None, crash3, 1]  # after a retry, one more crash is enough
    assert out["interrupted"] == [None, None, None]  # the first after Ctrl-C does not count: 2 in a row
    assert out["flag"] == "flag file safe_mode present" and out["button"] == "boot button held"
    assert out["stays"] == [True, False, False]


def test_safe_mode_ends_after_idle_time_without_repl_activity(mp):
    out = mp.json("""
import json, startup
from sim.vclock import VirtualClock
clk = VirtualClock()               # 5 s before the ms ticks wrap
left = []
watch = startup.SafeModeExit(clk, 600000, lambda: left.append(clk.elapsed_s()))
console = startup.ConsoleWatch(watch.activity)
for minute in range(30):
    if minute < 12 and minute % 3 == 0:
        console.write(b">>> ")          # someone at the REPL: its output keeps safe mode
    for _ in range(12):
        clk.advance_ms(5000)
        watch.check()                   # the 5 s timer
print(json.dumps({"left": left, "read": console.readinto(bytearray(1))}))
""")
    assert out["left"] == [(9 + 10) * 60]  # 10 min after the last activity, once
    assert out["read"] is None


def test_boot_py_refuses_a_micropython_too_old_for_the_native_mpy_files(mp, repo):
    out = mp.json(f"""
import json, sys
class Machine:  # what boot.py asks of machine (the unix port's has no reset_cause)
    SOFT_RESET = 5
    def reset_cause(self):
        return 1
sys.modules["machine"] = Machine()
g = {{}}
exec(open({str(repo / "firmware" / "boot.py")!r}).read(), g)   # this build is new enough: boot.py passes
results = {{}}
for name, mpy in (("v1.22 esp32", 6 | (2 | 10 << 2) << 8), ("v1.18", 5), ("v1.23 c3 no emitter", 6 | 3 << 8),
                  ("v1.28 esp32", 6 | (3 | 10 << 2) << 8), ("v1.28 c3", 6 | (3 | 11 << 2) << 8)):
    try:
        g["_check_mpy"](mpy)
        results[name] = "ok"
    except RuntimeError as e:
        results[name] = str(e)
print(json.dumps({{"results": results, "modules": sorted(k for k in g if not k.startswith("_"))}}))
""")
    r = out["results"]
    assert r["v1.28 esp32"] == "ok" and r["v1.28 c3"] == "ok"
    for old in ("v1.22 esp32", "v1.18", "v1.23 c3 no emitter"):
        assert "flash MicroPython v1.23 or newer (ESP32-C3: v1.24 or newer)" in r[old], r[old]
    assert r["v1.22 esp32"].startswith("this MicroPython (.mpy 6.2, native arch 10)")
    assert out["modules"] == ["gc", "machine", "sys"]  # nothing heavy
