"""docs/reliability.md names real tests: every ``tests/...py::name`` it cites exists."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
NODE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def test_every_test_the_doc_cites_exists():
    cited = set(NODE.findall(DOC.read_text(encoding="utf-8")))
    assert len(cited) > 60
    missing = []
    for path, name in sorted(cited):
        file = ROOT / path
        defined = {node.name for node in ast.walk(ast.parse(file.read_text(encoding="utf-8")))
                   if isinstance(node, ast.FunctionDef)} if file.exists() else set()
        if name not in defined:
            missing.append(f"{path}::{name}")
    assert missing == []


def test_every_reliability_test_is_cited():
    text = DOC.read_text(encoding="utf-8")
    for file in sorted((ROOT / "tests" / "reliability").glob("test_*.py")):
        if file.name == Path(__file__).name:
            continue
        for node in ast.parse(file.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and \
                    node.name != "test_dns_guard_is_active":
                assert f"{file.relative_to(ROOT)}::{node.name}" in text, f"{file.name}::{node.name} is not in the doc"
