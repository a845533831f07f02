"""Issue 14: a hostile or wrong ``reviews.yaml`` and damaged files of the data directory.

Each failure names the file, the field (or the run) and the fix, at the level an
operator meets it: the DAG folder as the DAG processor fills it (a ``DagBag``, in a
child process whose heap is capped where the failure used to be a memory blow-up),
``check-config``, and the real DAGs through ``dag.test()``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.living_review.test_config import GOOD, alias_bomb

ROOT = Path(__file__).resolve().parents[2]
GOOD_DAGS = {"living_review__peer_support_mental_health", "living_review_digest__peer_support_mental_health"}

DAGBAG_CHILD = textwrap.dedent("""
    import json, resource, sys
    # A regression dies of MemoryError here instead of eating the machine (the bomb reached 2.2 GB).
    resource.setrlimit(resource.RLIMIT_DATA, (1536 * 1024 * 1024, resource.RLIM_INFINITY))
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(sys.argv[1])
    print(json.dumps({"dag_ids": sorted(bag.dag_ids), "import_errors": bag.import_errors}))
""")


def fill_dagbag(config: Path) -> dict[str, Any]:
    """Fill a DagBag from ``dags/`` in a child process with ``config``; its DAG ids and import errors."""
    done = subprocess.run([sys.executable, "-c", DAGBAG_CHILD, str(ROOT / "dags")], cwd=ROOT, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "LIVING_REVIEW_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- item 1: a YAML alias bomb ---------------------------------------------------------
def test_an_alias_bomb_is_one_short_import_error_and_the_other_reviews_dags_load(tmp_path):
    """Nine levels of aliases in ``doi:`` (733 bytes) timed out all three DAG files; now only the bomb is refused."""
    config = tmp_path / "reviews.yaml"
    config.write_text(alias_bomb(9), encoding="utf-8")
    bag = fill_dagbag(config)
    assert GOOD_DAGS <= set(bag["dag_ids"])
    assert not [d for d in bag["dag_ids"] if "bomb" in d]
    (path, message), = bag["import_errors"].items()
    assert path.endswith("living_review_config_check.py")
    assert len(message) < 2000, message[:2000]
    assert f"{config}: reviews[1] (id 'bomb'): expands to more than" in message
    assert "Fix: write the values out" in message


# -- item 2: a schedule Airflow cannot parse -------------------------------------------
def test_a_bad_schedule_is_an_import_error_naming_the_review_and_neither_of_its_dags_loads(tmp_path, monkeypatch):
    """``schedule: "every tuesday"`` failed living_review.py with a bare AirflowTimetableInvalid naming nothing,
    while that review's digest DAG still loaded."""
    from airflow.dag_processing.dagbag import DagBag

    config = tmp_path / "reviews.yaml"
    config.write_text("reviews:" + GOOD + '  - {id: tuesdays, title: T, pmid: "1", schedule: "every tuesday"}\n'
                      '  - {id: mondays, title: M, pmid: "2", schedule: "0 6 * * 1"}\n', encoding="utf-8")
    monkeypatch.setenv("LIVING_REVIEW_CONFIG", str(config))
    bag = DagBag(str(ROOT / "dags"))
    assert GOOD_DAGS | {"living_review__mondays", "living_review_digest__mondays"} <= set(bag.dag_ids)
    assert not [d for d in bag.dag_ids if "tuesdays" in d]
    (path, message), = bag.import_errors.items()
    assert path.endswith("living_review_config_check.py")
    assert (f"{config}: reviews[1] (id 'tuesdays').schedule: 'every tuesday' is not a schedule Airflow "
                       "accepts (Exactly 5, 6 or 7 columns has to be specified for iterator expression.). "
                       "Fix: use a cron preset such as @weekly or a cron expression.") in message
    assert bag.dags["living_review__mondays"].timetable.expression == "0 6 * * 1"
