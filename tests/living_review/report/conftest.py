"""A four-week data directory built by the real pipeline steps, shared by the report and plugin tests."""
from __future__ import annotations

import pytest

from tests.living_review.report.history import History, shared_history


@pytest.fixture(scope="session")
def history() -> History:
    return shared_history()
