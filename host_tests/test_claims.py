"""docs/claims.md cannot rot: every row names at least one test, every test it names exists, and every
document the project ships (README.md, docs/*.md) has its section, so a new document or a renamed test
fails here until the table says which test proves what."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TEST_REF = re.compile(r"`(test_\w+\.py)::(test_\w+)`")
SECTION = re.compile(r"^## (\S+\.md)\s*$", re.M)


def defined_tests(path: Path) -> set[str]:
    return {node.name for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def claim_rows(text: str) -> dict[str, list[tuple[str, list[tuple[str, str]]]]]:
    """{document: [(claim, [(test file, test name), ...]), ...]} from the tables under each `## doc` heading."""
    sections: dict[str, list] = {}
    heads = list(SECTION.finditer(text))
    for head, nxt in zip(heads, [*heads[1:], None], strict=True):
        body = text[head.end():nxt.start() if nxt else len(text)]
        rows = [line for line in body.splitlines() if line.startswith("|")][2:]  # past header and rule
        sections[head.group(1)] = [(row.split("|")[1].strip(), TEST_REF.findall(row)) for row in rows]
    return sections


def test_every_claim_names_tests_that_exist(repo):
    sections = claim_rows((repo / "docs" / "claims.md").read_text())
    documents = {"README.md", *(f"docs/{p.name}" for p in (repo / "docs").glob("*.md"))}
    assert set(sections) == documents, (f"sections missing for {sorted(documents - set(sections))}, "
                                        f"for no document: {sorted(set(sections) - documents)}")
    tests: dict[str, set[str]] = {}
    problems = []
    for doc, rows in sections.items():
        assert rows, f"docs/claims.md: section {doc} has no rows"
        for claim, refs in rows:
            if not refs:
                problems.append(f"{doc}: {claim!r} names no test")
            for file, name in refs:
                path = repo / "host_tests" / file
                if file not in tests:
                    tests[file] = defined_tests(path) if path.exists() else set()
                if name not in tests[file]:
                    problems.append(f"{doc}: {claim!r} names {file}::{name}, which does not exist")
    assert not problems, "docs/claims.md:\n" + "\n".join(problems)
    assert sum(len(rows) for rows in sections.values()) >= 100  # the table is the whole list, not a sample


def test_the_checker_finds_a_missing_test_and_a_row_without_one(repo):
    text = ("## README.md\n\n| claim | tests |\n|---|---|\n"
            "| real | `test_claims.py::test_every_claim_names_tests_that_exist` |\n"
            "| gone | `test_claims.py::test_nothing_here` |\n| bare | none |\n")
    rows = claim_rows(text)["README.md"]
    assert [claim for claim, refs in rows if not refs] == ["bare"]
    names = defined_tests(repo / "host_tests" / "test_claims.py")
    assert [name for _, refs in rows for _, name in refs if name not in names] == ["test_nothing_here"]
