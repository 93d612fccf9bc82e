"""Host tools against the board double: the clock shim under MicroPython, and the real mpremote (from the
venv) over the double's pty / socket:// for everything a user and `oxilink deploy` do."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from doublekit import board

from oxilink import mprun
from oxilink.double import shim
from oxilink.double.clockstate import EPOCH_2000, BoardClock

MPREMOTE = str(Path(sys.executable).parent / "mpremote")

CLOCK = """\
import time
t0 = time.ticks_ms()
time.sleep_ms(2000)
print(time.time(), t0, time.ticks_diff(time.ticks_ms(), t0))
"""


@pytest.mark.parametrize("rate", [1.0, 10.0])
def test_clock_shim_sets_the_boards_clocks_on_both_builds(tmp_path, mpbuild, rate):
    clock = BoardClock(tmp_path / "clock")
    clock.power_on(EPOCH_2000 + 60, ticks_ms=5000, rate=rate)
    script = tmp_path / "clock.py"
    script.write_text(CLOCK)
    binary = mprun.micropython_binary(mpbuild)
    env = dict(os.environ, LD_PRELOAD=str(shim.library(shim.binary_bits(binary))),
               OXILINK_CLOCK_FILE=str(clock.path))
    t = time.monotonic()
    out = subprocess.run([binary, str(script)], env=env, capture_output=True, text=True, timeout=60)
    real = time.monotonic() - t
    unix_s, t0, slept = (int(float(x)) for x in out.stdout.split())
    assert EPOCH_2000 + 60 <= unix_s <= EPOCH_2000 + 60 + 3 * rate + 1  # 2000-01-01 00:01, as the launcher set it
    assert 5000 <= t0 < 5000 + 1000 * rate  # ticks from the chosen start
    assert 2000 <= slept < 2300  # a 2 s board sleep ...
    assert real < 2.0 / rate + 1.5  # ... takes 2 s / rate of real time


def run_mpremote(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([MPREMOTE, "connect", url, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("serial", ["pty", "tcp"])
def test_real_mpremote_works_against_the_double(tmp_path, mpbuild, serial):
    local = tmp_path / "hello.py"
    local.write_text("print('hello from flash')\n" * 40)
    import hashlib

    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    with board(tmp_path, {}, serial=serial) as b:
        b.expect(">>> ")
        r = run_mpremote(b.url, "exec", "import sys; print(sys.path)")
        assert r.returncode == 0 and "['', '.frozen', '/lib']" in r.stdout, r.stderr
        r = run_mpremote(b.url, "fs", "cp", str(local), ":hello.py", "+", "fs", "ls", "+", "fs", "sha256sum",
                         ":hello.py", "+", "exec", "import hello")
        assert r.returncode == 0, r.stderr
        assert "hello.py" in r.stdout and digest in r.stdout and r.stdout.count("hello from flash") == 40
        r = run_mpremote(b.url, "rm", ":hello.py", "+", "fs", "ls")
        assert r.returncode == 0 and "hello.py" not in r.stdout.split("ls :", 1)[1]
        r = run_mpremote(b.url, "soft-reset", "+", "exec", "import machine; print(machine.reset_cause())")
        assert r.returncode == 0 and r.stdout.strip().endswith("5")
        n = len(b.boots)
        assert run_mpremote(b.url, "reset").returncode == 0
        b.wait_boot(n + 2)  # mpremote soft-resets into the raw REPL first, then machine.reset()
        assert [x.cause for x in b.boots[n:]] == ["soft", "hard"]


def test_mpremote_repl_is_an_interactive_terminal(tmp_path, mpbuild):
    with board(tmp_path, {}) as b:
        b.expect(">>> ")
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(MPREMOTE, [MPREMOTE, "connect", b.url, "repl"])
        seen = b""
        try:
            deadline = time.monotonic() + 20
            sent = False
            while time.monotonic() < deadline and b"4242" not in seen:
                r, _, _ = select.select([fd], [], [], 0.2)
                if r:
                    seen += os.read(fd, 4096)
                if not sent and b"Connected to MicroPython" in seen:
                    os.write(fd, b"print(42*101)\r")
                    sent = True
            assert b"4242" in seen, seen
            os.write(fd, b"\x1d")  # Ctrl-]: leave the REPL
            os.waitpid(pid, 0)
        finally:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
