"""``python -m include.living_review.cli check-config``: the exit code and what it prints, run as a process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.living_review.test_config import GOOD, alias_bomb

ROOT = Path(__file__).resolve().parents[2]
# The child caps its own heap so a regression dies of MemoryError instead of eating the machine
# (the nine-level bomb reached 2.2 GB before issue 14).
CHILD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_DATA, (1536 * 1024 * 1024, resource.RLIM_INFINITY))
from include.living_review import cli
code = cli.main(["check-config"])
# VmHWM, not ru_maxrss: Linux carries the parent's peak over exec into ru_maxrss (the suite's pytest).
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("maxrss_kb", peak[0], file=sys.stderr)
raise SystemExit(code)
"""


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "LIVING_REVIEW_CONFIG": str(config)})


def test_check_config_passes_a_good_file(tmp_path):
    config = tmp_path / "reviews.yaml"
    config.write_text("reviews:" + GOOD, encoding="utf-8")
    done = check_config(config)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{config}: 1 review(s) valid, 0 problem(s)"


def test_check_config_refuses_a_nine_level_alias_bomb_in_a_few_lines(tmp_path):
    """Issue 14: 635 bytes of aliases in ``doi:`` made check-config reach 2.2 GB and die of MemoryError."""
    config = tmp_path / "reviews.yaml"
    config.write_text(alias_bomb(9), encoding="utf-8")
    assert config.stat().st_size < 1024
    done = check_config(config)
    assert "MemoryError" not in done.stderr
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.strip() == f"{config}: 1 review(s) valid, 1 problem(s)"
    (problem,) = [line for line in done.stderr.splitlines() if not line.startswith("maxrss_kb")]
    assert problem.startswith(f"{config}: reviews[1] (id 'bomb'): expands to more than") and "aliases" in problem
    assert "Fix: write the values out" in problem and len(problem) < 400
    maxrss_mb = int(done.stderr.rsplit("maxrss_kb ", 1)[1]) / 1024
    assert maxrss_mb < 512, maxrss_mb


def test_check_config_refuses_a_schedule_airflow_cannot_parse(tmp_path):
    """Issue 14: ``schedule: "every tuesday"`` got "2 review(s) valid"; Airflow's parser now checks it."""
    config = tmp_path / "reviews.yaml"
    config.write_text("reviews:" + GOOD + '  - {id: tuesdays, title: T, pmid: "1", schedule: "every tuesday"}\n',
                      encoding="utf-8")
    done = check_config(config)
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.strip() == f"{config}: 1 review(s) valid, 1 problem(s)"
    (problem,) = [line for line in done.stderr.splitlines() if not line.startswith("maxrss_kb")]
    assert problem.startswith(f"{config}: reviews[1] (id 'tuesdays').schedule: 'every tuesday' is not a schedule "
                              "Airflow accepts (Exactly 5, 6 or 7 columns")
    assert "Fix: use a cron preset such as @weekly or a cron expression" in problem
