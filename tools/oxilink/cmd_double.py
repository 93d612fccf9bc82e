"""`oxilink double`: the board double from the command line (docs/board-double.md).

  oxilink double erase IMAGE [--size BYTES]      a blank (erased) flash image
  oxilink double ls IMAGE                        the files on a flash image (size, sha256)
  oxilink double run --image IMAGE [...]         power the board on; print its port; show its console
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from . import mprun


def _rtc(text: str) -> float:
    from .double.clockstate import EPOCH_2000

    if text == "2000":
        return EPOCH_2000
    if text == "now":
        return time.time()
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--rtc: 2000, now or an ISO date/time, not {text!r}") from e
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def do_erase(args: argparse.Namespace) -> int:
    from .double.flashimage import erase

    erase(Path(args.image), args.size)
    print(f"{args.image}: {args.size} bytes erased (0xFF); the board formats it at its first boot")
    return 0


def do_ls(args: argparse.Namespace) -> int:
    from .double.flashimage import FlashImage

    mprun.set_default_build(args.build)
    files = FlashImage(Path(args.image)).files()
    if not files:
        print(f"{args.image}: no filesystem yet (erased), or empty")
    for path, (size, digest) in sorted(files.items()):
        print(f"{size:8d}  {digest[:16]}  {path}")
    return 0


def do_run(args: argparse.Namespace) -> int:
    from .double import AccessPoint, Board
    from .double.sntpserver import SntpServer

    mprun.set_default_build(args.build)
    image = Path(args.image)
    workdir = Path(args.workdir) if args.workdir else image.parent
    sntp = SntpServer() if args.sntp else None
    ap = AccessPoint(ssid=args.wifi_ssid, password=args.wifi_password)
    board = Board(workdir, image, board=args.board, rtc_at_power_on=args.rtc, ticks_at_boot_ms=args.ticks_start,
                  rate=args.rate, handshake_s=args.handshake_s, ap=ap, serial=args.serial)
    board.hold_boot(args.hold_boot)
    print(f"board double: {args.board} on {board.url}" + (f"; SNTP server {sntp.address}" if sntp else ""),
          file=sys.stderr)
    print("board double: Ctrl-C here powers it off (use `make repl PORT=...` for its REPL)", file=sys.stderr)
    board.power_on()
    shown = 0
    try:
        while True:
            out = board.output
            if len(out) > shown:
                sys.stdout.write(out[shown:])
                sys.stdout.flush()
                shown = len(out)
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        board.close()
        if sntp:
            sntp.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("double", help="the board double: an ESP32 board simulated on this machine")
    dsub = p.add_subparsers(dest="double_command", metavar="ACTION", required=True)
    e = dsub.add_parser("erase", help="create a blank (erased) flash image")
    e.add_argument("image")
    e.add_argument("--size", type=int, default=2 * 1024 * 1024, help="bytes (default 2 MiB, an ESP32 vfs partition)")
    e.set_defaults(func=do_erase)
    ls = dsub.add_parser("ls", help="list the files on a flash image")
    ls.add_argument("image")
    ls.add_argument("--build", choices=mprun.BUILDS, default="esp32like")
    ls.set_defaults(func=do_ls)
    r = dsub.add_parser("run", help="power the board on and show its console")
    r.add_argument("--image", required=True, help="flash image (see `oxilink double erase`)")
    r.add_argument("--board", default="esp32-devkitc", help="board whose wiring the double has")
    r.add_argument("--workdir", help="where its pty link (tty), clock and run files go (default: beside the image)")
    r.add_argument("--build", choices=mprun.BUILDS, default="esp32like")
    r.add_argument("--rtc", type=_rtc, default="2000", help="RTC after power-on: 2000 (default), now, or ISO time")
    r.add_argument("--ticks-start", type=int, default=0, help="ticks_ms at boot (e.g. 1073681824: wrap in 60 s)")
    r.add_argument("--rate", type=float, default=1.0, help="board time per real second")
    r.add_argument("--handshake-s", type=float, default=0.0, help="stretch each TLS handshake by this much")
    r.add_argument("--wifi-ssid", default="oxilink-test")
    r.add_argument("--wifi-password", default="correct horse battery")
    r.add_argument("--sntp", action="store_true", help="serve time on loopback (provision with --ntp ADDRESS)")
    r.add_argument("--serial", choices=("pty", "tcp"), default="pty")
    r.add_argument("--hold-boot", action="store_true", help="hold the BOOT button (safe mode)")
    r.set_defaults(func=do_run)
