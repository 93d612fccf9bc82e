"""Board files: schema, defaults and error messages, on the device (unix port) and via `oxilink board check`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OXILINK = ROOT / ".venv" / "bin" / "oxilink"
BOARDS = sorted((ROOT / "boards").glob("*.json"))


def board_check(*files) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OXILINK), "board", "check", *map(str, files)], capture_output=True, text=True)


def write_variant(tmp_path: Path, name: str, edit) -> Path:
    cfg = json.loads((ROOT / "boards" / f"{name}.json").read_text())
    edit(cfg)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def test_required_boards_ship():
    names = {p.stem for p in BOARDS}
    assert {"esp32-devkitc", "esp32-s3-devkitc-1", "esp32-c3-devkitm-1", "sim"} <= names


def test_every_shipped_board_is_valid(mpbuild):
    proc = board_check(*BOARDS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(": ok") == len(BOARDS)


@pytest.mark.parametrize(
    "edit, field, allowed",
    [
        (lambda c: c["sensor"].__setitem__("sampel_rate", 100), "sensor.sampel_rate: unknown key", "sample_rate"),
        (lambda c: c.__setitem__("wifi_ssid", "x"), "wifi_ssid: unknown key", "queue"),
        (lambda c: c["i2c"].__setitem__("freq", "fast"), "i2c.freq: expected int", '"fast"'),
        (lambda c: c["mqtt"].__setitem__("tls", 1), "mqtt.tls: expected bool", "1"),
        (lambda c: c["sensor"].__setitem__("sample_rate", 150), "sensor.sample_rate: 150 is not allowed",
         "50, 100, 200, 400, 800, 1000, 1600, 3200"),
        (lambda c: c["sensor"].__setitem__("led_ir_ma", 60), "sensor.led_ir_ma: 60 is out of range", "0..51"),
        (lambda c: c["queue"].__setitem__("capacity_bytes", 1000), "queue.capacity_bytes: 1000 is out of range",
         "16384..4194304"),
        (lambda c: c["sensor"].update(sample_rate=800, averaging=1), "sensor.sample_rate: 800 Hz is not supported",
         "allowed: 50, 100, 200, 400"),
        (lambda c: c["sensor"].update(sample_rate=50, averaging=4), "sensor.averaging", "25..400 Hz"),
        (lambda c: c["i2c"].__setitem__("sda", 6), "i2c.sda: GPIO6 is not usable on esp32", "GPIO 0..39"),
        (lambda c: c["i2c"].__setitem__("scl", 34), "i2c.scl: GPIO34 is input-only", "bidirectional"),
        (lambda c: c.pop("platform"), "platform: required field is missing", ""),
        (lambda c: c.__setitem__("board", "other"), 'board: "other" does not match the file name', "esp32-devkitc"),
    ],
)
def test_bad_board_file_names_file_field_and_allowed(tmp_path, edit, field, allowed, mpbuild):
    path = write_variant(tmp_path, "esp32-devkitc", edit)
    proc = board_check(path)
    assert proc.returncode != 0
    line = next((ln for ln in proc.stderr.splitlines() if field in ln), None)
    assert line is not None, proc.stderr
    assert line.startswith(str(path)), line
    assert allowed in line


def test_all_errors_reported_together(tmp_path, mpbuild):
    def edit(c):
        c["sensor"]["sampel_rate"] = 100
        c["i2c"]["freq"] = "fast"

    proc = board_check(write_variant(tmp_path, "esp32-devkitc", edit))
    assert proc.returncode == 1
    assert "sampel_rate" in proc.stderr and "i2c.freq" in proc.stderr


def test_broken_json_gives_position(tmp_path):
    path = tmp_path / "sim.json"
    path.write_text('{"board": "sim",\n  "platform": "unix",,\n}')
    proc = board_check(path)
    assert proc.returncode == 1
    assert f"{path}: not valid JSON" in proc.stderr and "line 2" in proc.stderr


def test_missing_file(tmp_path, mpbuild):
    proc = board_check(tmp_path / "nope.json")
    assert proc.returncode == 1 and "cannot read board file" in proc.stderr


def test_c3_has_one_i2c_bus(tmp_path, mpbuild):
    proc = board_check(write_variant(tmp_path, "esp32-c3-devkitm-1", lambda c: c["i2c"].__setitem__("bus", 1)))
    assert proc.returncode == 1 and "i2c.bus: esp32c3 has 1 I2C bus(es); allowed: 0..0" in proc.stderr


def test_device_side_defaults_and_error_type(mp, tmp_path):
    minimal = tmp_path / "mini.json"
    minimal.write_text(json.dumps({"board": "mini", "platform": "unix"}))
    result = mp.json(
        f"""
        import boardconf, json
        cfg = boardconf.load({str(minimal)!r})
        try:
            boardconf.validate({{"board": "x", "platform": "unix", "sensor": {{"mode": "turbo"}}}}, "x.json")
            err = None
        except ValueError as e:
            err = str(e)
        print(json.dumps({{"cfg": cfg, "rate": boardconf.output_rate(cfg), "err": err}}))
        """
    )
    cfg = result["cfg"]
    assert cfg["sensor"]["sample_rate"] == 100 and cfg["sensor"]["address"] == 0x57
    assert cfg["queue"]["capacity_bytes"] == 262144 and cfg["mqtt"]["tls"] is True
    assert result["rate"] == 100
    assert result["err"] == 'x.json: sensor.mode: "turbo" is not allowed; allowed: hr, spo2, multi'


def config_id(data: bytes) -> int:
    """What docs/format.md says `cfg` is: the first 30 bits of the board file's sha256, big-endian."""
    import hashlib

    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big") & 0x3FFFFFFF


