"""pytest harness: firmware code runs on the MicroPython unix port, not in CPython.

`mp(code)` writes the code to a script, runs it with `micropython` (firmware/, build/lib/ and
host_tests/mp/ on its path) and returns its stdout. A non-zero exit fails the test with MicroPython's
traceback and output in the report. `mp.json(code)` returns the JSON printed on the last line.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

from oxilink import mprun, paths  # noqa: E402

MP_HELPERS = ROOT / "host_tests" / "mp"


class MicroPython:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.count = 0

    def run(self, code: str, *, heapsize: str | None = None, timeout: float = 300, args=(), expect_fail=False):
        self.count += 1
        script = self.tmp / f"mp_script_{self.count}.py"
        script.write_text(textwrap.dedent(code))
        proc = mprun.run(script, list(args), heapsize=heapsize, extra_path=[MP_HELPERS], timeout=timeout,
                         cwd=self.tmp)
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
def mp(tmp_path: Path) -> MicroPython:
    return MicroPython(tmp_path)


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
