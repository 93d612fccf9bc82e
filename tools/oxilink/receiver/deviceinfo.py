"""What a device was when it sent a batch: firmware and configuration version (from the batch), board, sensor
and calibration (from its board file), certificate serial (from the registry).

The receiver freezes this at ingest as a *device version*: a canonical JSON document, identified by the first
16 hex digits of its SHA-256, stored once (store: `device_versions`) and named by every batch it describes
(`messages.device_version`). Other firmware, another `cfg`, a recalibrated board file or a new certificate
make a new version; a stored one is never edited. So an export of last month shows the device as it was last
month, and each version becomes its own FHIR Device (fhir_device.py).

Batches stored before device versions existed have none: they get a version built from their own fw and cfg
only (legacy_version), which is as much as is known about them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from ..firmware_facts import boardconf
from .registry import DeviceRegistry

log = logging.getLogger("oxilink.receiver")

# The sensor settings that shape the signal (wiring and FIFO watermark do not).
SENSOR_FIELDS = ("model", "mode", "sample_rate", "averaging", "pulse_width_us", "adc_range_na", "led_red_ma",
                 "led_ir_ma", "led_green_ma", "swap_red_ir")
LEGACY = "legacy:"  # the store's key for a batch without a device version: legacy:<fw>:<cfg>


def canonical(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class DeviceVersion:
    device: str
    id: str
    doc: dict

    @classmethod
    def of(cls, doc: dict) -> DeviceVersion:
        return cls(doc["device"], hashlib.sha256(canonical(doc).encode()).hexdigest()[:16], doc)

    def json(self) -> str:
        return canonical(self.doc)


def describe(device: str, fw: str | None, cfg: int | None, *, board_name: str | None = None,
             board: dict | None = None, certificate_serial: str | None = None) -> dict:
    """The version document; `board` is the validated board configuration (boardconf.validate)."""
    return {
        "device": device,
        "firmware": fw,
        "config": cfg,
        "certificate_serial": certificate_serial,
        "board": board_name,
        "manufacturer": (board or {}).get("manufacturer") or None,
        "model": (board or {}).get("model") or None,
        "sensor": {k: board["sensor"][k] for k in SENSOR_FIELDS if k in board["sensor"]} if board else None,
        "calibration": dict(board["vitals"]) if board else None,
        "board_config_sha256": hashlib.sha256(canonical(board).encode()).hexdigest() if board else None,
    }


def legacy_key(fw: str, cfg: int) -> str:
    return f"{LEGACY}{fw}:{cfg}"


def version_from_store(device: str, key: str, doc_json: str | None) -> DeviceVersion:
    """A stored version, or for a legacy key the version its fw and cfg alone describe."""
    if doc_json is not None:
        return DeviceVersion(device, key, json.loads(doc_json))
    if not key.startswith(LEGACY):
        raise ValueError(f"device {device}: version {key} is named by batches but not stored")
    fw, _, cfg = key[len(LEGACY):].rpartition(":")
    return DeviceVersion.of(describe(device, fw, int(cfg) if cfg.lstrip("-").isdigit() else None))


class DeviceFacts:
    """Builds the device version for each accepted batch; cached, so ingest pays a dict lookup per batch.

    The board comes from the registry (recorded at provisioning) and is read from `boards/<board>.json` with
    the firmware's own schema. A missing or invalid board file is logged once and leaves the board facts out.
    """

    def __init__(self, registry: DeviceRegistry | None, boards: Path = paths.BOARDS):
        self.registry = registry
        self.boards = Path(boards)
        self._versions: dict[tuple, DeviceVersion] = {}
        self._boards: dict[str, tuple[tuple[int, int] | None, dict | None, str | None]] = {}
        self._file_ids: dict[str, int] = {}  # board name -> config id of the receiver's copy (boardconf)

    def version(self, device: str, fw: str, cfg: int) -> DeviceVersion:
        facts = self.registry.description(device) if self.registry is not None else {}
        board_name = facts.get("board")
        board, digest = self._board(board_name) if board_name else (None, None)
        key = (device, fw, cfg, board_name, facts.get("certificate_serial"), digest)
        version = self._versions.get(key)
        if version is None:
            file_id = self._file_ids.get(board_name)
            if board is not None and cfg and file_id is not None and cfg != file_id:
                log.warning("device %s runs board file config id %d, the receiver's %s/%s.json is %d: its FHIR "
                            "Device describes the receiver's copy", device, cfg, self.boards, board_name, file_id)
            version = DeviceVersion.of(describe(device, fw, cfg, board_name=board_name, board=board,
                                                certificate_serial=facts.get("certificate_serial")))
            self._versions[key] = version
        return version

    def _board(self, name: str) -> tuple[dict | None, str | None]:
        """The validated board file and a digest of it, re-read when the file changes (mtime, size)."""
        path = self.boards / f"{name}.json"
        try:
            st = path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        cached = self._boards.get(name)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        board = None
        self._file_ids.pop(name, None)
        if stamp is None:
            log.warning("board file %s is missing: device versions of %s boards carry no board facts", path, name)
        else:
            try:
                data = path.read_bytes()
                self._file_ids[name] = boardconf().config_id(data)
                board = boardconf().validate(json.loads(data.decode()), str(path))
            except (ValueError, OSError) as e:  # BoardError is a ValueError, as is bad JSON
                log.warning("board file %s is not usable, device versions carry no board facts: %s", path, e)
        digest = hashlib.sha256(canonical(board).encode()).hexdigest() if board else None
        self._boards[name] = (stamp, board, digest)
        return board, digest