def test_config_id_names_the_exact_board_file(mp, tmp_path):
    """Every batch carries the config id of the board file it was taken under (cfg): the same on the device
    as on the host, a small int on the ESP32 (< 2**30), and different after any edit of the file."""
    original = (ROOT / "boards" / "esp32-devkitc.json").read_bytes()
    edited = tmp_path / "esp32-devkitc.json"
    edited.write_bytes(original.replace(b'"board"', b' "board"', 1))  # same configuration, other bytes
    ids = mp.json(f"""
        import boardconf, json
        print(json.dumps([boardconf.load(p)["config_id"] for p in {[str(ROOT / "boards" / "esp32-devkitc.json"),
                                                                    str(edited)]!r}]))
        """)
    assert ids == [config_id(original), config_id(edited.read_bytes())]
    assert ids[0] != ids[1] and all(0 < i < 2**30 for i in ids)
    assert f"config id {ids[0]}" in board_check(ROOT / "boards" / "esp32-devkitc.json").stdout


def test_docs_describe_every_schema_field(mp):
    fields = mp.json(
        """
        import boardconf, json
        out = []
        for k, v in boardconf.SCHEMA.items():
            if type(v) is dict:
                out += [k + "." + f for f in v]
            else:
                out.append(k)
        print(json.dumps(out))
        """
    )
    doc = (ROOT / "docs" / "boards.md").read_text()
    missing = [f for f in fields if f"`{f}`" not in doc and f"`{f.split('.')[0]}.{f.split('.')[-1]}`" not in doc]
    assert not missing, f"docs/boards.md does not describe: {missing}"


def test_readme_wiring_table_matches_the_board_files(repo):
    """The wiring table in README.md is what the board files configure: SDA, SCL and INT per board."""
    import re

    text = (repo / "README.md").read_text()
    table = text[text.index("| MAX30102 module |"):].split("\n\n")[0].splitlines()
    boards = [b.strip() for b in table[0].strip("|").split("|")[1:]]
    rows = {cells[0]: cells[1:] for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in table[2:])}
    for i, name in enumerate(boards):
        cfg = json.loads((repo / "boards" / f"{name}.json").read_text())
        pins = {"SDA": cfg["i2c"]["sda"], "SCL": cfg["i2c"]["scl"], "INT": cfg["sensor"]["int_pin"]}
        for signal, pin in pins.items():
            assert re.fullmatch(rf"GPIO{pin}", rows[signal][i]), (name, signal, rows[signal][i], pin)
