# One run of the board double, from reset to the next reset: what ports/esp32/main.c does between
# `soft_reset:` and `soft_reset_exit:`.
#   1. load the double's modules (machine, network, time, socket extended to the ESP32 API; the simulated
#      sensor) while the host's files are still reachable;
#   2. replace the host filesystem at "/" with the flash image (as _boot.py: mount, or format an erased flash);
#   3. sys.path = ['', '.frozen', '/lib'] as on the ESP32; run boot.py, then main.py if boot.py succeeded and
#      the REPL is in friendly mode (after a soft reset from the raw REPL, main.py is skipped: mpremote relies
#      on that);
#   4. the REPL on the serial line; a soft reset (Ctrl-D, sys.exit, machine.soft_reset) prints
#      "MPY: soft reboot" and ends this process: the launcher starts the next run, keeping what a soft reset
#      keeps (RTC, the watchdog, Wi-Fi).
# The launcher (tools/oxilink/double/board.py) passes everything in $OXILINK_BOARD_RUN. Host-side only.
import os
import sys

import vfs

from _state import run
import _link

link = _link.connect(run["link_port"], run["token"])
import _clock  # noqa: E402,F401  (opens the clock file before "/" goes)
import machine  # noqa: E402
import network  # noqa: E402,F401
import socket  # noqa: E402,F401
import time  # noqa: E402,F401

import _flash  # noqa: E402
import _repl  # noqa: E402

sys.path.append(run["firmware_dir"])  # for firmware/sim (the simulated chip) only, and only until "/" goes
if machine._chip.present():
    machine._chip.get()  # opens a recording before the host's files go
sys.path.remove(run["firmware_dir"])

_repl.out("\r\n")
bdev = _flash.ImageFlash(run["flash"])
vfs.umount("/")
fs_state = _flash.mount_root(bdev, _repl.out)
if fs_state == "corrupted":
    while True:  # inisetup.fs_corrupted(): repeat the message; Ctrl-C reaches the REPL (with no filesystem)
        try:
            time.sleep(3)
            _flash.mount_root(bdev, _repl.out)
        except KeyboardInterrupt:
            break
else:
    os.chdir("/")
sys.path = ["", ".frozen", "/lib"]

if run.get("reports_mpy") is not None:
    # A test stands in for an older firmware: `import sys` finds this in sys.modules before the built-in.
    class _Implementation:
        def __init__(self, real, mpy):
            self._real = real
            self._mpy = mpy

        def __getattr__(self, name):
            return getattr(self._real, name)

    class _OlderSys:
        def __init__(self, real, mpy):
            self._real = real
            self.implementation = _Implementation(real.implementation, mpy)

        def __getattr__(self, name):
            return getattr(self._real, name)

    sys.modules["sys"] = _OlderSys(sys, run["reports_mpy"])

g = {"__name__": "__main__"}


_tell = _link.tell


def _run_file(name):
    """pyexec_file_if_exists: True when the file ran to the end or does not exist."""
    try:
        with open(name) as f:
            src = f.read()
    except OSError:
        return True
    g["__file__"] = name
    return _repl.execute(src, g, "exec", filename=name)


mode = run["repl_mode"]
_tell("interruptible")  # from here Ctrl-C raises KeyboardInterrupt (before, as during _boot.py, it is a byte)
try:
    try:
        ok = _run_file("boot.py")
        _tell("ran", file="boot.py", ok=ok)
        if mode == "friendly" and ok:
            _tell("ran", file="main.py", ok=_run_file("main.py"))
        mode = _repl.run(mode, g)
    except _repl.SoftReset:
        pass
except _repl.PowerOff:
    sys.exit(0)
machine._exit_hooks()
while True:
    try:
        _repl.out("MPY: soft reboot\r\n")
        break
    except KeyboardInterrupt:
        pass
_tell("soft_reset", mode=mode)
sys.exit(0)
