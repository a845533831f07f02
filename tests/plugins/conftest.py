"""The plugin tests read the same built history as the report tests (built once per session)."""
from __future__ import annotations

import pytest

from tests.living_review.report.history import History, shared_history


@pytest.fixture(scope="session")
def history() -> History:
    return shared_history()
