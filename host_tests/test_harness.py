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


def test_fetch_refuses_tampered_archive(tmp_path, monkeypatch):
    pin = json.loads(fetch.DEPS.read_text())
    name = "micropython-umqtt.simple"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"print('evil')\n"
        info = tarfile.TarInfo(next(iter(pin[name]["files"])))
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr(fetch, "_download", lambda *a: (_ for _ in ()).throw(RuntimeError("sha256 mismatch")))
    monkeypatch.setattr(fetch.paths, "BUILD", tmp_path)
    cache = tmp_path / "cache" / f"{name}-{pin[name]['version']}.tar.gz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(buf.getvalue())  # a cached archive that does not match the pin is not trusted
    with pytest.raises(RuntimeError, match="sha256"):
        fetch.fetch_all(dest=tmp_path / "lib", verbose=False)
    assert not (tmp_path / "lib" / "umqtt" / "simple.py").exists()
