"""Fetch pinned MicroPython libraries from PyPI by name, check their sha256, unpack into build/lib/.

micropython-umqtt.simple is an upip-era sdist that pip refuses to install, so we do what upip did: ask
PyPI's JSON API for the release, download the sdist, verify it against the pin in tools/deps.json and
extract only the module file. The same file is deployed to boards.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

from . import paths

DEPS = paths.ROOT / "tools" / "deps.json"
PYPI = "https://pypi.org/pypi/{name}/json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(name: str, version: str, sha: str) -> bytes:
    with urllib.request.urlopen(PYPI.format(name=name), timeout=60) as r:
        meta = json.load(r)
    sdists = [u for u in meta["releases"].get(version, []) if u["packagetype"] == "sdist"]
    if not sdists:
        raise RuntimeError(f"{name} {version}: PyPI lists no sdist")
    url = sdists[0]["url"]
    if sdists[0]["digests"]["sha256"] != sha:
        raise RuntimeError(f"{name} {version}: PyPI's sha256 differs from the pin in {DEPS}")
    with urllib.request.urlopen(url, timeout=120) as r:
        blob = r.read()
    if _sha256(blob) != sha:
        raise RuntimeError(f"{name} {version}: downloaded archive fails its sha256 check ({url})")
    return blob


def fetch_all(dest: Path = paths.BUILD_LIB, verbose: bool = True) -> list[Path]:
    deps = {k: v for k, v in json.loads(DEPS.read_text()).items() if not k.startswith("_")}
    written = []
    for name, pin in deps.items():
        stamp = dest / f".{name}-{pin['version']}.sha256"
        targets = [dest / t for t in pin["files"].values()]
        if stamp.exists() and stamp.read_text().strip() == pin["sha256"] and all(t.exists() for t in targets):
            written += targets
            continue
        cache = paths.BUILD / "cache" / f"{name}-{pin['version']}.tar.gz"
        blob = cache.read_bytes() if cache.exists() else b""
        if _sha256(blob) != pin["sha256"]:
            blob = _download(name, pin["version"], pin["sha256"])
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(blob)
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            for member, target in pin["files"].items():
                out = dest / target
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(tar.extractfile(member).read())
                written.append(out)
        stamp.write_text(pin["sha256"] + "\n")
        if verbose:
            print(f"fetched {name} {pin['version']} (sha256 ok) -> {dest}")
    return written


def main() -> None:
    fetch_all()


if __name__ == "__main__":
    main()
