"""Real Airflow components on a throwaway PostgreSQL database, as one process group.

::

    with throwaway_database() as url:
        cluster = AirflowCluster(tmp_path / "airflow", url, extra_env={...})
        cluster.migrate()              # airflow db migrate + pools import
        cluster.start()                # scheduler, dag-processor, api-server, triggerer
        try:
            cluster.cli("dags", "unpause", dag_id)
            cluster.wait_for(lambda: ..., timeout=120, what="...")
        finally:
            cluster.stop()             # SIGTERM the group, then SIGKILL; stray task processes too

The test acts only through the ``airflow`` CLI (unpause, trigger, backfill create); it
polls the metadata DB with psycopg2, because each CLI call costs seconds of CPU that, on
a two-core CI machine, the scheduler it waits for would miss (and ``dags list-runs``
does not show the run type).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
T = TypeVar("T")


# -- PostgreSQL --------------------------------------------------------------------

def postgres_unreachable(timeout: int = 3) -> str | None:
    """Why the local PostgreSQL cannot be used, or None when it can."""
    try:
        import psycopg2
    except ImportError as exc:
        return f"psycopg2 is not installed ({exc})"
    try:
        psycopg2.connect(dbname="postgres", connect_timeout=timeout, **PG).close()
    except Exception as exc:
        detail = " ".join(str(exc).split())  # libpq's message spans lines
        return f"PostgreSQL is not reachable on {PG['host']}:{PG['port']} as user {PG['user']!r} ({detail})"
    return None


def _admin_connection() -> Any:
    import psycopg2

    conn = psycopg2.connect(dbname="postgres", connect_timeout=5, **PG)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    return conn


@contextlib.contextmanager
def throwaway_database(prefix: str = "lr_sched_") -> Iterator[str]:
    """Create an empty database, yield its SQLAlchemy URL, drop it afterwards (even on failure)."""
    name = f"{prefix}{secrets.token_hex(4)}"
    conn = _admin_connection()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with conn.cursor() as cur:
            # Killed components may leave connections behind; DROP refuses while any is open.
            for _ in range(10):
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                try:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
                    break
                except Exception:  # a backend reconnected between terminate and drop
                    time.sleep(0.5)
            else:
                warnings.warn(f"could not drop the throwaway database {name!r}; drop it by hand", stacklevel=2)
        conn.close()


def query(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows of ``sql`` on the cluster's metadata DB, as dicts."""
    import psycopg2
    import psycopg2.extras

    dbname = db_url.rsplit("/", 1)[1]
    with contextlib.closing(psycopg2.connect(dbname=dbname, connect_timeout=5, **PG)) as conn:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            rows = [dict(r) for r in cur.fetchall()]
        conn.rollback()
    return rows


# -- the cluster -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def tail(path: Path, lines: int = 60, width: int = 600) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no output)"
    # Task logs are JSON lines of a few kB each; the start of each line is what tells the story.
    return "\n".join(line[:width] for line in text.splitlines()[-lines:])


