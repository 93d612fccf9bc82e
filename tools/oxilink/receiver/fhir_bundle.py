"""How exported resources are written: NDJSON (one resource a line, references by id) or one FHIR transaction
Bundle whose entries are conditional creates.

In the Bundle every entry is `POST <type>` with `ifNoneExist: identifier=<system>|<value>` on the resource's
stable identifier, and a `fullUrl` of `urn:uuid:<uuid5 of that identifier>` that the other entries use as
their reference: a server creates what it does not have yet and points the references at what it already
has, so importing the same span again creates nothing. Resources carry no id there (the server assigns it).
Nothing in the output depends on when or where it was written, so the same span exports byte for byte the
same; the Bundle has one entry per line so that a difference is a readable diff.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import TextIO

from .fhir import Key, logical_reference

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:oxilink")


def _compact(value: dict) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _search_token(text: str) -> str:
    """A token for a FHIR search value: its special characters escaped with a backslash."""
    for c in "\\|,$":
        text = text.replace(c, "\\" + c)
    return text


class NdjsonWriter:
    def __init__(self, out: TextIO):
        self.out = out
        self.counts: Counter = Counter()

    @staticmethod
    def refer(key: Key) -> str:
        return logical_reference(key)

    def add(self, resource: dict, key: Key) -> None:
        self.out.write(_compact(resource) + "\n")
        self.counts[key.type] += 1

    def close(self) -> None:
        pass


class TransactionWriter:
    def __init__(self, out: TextIO):
        self.out = out
        self.counts: Counter = Counter()

    @staticmethod
    def refer(key: Key) -> str:
        return f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{key.type}|{key.system}|{key.value}')}"

    def add(self, resource: dict, key: Key) -> None:
        entry = {
            "fullUrl": self.refer(key),
            "resource": {k: v for k, v in resource.items() if k != "id"},
            "request": {"method": "POST", "url": key.type,
                        "ifNoneExist": f"identifier={_search_token(key.system)}|{_search_token(key.value)}"},
        }
        self.out.write(('{"resourceType":"Bundle","type":"transaction","entry":[\n' if not self.counts else ",\n")
                       + _compact(entry))
        self.counts[key.type] += 1

    def close(self) -> None:
        # FHIR JSON has no empty arrays: a Bundle with nothing in it has no `entry` at all.
        self.out.write("\n]}\n" if self.counts else '{"resourceType":"Bundle","type":"transaction"}\n')
