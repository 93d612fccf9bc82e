"""Facts the host shares with the firmware, read from the firmware's own files so there is one truth for each.

- quality_flags(): the signal-quality bits and their names, from `REASONS` in firmware/vitals.py (gate_flags():
  the motion gate's criteria, from `GATES`). That module imports `micropython` and cannot run on CPython, so
  its source is parsed (ast), not imported.
- boardconf(): firmware/boardconf.py itself (plain Python on both sides): the board-file schema, its defaults
  and validate(), so the receiver reads a board file exactly as the device does.
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache
from types import ModuleType

from . import paths


@cache
def quality_flags() -> tuple[tuple[int, str], ...]:
    """((bit, name), ...) in the firmware's order, e.g. ((1, "no_finger"), (2, "saturated"), ...)."""
    return _vitals_table("REASONS")


@cache
def gate_flags() -> tuple[tuple[int, str], ...]:
    """The motion gate's criteria as ((bit, name), ...), e.g. ((1, "pulse_lost"), (2, "aperiodic"), ...)."""
    return _vitals_table("GATES")


def _vitals_table(table: str) -> tuple[tuple[int, str], ...]:
    source = paths.FIRMWARE / "vitals.py"
    tree = ast.parse(source.read_text(), str(source))
    consts: dict[str, int] = {}
    reasons = None
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name, value = node.targets[0].id, node.value
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "const"
                and len(value.args) == 1 and isinstance(value.args[0], ast.Constant)):
            consts[name] = value.args[0].value
        elif name == table and isinstance(value, ast.Tuple):
            reasons = value
    if reasons is None:
        raise RuntimeError(f"{source}: no {table} table of (FLAG, name) pairs")
    flags = []
    for pair in reasons.elts:
        if not (isinstance(pair, ast.Tuple) and len(pair.elts) == 2 and isinstance(pair.elts[0], ast.Name)
                and isinstance(pair.elts[1], ast.Constant) and pair.elts[0].id in consts):
            raise RuntimeError(f"{source}:{pair.lineno}: {table} entries must be (CONST_NAME, \"name\")")
        flags.append((consts[pair.elts[0].id], pair.elts[1].value))
    return tuple(flags)


def quality_names(quality: int) -> list[str]:
    """Names of the flags set in a quality mask; bits the firmware does not define as 0x.. hex."""
    flags = quality_flags()
    known = sum(bit for bit, _ in flags)
    return [name for bit, name in flags if quality & bit] + ([f"0x{quality & ~known:x}"] if quality & ~known else [])


@cache
def boardconf() -> ModuleType:
    source = paths.FIRMWARE / "boardconf.py"
    spec = importlib.util.spec_from_file_location("oxilink_firmware_boardconf", source)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"{source}: cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
