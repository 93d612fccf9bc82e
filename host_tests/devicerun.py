"""Run a MicroPython script that drives an in-process device (host_tests/mp/sim_device.py) and talk to it.

The script prints "tag {json}" lines at checkpoints (`say`) and waits for files the test creates
(`wait_for`), so a test can change the world (restart the broker, swap a proxy mode) between phases.
"""

from __future__ import annotations

import json
import queue
import subprocess
import textwrap
import threading
from pathlib import Path

from oxilink import mprun, paths

MP_HELPERS = Path(__file__).resolve().parent / "mp"


class DeviceProcess:
    def __init__(self, workdir: Path, script: str, opts: dict, heapsize: str | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "device_script.py"
        opts = {"board": str(paths.ROOT / "boards" / "sim.json"), **opts}
        path.write_text(textwrap.dedent(script))
        self.lines: list[str] = []
        self._tagged: queue.Queue = queue.Queue()
        # Options go through a file: the unix port dies ("FATAL: uncaught NLR") on a command-line argument
        # longer than 255 bytes.
        (self.workdir / "opts.json").write_text(json.dumps(opts))
        self.proc = mprun.popen(path, ["opts.json"], heapsize=heapsize, extra_path=[MP_HELPERS], cwd=self.workdir,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            tag, _, rest = line.partition(" ")
            if rest.startswith("{"):
                try:
                    self._tagged.put((tag, json.loads(rest)))
                except ValueError:
                    pass
        self._tagged.put(("<exit>", None))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def expect(self, tag: str, timeout: float = 60) -> dict:
        """The next "tag {json}" line; fails with the device's output if it exits or times out first."""
        while True:
            try:
                got, obj = self._tagged.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                raise AssertionError(f"no {tag!r} line within {timeout} s:\n{self.output[-4000:]}") from None
            if got == "<exit>":
                self.proc.wait(5)
                raise AssertionError(f"device exited ({self.proc.returncode}) before {tag!r}:\n{self.output[-4000:]}")
            if got == tag:
                return obj

    def signal(self, name: str) -> None:
        (self.workdir / name).touch()

    def finish(self, timeout: float = 60, tag: str = "report") -> dict:
        """The last checkpoint (`tag`), after which the script must exit with status 0."""
        report = self.expect(tag, timeout)
        self.proc.wait(timeout)
        assert self.proc.returncode == 0, self.output[-4000:]
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> DeviceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