class AirflowCluster:
    """Scheduler, dag-processor, api-server and triggerer with LocalExecutor, in one process group."""

    def __init__(self, home: Path, db_url: str, *, extra_env: dict[str, str] | None = None):
        self.home = home
        self.db_url = db_url
        self.logs = home / "component-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.marker = f"lr-sched-{secrets.token_hex(6)}"  # finds task processes that leave the group
        self.started_at = time.monotonic()
        self.group: subprocess.Popen[bytes] | None = None
        self.env = self._environment(extra_env or {})

    def _environment(self, extra: dict[str, str]) -> dict[str, str]:
        base_url = f"http://127.0.0.1:{self.port}"
        # Drop the test session's own Airflow settings (SQLite home, unit-test mode, ...).
        env = {k: v for k, v in os.environ.items() if not k.lstrip("_").startswith("AIRFLOW")}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__API__WORKERS": "1",
            # The scheduler's and triggerer's log servers default to fixed ports (8793/8794).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(16),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            # Every file is parsed once at start; re-parsing unchanged files only costs CPU here.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": str(ROOT),
            "GX_ANALYTICS_ENABLED": "False",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "LR_SCHED_MARKER": self.marker,
        })
        if not _importable("asyncpg"):
            # Airflow derives an async URL (postgresql+asyncpg) and imports asyncpg at startup.
            # The official image ships it, this venv does not; the components this test drives
            # never use the async engine, so switch it off instead of failing to import.
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = ""
        env.update(extra)
        return env

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _airflow(self) -> list[str]:
        return [sys.executable, "-m", "airflow"]

    def cli(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command against the cluster's DB; raise with its output on failure."""
        done = subprocess.run([*self._airflow(), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.home)
        if check and done.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {done.returncode}\n"
                                 f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}")
        return done

    def cli_json(self, *args: str, timeout: float = 180) -> Any:
        """``airflow <args> -o json``, parsed; log lines the CLI prints before the JSON are skipped."""
        import json

        out = self.cli(*args, "-o", "json", timeout=timeout).stdout
        for line in reversed(out.splitlines()):
            if line.startswith(("[", "{")):
                return json.loads(line)
        raise AssertionError(f"airflow {' '.join(args)} printed no JSON:\n{out[-4000:]}")

    def migrate(self, pools_file: Path = ROOT / "include" / "pools.json") -> None:
        self.cli("db", "migrate", timeout=300)
        # The fetch tasks run in these pools; a task in a missing pool never starts.
        self.cli("pools", "import", str(pools_file))

    def start(self) -> None:
        """Start every component in the background, in one new session and process group.

        A bash launcher is the session (and group) leader; each component is its child, so
        one ``killpg`` reaches them all. Their pids go to files for the liveness checks.
        """
        airflow = " ".join(shlex.quote(part) for part in self._airflow())
        lines = []
        for component in COMPONENTS:
            log = shlex.quote(str(self.logs / f"{component}.log"))
            pid = shlex.quote(str(self.logs / f"{component}.pid"))
            lines.append(f"{airflow} {component} > {log} 2>&1 & echo $! > {pid}")
        lines.append("wait")
        self.group = subprocess.Popen(["bash", "-c", "\n".join(lines)], env=self.env, cwd=self.home,
                                      start_new_session=True, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def component_pids(self) -> dict[str, int]:
        pids = {}
        for component in COMPONENTS:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pids[component] = int((self.logs / f"{component}.pid").read_text())
        return pids

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the whole group, wait, SIGKILL what is left, then any task process that left the group."""
        if self.group is None:
            return
        pgid = self.group.pid  # the session leader: its pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self._group_members(pgid) or self._strays()):
            self.group.poll()  # reap the launcher, or its zombie keeps the group "alive"
            time.sleep(0.25)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        # Task supervisors put each task in its own process group; end those by pid.
        for pid in self._strays():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.group.wait(timeout=10)
        self.group = None

    @staticmethod
    def _alive(pid: int) -> bool:
        """True for a live process; False when gone or a zombie."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    def _group_members(self, pgid: int) -> list[int]:
        members = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[2]) == pgid and fields[0] != "Z":
                        members.append(int(entry.name))
        return members

    def _strays(self) -> list[int]:
        """Pids of live processes carrying this cluster's marker in their environment."""
        found = []
        needle = f"LR_SCHED_MARKER={self.marker}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0") and self._alive(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def assert_running(self) -> None:
        pids = self.component_pids()
        dead = [c for c in COMPONENTS if c in pids and not self._alive(pids[c])]
        if self.group is None or self.group.poll() is not None or dead:
            raise AssertionError(f"Airflow component(s) exited: {', '.join(dead) or 'all'} "
                                 f"(their output: {self.logs})")

    def api_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def wait_for(self, probe: Callable[[], T], *, timeout: float, what: str, every: float = 1.0) -> T:
        """Call ``probe`` until it returns something truthy; fail after ``timeout`` (or if a component died).

        The failure report gets :meth:`diagnostics` from the hook in ``conftest.py``.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.assert_running()
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(every)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return query(self.db_url, sql, params)

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.query(
            "SELECT run_id, run_type, state, logical_date, backfill_id, start_date, end_date "
            "FROM dag_run WHERE dag_id = %s ORDER BY id", (dag_id,))

    def diagnostics(self, lines: int = 60) -> str:
        """Task states, import errors, the tail of every component's output and of the failed tasks' logs."""
        parts = []
        failed: set[str] = set()
        try:
            for row in self.query("SELECT dag_id, run_id, task_id, state, try_number, pool FROM task_instance "
                                  "ORDER BY dag_id, run_id, task_id"):
                parts.append(f"  ti {row['dag_id']} {row['run_id']} {row['task_id']}: {row['state']} "
                             f"(try {row['try_number']}, pool {row['pool']})")
                if row["state"] in ("failed", "up_for_retry", "upstream_failed"):
                    failed.add(f"run_id={row['run_id']}/task_id={row['task_id']}/")
            for row in self.query("SELECT filename, stacktrace FROM import_error"):
                parts.append(f"  import error in {row['filename']}:\n{row['stacktrace']}")
        except Exception as exc:
            parts.append(f"  (metadata DB not readable: {exc!r})")
        for component in COMPONENTS:
            parts.append(f"===== {component} (last {lines} lines of {self.logs / (component + '.log')}) =====")
            parts.append(tail(self.logs / f"{component}.log", lines))
        task_logs = sorted((self.home / "logs").glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime)
        chosen = [p for p in task_logs if any(key in str(p) for key in failed)][-4:] or task_logs[-2:]
        for path in chosen:
            parts.append(f"===== task log {path.relative_to(self.home)} =====")
            parts.append(tail(path, 40))
        return "\n".join(parts)

