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
reasons = []
for boot in range(5):
    c = startup.CrashCounter("crashes")   # a fresh boot reads the persisted count
    reasons.append(startup.safe_mode_reason(c.boot(), flag_path="safe_mode"))
c = startup.CrashCounter("crashes")
c.healthy()
after = startup.safe_mode_reason(startup.CrashCounter("crashes").boot(), flag_path="safe_mode")
open("safe_mode", "w").close()
flagged = startup.safe_mode_reason(1, flag_path="safe_mode")
held = startup.safe_mode_reason(1, button_held=True, flag_path="nope")
print(json.dumps({"reasons": reasons, "after_healthy": after, "flag": flagged, "button": held}))
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


def test_safe_mode_after_repeated_crashes(mp):
    out = mp.json(CRASHES)
    assert out["reasons"][:3] == [None, None, None]
    assert out["reasons"][3] == "3 boots in a row failed before running 60 s"
    assert out["reasons"][4].startswith("4 boots in a row")
    assert out["after_healthy"] is None  # a healthy run resets the count
    assert out["flag"] == "flag file safe_mode present" and out["button"] == "boot button held"
