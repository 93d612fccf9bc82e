"""pytest harness: firmware code runs on the MicroPython unix port, not in CPython.

`mp(code)` writes the code to a script, runs it with `micropython` (firmware/, build/lib/ and
host_tests/mp/ on its path) and returns its stdout. A non-zero exit fails the test with MicroPython's
traceback and output in the report. `mp.json(code)` returns the JSON printed on the last line.

Every test that runs MicroPython runs twice, once per build (`mpbuild`: "esp32like", the ESP32 port's
number model, and "stock", the 64-bit wheel; see tools/oxilink/mprun.py). A test that passes on one and
fails on the other is a finding about the device. Tests get `mpbuild` through `mp`, or request it directly
when they start MicroPython another way (DeviceProcess, mprun.popen, the oxilink CLI): outside such a test
no build is chosen, and starting MicroPython fails.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from oxilink import mprun, paths  # noqa: E402

MP_HELPERS = ROOT / "host_tests" / "mp"


def pytest_configure(config):
    # No default build inside the test session: a test that starts MicroPython must say which (mpbuild).
    os.environ["OXILINK_MP_BUILD"] = ""
    mprun.set_default_build(None)


# What each build must be, checked once per session before its first test: a binary whose heap_lock does not
# raise would make every allocation-free test pass vacuously; a 64-bit binary posing as esp32like would hide
# every 31-bit overflow.
_BUILD_CHECK = """
import sys, time, micropython
micropython.heap_lock()
try:
    bytearray(16)
    locked = 0
except MemoryError:
    locked = 1
micropython.heap_unlock()
print(sys.maxsize, time.ticks_add(0, -1), locked, repr(1.1 + 2.2))
"""
_BUILD_EXPECT = {
    "esp32like": [str(2**31 - 1), str(2**30 - 1), "1", "3.3000002"],  # 31-bit small ints, ticks 2**30, float32
    "stock": [str(2**63 - 1), None, "1", "3.3000000000000003"],
}
_checked_builds: dict[str, str] = {}


def build_problem(build: str, binary: str) -> str:
    """Why `binary` cannot stand for `build` ("" if it can): word size, tick period, heap_lock, floats."""
    import subprocess

    out = subprocess.run([binary, "-c", _BUILD_CHECK], capture_output=True, text=True, timeout=60)
    got = out.stdout.split()
    want = _BUILD_EXPECT[build]
    bad = len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want, strict=True))
    return (f"{build} MicroPython at {binary} is not what the tests need: (sys.maxsize, ticks_add(0, -1), "
            f"heap_lock raises, 1.1+2.2) = {got or out.stderr.strip()}, expected {want}" if bad else "")


def _check_build(build: str) -> None:
    if build not in _checked_builds:
        _checked_builds[build] = build_problem(build, mprun.micropython_binary(build))
    if _checked_builds[build]:
        pytest.fail(_checked_builds[build], pytrace=False)


@pytest.fixture(params=mprun.BUILDS)
def mpbuild(request, monkeypatch) -> str:
    """The MicroPython build this test runs on (each test that uses it runs on both)."""
    build = request.param
    _check_build(build)
    monkeypatch.setenv("OXILINK_MP_BUILD", build)  # for the oxilink CLI and tools the test starts
    old = mprun.set_default_build(build)
    yield build
    mprun.set_default_build(old)


class MicroPython:
    def __init__(self, tmp_path: Path, build: str):
        self.tmp = tmp_path
        self.build = build
        self.count = 0

    def run(self, code: str, *, heapsize: str | None = None, timeout: float = 300, args=(), expect_fail=False):
        self.count += 1
        script = self.tmp / f"mp_script_{self.count}.py"
        script.write_text(textwrap.dedent(code))
        proc = mprun.run(script, list(args), heapsize=heapsize, extra_path=[MP_HELPERS], timeout=timeout,
                         cwd=self.tmp, build=self.build)
        if expect_fail:
            if proc.returncode == 0:
                pytest.fail(f"MicroPython script succeeded but was expected to fail:\n{proc.stdout}", pytrace=False)
            return proc
        if proc.returncode != 0:
            pytest.fail(
                f"MicroPython exited with {proc.returncode}\n--- stderr ---\n{proc.stderr}\n"
                f"--- stdout ---\n{proc.stdout}\n--- script {script.name} ---\n{script.read_text()}",
                pytrace=False,
            )
        return proc.stdout

    __call__ = run

    def json(self, code: str, **kw):
        out = self.run(code, **kw)
        lines = [line for line in out.splitlines() if line.strip()]
        if not lines:
            pytest.fail("MicroPython printed nothing; expected a JSON line", pytrace=False)
        return json.loads(lines[-1])


@pytest.fixture
def mp(tmp_path: Path, mpbuild: str) -> MicroPython:
    return MicroPython(tmp_path, mpbuild)


@pytest.fixture(scope="session")
def repo() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared PPG recordings; the one allowed skip is their absence outside this project's CI."""
    d = paths.data_dir()
    if not d.exists():
        pytest.skip(f"PPG recordings not found at {d} (set OXILINK_DATA to their folder)")
    return d


# --- a real Mosquitto on loopback with a generated PKI -------------------------------------------------

@pytest.fixture(scope="session")
def secrets_root(tmp_path_factory) -> Path:
    """A secrets/ folder for the session: the CA in secrets/pki, provisioned devices in secrets/devices."""
    return tmp_path_factory.mktemp("secrets")


@pytest.fixture(scope="session")
def pki(secrets_root):
    from oxilink.pki import CertificateAuthority

    return CertificateAuthority(secrets_root / "pki")


@pytest.fixture
def broker(pki, tmp_path):
    """Mosquitto with mutual TLS on a random 127.0.0.1 port; installed from the system packages if missing."""
    from oxilink.broker import Mosquitto, mosquitto_binary

    try:
        mosquitto_binary()
    except FileNotFoundError:
        import subprocess

        subprocess.run(["make", "-C", str(ROOT), "system-deps"], check=True)
    with Mosquitto(tmp_path / "broker", pki) as b:
        yield b


@pytest.fixture
def plain_broker(pki, tmp_path):
    """Mosquitto with, besides the TLS listener, a plain listener (plain_port) for boards with mqtt.tls false."""
    from oxilink.broker import Mosquitto, free_port

    with Mosquitto(tmp_path / "plain-broker", pki, plain_port=free_port()) as b:
        yield b


def write_der(folder: Path, issued, ca) -> list[str]:
    """A device's TLS material as a board holds it (DER): k.der, c.der, ca.der in folder; returns the paths."""
    out = []
    for name, data in (("k.der", issued.key_der()), ("c.der", issued.cert_der()), ("ca.der", ca.ca_der())):
        (folder / name).write_bytes(data)
        out.append(str(folder / name))
    return out


@pytest.fixture
def receiver(broker, pki):
    """A paho subscriber with the receiver's identity, subscribed to oxilink/#."""
    from mqtt_peer import Peer
    from oxilink.broker import RECEIVER_CN

    peer = Peer(broker, pki.issue(RECEIVER_CN), pki.cert_path)
    peer.subscribe("oxilink/#")
    yield peer
    peer.close()
