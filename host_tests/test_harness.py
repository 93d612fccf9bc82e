"""The harness itself: code really runs on the MicroPython unix port, failures carry their traceback,
and the pinned umqtt.simple is fetched, checked and importable."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from oxilink import fetch, paths


def test_code_runs_on_micropython_not_cpython(mp):
    out = mp.json("import sys, json; print(json.dumps([sys.implementation.name, sys.implementation.version[:2]]))")
    assert out[0] == "micropython" and tuple(out[1]) >= (1, 20)


def test_micropython_failure_carries_traceback(mp):
    proc = mp.run("def f():\n    raise ValueError('boom at depth')\nf()\n", expect_fail=True)
    out = proc.stdout + proc.stderr  # the unix port prints tracebacks on stdout
    assert "Traceback" in out and "ValueError: boom at depth" in out
    assert ", line 2, in f" in out


def test_small_heap_is_enforced(mp):
    proc = mp.run("x = bytearray(200 * 1024)\n", heapsize="100K", expect_fail=True)
    assert "MemoryError" in proc.stdout + proc.stderr


def test_fetched_umqtt_matches_pin_and_imports(mp):
    pin = json.loads(fetch.DEPS.read_text())["micropython-umqtt.simple"]
    cache = paths.BUILD / "cache" / f"micropython-umqtt.simple-{pin['version']}.tar.gz"
    assert hashlib.sha256(cache.read_bytes()).hexdigest() == pin["sha256"]
    with tarfile.open(cache) as tar:
        member = next(iter(pin["files"]))
        assert tar.extractfile(member).read() == (paths.BUILD_LIB / "umqtt" / "simple.py").read_bytes()
    out = mp.json("from umqtt.simple import MQTTClient; import json; print(json.dumps(MQTTClient.__name__))")
    assert out == "MQTTClient"


class FakePyPI:
    """PyPI's JSON API and file host on 127.0.0.1, serving whatever archive (and listed sha256) a test sets."""

    def __init__(self, name: str, version: str):
        import http.server
        import threading

        self.name, self.version = name, version
        self.archive = b""
        self.listed_sha256 = ""
        self.requests: list[str] = []
        pypi = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                pypi.requests.append(self.path)
                if self.path == f"/pypi/{name}/json":
                    url = f"http://127.0.0.1:{self.server.server_port}/files/{name}-{version}.tar.gz"
                    sdist = {"packagetype": "sdist", "url": url, "digests": {"sha256": pypi.listed_sha256}}
                    body = json.dumps({"releases": {version: [sdist]}}).encode()
                elif self.path == f"/files/{name}-{version}.tar.gz":
                    body = pypi.archive
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/pypi/{{name}}/json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pypi(tmp_path, monkeypatch):
    """fetch.py pointed at a FakePyPI, with its cache and output under tmp_path; the pin is the real one."""
    name = "micropython-umqtt.simple"
    pin = json.loads(fetch.DEPS.read_text())[name]
    server = FakePyPI(name, pin["version"])
    monkeypatch.setattr(fetch, "PYPI", server.url)
    monkeypatch.setattr(fetch.paths, "BUILD", tmp_path)
    server.pin = pin
    server.cache = tmp_path / "cache" / f"{name}-{pin['version']}.tar.gz"
    server.lib = tmp_path / "lib"
    yield server
    server.close()


