"""The CDDL subset docs/format.md writes its payloads in, parsed so tests can check values against it and
generate values from it (independently of tools/oxilink/sealed.py, which implements the same limits).

Supported: rules `name = type`; maps `{ ? key => type, ... }` with integer keys; arrays `[min*max type]`;
choices `(a / b)`; integer ranges `lo..hi`; integer literals, `true`, `null`; `tstr .regexp "re"`; references
to other rules. Rules using anything else (the COSE envelope) are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TOKEN = re.compile(r'\s*(?:(?P<str>"[^"]*")|(?P<range>-?\d+\.\.-?\d+)|(?P<occ>\d+\*\d+)|(?P<int>-?\d+)'
                    r"|(?P<op>=>|[{}\[\](),/?=])|(?P<ctl>\.[a-z]+)|(?P<name>[A-Za-z][A-Za-z0-9_-]*))")


@dataclass(frozen=True)
class Range:
    low: int
    high: int


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Regexp:
    pattern: str


@dataclass(frozen=True)
class Array:
    min: int
    max: int
    item: Any


@dataclass(frozen=True)
class Choice:
    options: tuple


@dataclass(frozen=True)
class Map:
    entries: tuple  # (key, optional, type)


@dataclass(frozen=True)
class Ref:
    name: str


class Unsupported(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot read {text[pos:pos + 20]!r}")
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens):
        self.t, self.i = tokens, 0

    def peek(self):
        return self.t[self.i] if self.i < len(self.t) else (None, None)

    def take(self, value=None):
        kind, v = self.peek()
        if value is not None and v != value:
            raise Unsupported(f"expected {value!r}, got {v!r}")
        self.i += 1
        return kind, v

    def type(self):
        kind, v = self.peek()
        if v == "{":
            return self.map()
        if v == "[":
            self.take("[")
            kind, occ = self.take()
            if kind != "occ":
                raise Unsupported("arrays need an occurrence min*max")
            low, high = (int(x) for x in occ.split("*"))
            item = self.type()
            self.take("]")
            return Array(low, high, item)
        if v == "(":
            self.take("(")
            options = [self.type()]
            while self.peek()[1] == "/":
                self.take("/")
                options.append(self.type())
            self.take(")")
            return Choice(tuple(options))
        self.take()
        if kind == "range":
            low, high = (int(x) for x in re.match(r"(-?\d+)\.\.(-?\d+)", v).groups())
            return Range(low, high)
        if kind == "int":
            return Literal(int(v))
        if v == "true":
            return Literal(True)
        if v == "null":
            return Literal(None)
        if v == "tstr" and self.peek() == ("ctl", ".regexp"):
            self.take()
            return Regexp(self.take()[1].strip('"'))
        if kind == "name" and v not in ("tstr", "bstr", "uint", "int"):
            return Ref(v)
        raise Unsupported(f"type {v!r}")

    def map(self):
        self.take("{")
        entries = []
        while self.peek()[1] != "}":
            optional = self.peek()[1] == "?"
            if optional:
                self.take("?")
            kind, key = self.take()
            if kind != "int":
                raise Unsupported("map keys must be integers")
            self.take("=>")
            entries.append((int(key), optional, self.type()))
            if self.peek()[1] == ",":
                self.take(",")
        self.take("}")
        return Map(tuple(entries))


def parse(text: str) -> dict[str, Any]:
    """Every supported rule of the ```cddl blocks in a Markdown text."""
    rules: dict[str, Any] = {}
    for block in re.findall(r"```cddl\n(.*?)```", text, re.S):
        body = "\n".join(re.sub(r'("[^"]*")|;.*', lambda m: m.group(1) or "", line) for line in block.splitlines())
        for chunk in re.split(r"\n(?=[a-z][a-z0-9-]* = )", body):
            name, _, rhs = chunk.strip().partition(" = ")
            try:
                p = _Parser(_tokens(rhs))
                rules[name] = p.type()
                if p.i != len(p.t):
                    raise Unsupported("trailing tokens")
            except Unsupported:
                rules.pop(name, None)
    return rules


def load(path: Path) -> dict[str, Any]:
    return parse(path.read_text())


def resolve(rules: dict[str, Any], node: Any) -> Any:
    while isinstance(node, Ref):
        node = rules[node.name]
    return node


def conforms(rules: dict[str, Any], node: Any, value: Any) -> bool:
    """Whether value (as cbor2 decodes it) matches node."""
    node = resolve(rules, node)
    if isinstance(node, Literal):
        return type(value) is type(node.value) and value == node.value
    if isinstance(node, Range):
        return type(value) is int and node.low <= value <= node.high
    if isinstance(node, Regexp):
        return type(value) is str and re.fullmatch(node.pattern, value) is not None
    if isinstance(node, Array):
        return isinstance(value, (list, tuple)) and node.min <= len(value) <= node.max and \
            all(conforms(rules, node.item, v) for v in value)
    if isinstance(node, Choice):
        return any(conforms(rules, o, value) for o in node.options)
    if isinstance(node, Map):
        if not isinstance(value, dict):
            return False
        keys = {k for k, _, _ in node.entries}
        if set(value) - keys:
            return False
        return all((k in value and conforms(rules, t, value[k])) or (opt and k not in value)
                   for k, opt, t in node.entries)
    raise TypeError(node)
