"""Check a raw API payload against ``raw_contracts.yaml`` before it is mapped."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

CONTRACTS_FILE = Path(__file__).with_name("raw_contracts.yaml")
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (float, int), "bool": (bool,),
    "list": (list,), "dict": (dict,), "null": (type(None),),
}


class RawContractError(RuntimeError):
    """The payload lacks a field we map, or it has the wrong type."""

    def __init__(self, source: str, field_path: str, detail: str):
        self.source = source
        self.field_path = field_path
        super().__init__(f"{source}: raw payload contract broken at '{field_path}': {detail}. "
                         "The upstream API format changed (schema drift); update the mapper and "
                         "data_quality/raw_contracts.yaml")


@cache
def contracts() -> dict[str, dict[str, str]]:
    return yaml.safe_load(CONTRACTS_FILE.read_text(encoding="utf-8"))


def _walk(value: Any, parts: list[str], trail: str) -> Iterator[tuple[str, Any, bool]]:
    """Yield (path, value, present) for every node the path reaches."""
    if not parts:
        yield trail, value, True
        return
    head, rest = parts[0], parts[1:]
    key, is_list = (head[:-2], True) if head.endswith("[]") else (head, False)
    if key:
        if not isinstance(value, dict):
            yield (f"{trail}.{key}" if trail else key), None, False
            return
        if key not in value:
            yield (f"{trail}.{key}" if trail else key), None, False
            return
        value, trail = value[key], (f"{trail}.{key}" if trail else key)
    if is_list:
        if not isinstance(value, list):
            yield trail + "[]", value, False
            return
        for index, item in enumerate(value):
            yield from _walk(item, rest, f"{trail}[{index}]")
        return
    yield from _walk(value, rest, trail)


def check_raw_contract(source: str, payload: Any) -> None:
    """Raise :class:`RawContractError` naming the first missing or mistyped field."""
    if _conforms(payload, _contract_tree(source)):
        return
    # Something is off: walk path by path, in the file's order, to name the first break.
    for path, type_spec in contracts()[source].items():
        allowed = _allowed(type_spec)
        for where, value, present in _walk(payload, path.split("."), ""):
            if not present:
                raise RawContractError(source, path, f"field missing at {where or 'top level'}")
            if isinstance(value, bool) and bool not in allowed:
                raise RawContractError(source, path, f"expected {type_spec}, got bool at {where}")
            if not isinstance(value, allowed):
                raise RawContractError(source, path, f"expected {type_spec}, got {type(value).__name__} at {where}")


def _allowed(type_spec: str) -> tuple[type, ...]:
    return tuple(t for name in type_spec.split("|") for t in _TYPES[name.strip()])


@dataclass
class _Node:
    """One place in a payload: the types allowed there, the keys below it, what its list items hold."""

    allowed: list[tuple[type, ...]] = field(default_factory=list)
    keys: dict[str, _Node] = field(default_factory=dict)
    items: _Node | None = None


@cache
def _contract_tree(source: str) -> _Node:
    """The source's paths merged into one tree, so every list is walked once, not once per path."""
    root = _Node()
    for path, type_spec in contracts()[source].items():
        node = root
        for part in path.split("."):
            key, is_list = (part[:-2], True) if part.endswith("[]") else (part, False)
            if key:
                node = node.keys.setdefault(key, _Node())
            if is_list:
                node.items = node.items or _Node()
                node = node.items
        node.allowed.append(_allowed(type_spec))
    return root


def _conforms(value: Any, node: _Node) -> bool:
    """True when every path of the tree is present with an allowed type (the common case, made fast)."""
    for allowed in node.allowed:
        if not isinstance(value, allowed) or ((value is True or value is False) and bool not in allowed):
            return False
    if node.keys:
        if not isinstance(value, dict):
            return False
        for key, child in node.keys.items():
            if key not in value or not _conforms(value[key], child):
                return False
    if node.items is not None:
        if not isinstance(value, list):
            return False
        items = node.items
        for item in value:
            if not _conforms(item, items):
                return False
    return True