def tampered_archive(pin: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"print('evil')\n"
        info = tarfile.TarInfo(next(iter(pin["files"])))
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def genuine_archive(pin: dict) -> bytes:
    blob = (paths.ROOT / "build" / "cache" / f"micropython-umqtt.simple-{pin['version']}.tar.gz").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == pin["sha256"]  # make deps fetched it from the real PyPI
    return blob


def test_fetch_refuses_a_tampered_download(pypi):
    """The index lists the pinned sha256 but serves other bytes (a compromised mirror): fetch's own check
    refuses them, and nothing is unpacked or cached."""
    pypi.listed_sha256 = pypi.pin["sha256"]
    pypi.archive = tampered_archive(pypi.pin)
    with pytest.raises(RuntimeError, match="downloaded archive fails its sha256 check"):
        fetch.fetch_all(dest=pypi.lib, verbose=False)
    assert pypi.requests[-1].startswith("/files/")  # it really downloaded, then refused
    assert not (pypi.lib / "umqtt" / "simple.py").exists() and not pypi.cache.exists()


def test_fetch_refuses_an_index_listing_another_sha256(pypi):
    pypi.listed_sha256 = hashlib.sha256(b"another release").hexdigest()
    pypi.archive = genuine_archive(pypi.pin)
    with pytest.raises(RuntimeError, match="PyPI's sha256 differs from the pin"):
        fetch.fetch_all(dest=pypi.lib, verbose=False)
    assert not any(p.startswith("/files/") for p in pypi.requests)  # refused before downloading
    assert not (pypi.lib / "umqtt" / "simple.py").exists()


def test_a_tampered_cache_is_not_trusted(pypi):
    """A cached archive that does not match the pin is fetched again and replaced; the genuine one is used."""
    pypi.listed_sha256 = pypi.pin["sha256"]
    pypi.archive = genuine_archive(pypi.pin)
    pypi.cache.parent.mkdir(parents=True)
    pypi.cache.write_bytes(tampered_archive(pypi.pin))
    fetch.fetch_all(dest=pypi.lib, verbose=False)
    assert pypi.requests == ["/pypi/micropython-umqtt.simple/json",
                             f"/files/micropython-umqtt.simple-{pypi.pin['version']}.tar.gz"]
    assert hashlib.sha256(pypi.cache.read_bytes()).hexdigest() == pypi.pin["sha256"]
    assert b"evil" not in (pypi.lib / "umqtt" / "simple.py").read_bytes()
    assert (pypi.lib / "umqtt" / "simple.py").read_bytes() == (paths.BUILD_LIB / "umqtt" / "simple.py").read_bytes()


FAKE_MICROPYTHON = """#!{python}
# Answers the harness's build check as a 64-bit build whose heap_lock does nothing would (locked=0),
# or as a faithful stock build (locked=1).
print({maxsize}, 1073741823, {locked}, "3.3000000000000003")
"""


@pytest.mark.parametrize("heap_lock_raises", [False, True])
def test_build_check_fails_on_a_binary_whose_heap_lock_does_nothing(tmp_path, heap_lock_raises):
    """conftest's check before a build's first test: a binary where heap_lock() lets allocations through is
    refused (so no allocation-free test can pass vacuously); the same answers with heap_lock working pass."""
    import sys

    from conftest import build_problem

    fake = tmp_path / "micropython"
    fake.write_text(FAKE_MICROPYTHON.format(python=sys.executable, maxsize=2**63 - 1, locked=int(heap_lock_raises)))
    fake.chmod(0o755)
    problem = build_problem("stock", str(fake))
    if heap_lock_raises:
        assert problem == ""
    else:
        assert "heap_lock raises" in problem and "'0'" in problem and str(fake) in problem
    assert "expected" in build_problem("esp32like", str(fake))  # and a 64-bit binary is not esp32like


def test_cli_and_benchmarks_run_on_the_esp32like_build_unless_told(tmp_path, repo):
    """README: the CLI and the benchmarks run firmware on the esp32like build (31-bit small ints) by default,
    so their figures are the device's; OXILINK_MP_BUILD=stock picks the 64-bit wheel."""
    import os
    import subprocess
    import sys

    script = tmp_path / "word.py"
    script.write_text("import sys\nprint(sys.maxsize)\n")
    run = "import sys\nfrom oxilink import mprun\nprint(mprun.run(sys.argv[1]).stdout.strip())\n"
    env = {k: v for k, v in os.environ.items() if k != "OXILINK_MP_BUILD"}
    answers = {}
    for build in (None, "stock"):
        if build:
            env["OXILINK_MP_BUILD"] = build
        out = subprocess.run([sys.executable, "-c", run, str(script)], env=env, cwd=repo / "tools",
                             capture_output=True, text=True, timeout=60, check=True)
        answers[build] = out.stdout.strip()
    assert answers == {None: str(2**31 - 1), "stock": str(2**63 - 1)}


def test_heap_benchmark_counts_every_module_a_board_runs(tmp_path):
    """`make bench-heap` (the README's heap figure) imports every firmware module deploy copies, except the
    board-only ones that need machine/network/esp32 (measured on the double instead: docs/board-double.md)."""
    import ast

    from oxilink import bench_heap

    script = (paths.ROOT / "tools" / "oxilink" / "mp" / "bench_heap.py").read_text()
    measured = next(ast.literal_eval(node.value) for node in ast.parse(script).body
                    if isinstance(node, ast.Assign) and node.targets[0].id == "MODULES")
    board_only = {"boot", "main", "startup", "hw_esp32", "wdtkeeper", "wifi"}
    deployed = {p.stem for p in paths.FIRMWARE.glob("*.py")} - {"hw_unix"}
    assert set(measured) - {"umqtt.simple"} == deployed - board_only
    assert "umqtt.simple" in measured
    # and it loads them as deploy copies them: compiled to .mpy
    out = bench_heap.compile_firmware(tmp_path / "mpy", "x64")
    assert {p.stem for p in out.glob("*.mpy")} >= deployed
