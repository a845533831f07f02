"""Small helpers shared by the benchmarks: peak memory, timers, child processes, airflow home."""
from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mb() -> float:
    """Current resident set size."""
    return _status_kib("VmRSS") / 1024


def peak_rss_mb() -> float:
    """Peak RSS since the process started, or since the last :func:`reset_peak_rss`."""
    hwm = _status_kib("VmHWM")
    if hwm:
        return hwm / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0), so each stage reports its own peak."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def stage(record: dict[str, Any], name: str) -> Iterator[None]:
    """Record a block's wall and CPU seconds and its own peak RSS under ``record[name]``."""
    reset_peak_rss()
    started, cpu = time.perf_counter(), time.process_time()
    yield
    record[name] = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu,
                    "peak_rss_mb": peak_rss_mb()}


def run_child(module: str, args: list[str], *, env: dict[str, str] | None = None,
              timeout: float = 900) -> dict[str, Any]:
    """Run ``python -m <module> ... --out FILE`` in a fresh process and return the JSON it wrote."""
    with tempfile.TemporaryDirectory(prefix="lr-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, *args, "--out", str(out)]
        child_env = {**os.environ, **(env or {})}
        child_env.setdefault("PYTHONPATH", str(ROOT))
        proc = subprocess.run(cmd, cwd=ROOT, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join(proc.stdout.splitlines()[-40:])
            raise RuntimeError(f"{module} {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
        return json.loads(out.read_text(encoding="utf-8"))


def write_json(data: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def private_airflow_home(prefix: str = "lr-bench-airflow-") -> Path:
    """A throw-away AIRFLOW_HOME holding a copy of the migrated metadata DB.

    The bench's DAG runs then never touch (or lock) the project's ``.airflow`` DB
    that ``make run``/``make demo`` use. Without a migrated DB to copy, one is migrated.
    """
    home = Path(tempfile.mkdtemp(prefix=prefix))
    source_home = Path(os.environ.get("AIRFLOW_HOME") or ROOT / ".airflow")
    source = source_home / "airflow.db"
    if source.is_file():
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(home / "airflow.db")
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
    env = airflow_env(home)
    if not source.is_file():
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env={**os.environ, **env},
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        subprocess.run([sys.executable, "-m", "airflow", "pools", "import", str(ROOT / "include" / "pools.json")],
                       env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return home


def airflow_env(home: Path) -> dict[str, str]:
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "False",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
    }


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
