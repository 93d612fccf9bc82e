"""Default places of the receiver's files: data under var/ and keys under secrets/ (both git-ignored)."""

from __future__ import annotations

import os
from pathlib import Path

from ..paths import ROOT, VAR

SECRETS = Path(os.environ.get("OXILINK_SECRETS", ROOT / "secrets"))  # the same root as provision.secrets_root()

RECEIVER_VAR = VAR / "receiver"
DEFAULT_DB = RECEIVER_VAR / "readings.sqlite"
DEFAULT_AUDIT = RECEIVER_VAR / "audit.log"
DEFAULT_PATIENTS = RECEIVER_VAR / "patients.json"
DEFAULT_REGISTRY = SECRETS / "devices.json"
PKI = SECRETS / "pki"


def ensure_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
