"""Test-wide setup: an isolated Airflow home, no network beyond 127.0.0.1.

Airflow reads its configuration at import time, so the environment is set here at
module import, before any test module imports Airflow.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_HOME = Path(os.environ.get("LIVING_REVIEW_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="lr-airflow-"))
os.environ.update({
    "AIRFLOW_HOME": str(_HOME),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
    "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    "LIVING_REVIEW_RETRY_DELAY_SECONDS": "1",
    # Integration runs retry over real sockets; keep the backoff short (unit tests of
    # the backoff itself pass an explicit RetryPolicy).
    "LIVING_REVIEW_HTTP_BACKOFF_BASE": "0.05",
    "GX_ANALYTICS_ENABLED": "False",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
})
os.environ.setdefault("PYTHONPATH", str(ROOT))


_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    """Refuse any connection that leaves the machine: the suite must never call a public API."""
    if isinstance(address, tuple) and address and isinstance(address[0], str):
        host = address[0]
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            raise ConnectionRefusedError(f"test tried to reach {host}: the suite may only use 127.0.0.1")
    return _real_connect(self, address)


socket.socket.connect = _loopback_only  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """A migrated SQLite metadata DB (dag.test() needs one; DagBag checks do not)."""
    marker = _HOME / ".migrated"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=os.environ.copy(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        marker.touch()
    return _HOME
