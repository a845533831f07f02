"""The ground floor: the ``Work`` record, every Parquet schema, ids and text normalization.

Nothing here does I/O; every stage above imports from here. The names below load
lazily (PEP 562): the DAG files import ``records.ids`` through the config at parse
time, and must not pay for pyarrow there.
"""
from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    **dict.fromkeys(("CHANGES_SCHEMA", "CITING_WORKS_SCHEMA", "COVERAGE_SCHEMA", "EVENTS_SCHEMA", "INCLUDED_STUDIES_SCHEMA", "MERGED_SCHEMA",
                     "QUARANTINE_SCHEMA", "STAGED_SCHEMA", "VERSION_TYPE"), "schemas"),
    **dict.fromkeys(("WORK_FIELDS", "Work", "table_to_works", "works_to_table"), "work"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value
