"""Mutation testing of the modules where a quiet bug costs the most: ``make mutation``.

    python -m scripts.mutation                  # every target below, one after the other
    python -m scripts.mutation ids changes      # some of them
    python -m scripts.mutation --list           # the targets and their test selections
    python -m scripts.mutation --jobs 1         # mutmut workers (default 2: the machine's cores)
    python -m scripts.mutation --report-only    # the last run's report again (after editing the equivalents)

Each target runs in its own mutmut workspace, ``.mutation/<target>/`` (rebuilt every
time; ``mutants/`` there is mutmut's copy of ``include/`` with the mutants built in),
against its own small selection of fast unit tests. Within that selection mutmut runs,
for each mutant, only the tests that call the mutated function. The tool is mutmut 3
(``requirements-dev.txt``): it forks per mutant instead of starting pytest and pyarrow
again, so a target takes seconds to a few minutes on two cores.

The report gives, per file, the mutants mutmut made, those documented as equivalent
(``scripts/mutation_equivalent.toml``, each with the reason), the killed ones and the
score ``killed / (mutants - equivalent)``; then each surviving mutant with its diff.
The exit status is 1 when a file scores under ``--min-score`` (90).

To look at one mutant afterwards: ``cd .mutation/<target> && ../../.venv/bin/python -m
mutmut show <name>`` (or ``mutmut apply <name>`` there to try a test against it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"
EQUIVALENT_FILE = ROOT / "scripts" / "mutation_equivalent.toml"
# What a workspace needs besides include/ (mutmut copies tests/ itself): data_quality is
# imported by the sources, and pytest.ini makes mutants/ the tests' import root.
ALSO_COPY = ("data_quality", "pytest.ini")
# Log wording is not behaviour: the few messages that matter are asserted by their tests,
# the rest would only add mutants that no sensible test kills.
DO_NOT_MUTATE_PATTERNS = (r"^\s*log\.(debug|info|warning|error|exception)\(",)
DETECTED = {"killed", "timeout", "segfault", "caught by type check"}


@dataclass(frozen=True)
class Target:
    files: tuple[str, ...]
    tests: tuple[str, ...]
    # Only these functions' mutants are run (all of the file's when empty).
    functions: tuple[str, ...] = ()


INC = "include/living_review"
TESTS = "tests/living_review"
TARGETS: dict[str, Target] = {
    "ids": Target(files=(f"{INC}/records/ids.py",), tests=(f"{TESTS}/records/",)),
    "storage": Target(
        files=tuple(f"{INC}/storage/{name}.py" for name in ("commit", "committed", "atomic", "locks")),
        tests=(f"{TESTS}/storage/",)),
    "delivery": Target(
        files=(f"{INC}/digest/delivery.py",),
        tests=(f"{TESTS}/digest/test_delivery.py", f"{TESTS}/digest/test_delivery_ledger.py")),
    "http-scrub": Target(
        files=(f"{INC}/sources/http.py", f"{INC}/redact.py"),
        tests=(f"{TESTS}/sources/test_http.py", f"{TESTS}/sources/test_http_secrets.py",
               f"{TESTS}/digest/test_channels.py"),
        functions=("redact_url", "secret_values", "scrub", "_network_reason", "_short", "drop_secrets_on_redirect",
                   "scrub_secrets", "webhook_secrets", "scrub_webhook")),
    "changes": Target(
        files=(f"{INC}/snapshot/changes.py", f"{INC}/snapshot/events.py"),
        tests=(f"{TESTS}/snapshot/test_changes.py", f"{TESTS}/snapshot/test_changes_between.py",
               f"{TESTS}/snapshot/test_events.py")),
}


@dataclass
class FileScore:
    path: str
    statuses: dict[str, str] = field(default_factory=dict)  # mutant name -> mutmut status
    equivalent: dict[str, str] = field(default_factory=dict)  # mutant name -> why
    diffs: dict[str, str] = field(default_factory=dict)

    @property
    def counted(self) -> list[str]:
        return [name for name in self.statuses if name not in self.equivalent]

    @property
    def killed(self) -> int:
        return sum(1 for name in self.counted if self.statuses[name] in DETECTED)

    @property
    def survivors(self) -> list[str]:
        return [name for name in self.counted if self.statuses[name] not in DETECTED]

    @property
    def score(self) -> float:
        return 100.0 * self.killed / len(self.counted) if self.counted else 100.0


def function_of(mutant: str) -> str:
    """``pkg.mod.xǁClassǁmethod__mutmut_3`` -> ``Class.method``; ``pkg.mod.x_name__mutmut_1`` -> ``name``."""
    tail = mutant.rpartition(".")[2].rpartition("__mutmut_")[0]
    if tail.startswith("xǁ"):
        return tail[2:].replace("ǁ", ".")
    return tail.removeprefix("x_")


def setup_cfg(target: Target) -> str:
    def block(key: str, values: tuple[str, ...]) -> str:
        return f"{key} =\n" + "".join(f"    {value}\n" for value in values)
    return ("[mutmut]\n" + "source_paths = include\n" + block("only_mutate", target.files)
            + block("pytest_add_cli_args_test_selection", target.tests) + block("also_copy", ALSO_COPY)
            + block("do_not_mutate_patterns", DO_NOT_MUTATE_PATTERNS) + "use_git_change_detection = false\n")


def prepare(name: str, target: Target) -> Path:
    workspace = WORK / name
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    for entry in ("include", "tests", *ALSO_COPY):
        (workspace / entry).symlink_to(ROOT / entry)
    (workspace / "setup.cfg").write_text(setup_cfg(target), encoding="utf-8")
    return workspace


def run_mutmut(name: str, target: Target, workspace: Path, jobs: int) -> int:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the original tree must not be importable
    env["LIVING_REVIEW_TEST_AIRFLOW_HOME"] = str(workspace / "airflow-home")
    (workspace / "airflow-home").mkdir()
    module_names = [f.removesuffix(".py").replace("/", ".") for f in target.files]
    patterns = [f"{module}.x_{function}__mutmut_*" for module in module_names for function in target.functions]
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *patterns]
    with open(workspace / "mutmut.log", "w", encoding="utf-8") as log_file:
        return subprocess.run(command, cwd=workspace, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                              check=False).returncode


def load_equivalents() -> list[dict[str, str]]:
    if not EQUIVALENT_FILE.exists():
        return []
    return tomllib.loads(EQUIVALENT_FILE.read_text(encoding="utf-8")).get("equivalent", [])


def added_lines(diff: str) -> str:
    """The mutated line(s) of a mutmut diff, whitespace-trimmed and joined by " / "."""
    return " / ".join(line[1:].strip() for line in diff.splitlines()
                      if line.startswith("+") and not line.startswith("+++"))


def collect(target: Target, workspace: Path, equivalents: list[dict[str, str]]) -> list[FileScore]:
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    scores = []
    previous = Path.cwd()
    os.chdir(workspace)  # mutmut resolves its config and mutants/ from the working directory
    reset_config()
    try:
        for path in target.files:
            meta = json.loads((workspace / "mutants" / f"{path}.meta").read_text(encoding="utf-8"))
            file_score = FileScore(path)
            for mutant, code in sorted(meta["exit_code_by_key"].items(), key=lambda kv: natural(kv[0])):
                if target.functions and function_of(mutant) not in target.functions:
                    continue
                status = status_by_exit_code[code]
                file_score.statuses[mutant] = status
                if status in DETECTED:
                    continue
                try:
                    diff = get_diff_for_mutant(mutant, path=path)
                except Exception as exc:  # noqa: BLE001 - a report line, not a reason to stop
                    diff = f"(no diff: {exc}; see `mutmut show {mutant}`)"
                file_score.diffs[mutant] = diff
                mutated = added_lines(diff)
                for entry in equivalents:
                    if entry["file"] == path and entry["function"] == function_of(mutant) \
                            and " ".join(entry["mutant"].split()) == " ".join(mutated.split()):
                        file_score.equivalent[mutant] = entry["why"]
                        entry["used"] = "yes"
                        break
            scores.append(file_score)
    finally:
        os.chdir(previous)
    return scores


def changed_lines(diff: str) -> list[str]:
    """The removed and added lines of a mutmut diff (no file names, hunk headers or context)."""
    return [line for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))] or diff.splitlines()


def natural(name: str) -> tuple[str, int]:
    head, _, number = name.rpartition("__mutmut_")
    return head, int(number) if number.isdigit() else 0


def report(name: str, scores: list[FileScore], seconds: float, *, verbose: bool) -> None:
    print(f"\n== {name} ({seconds:.0f} s)")
    print(f"   {'file':<46} {'mutants':>7} {'equiv':>5} {'killed':>6} {'left':>5} {'score':>6}")
    for s in scores:
        print(f"   {s.path.removeprefix(INC + '/'):<46} {len(s.statuses):>7} {len(s.equivalent):>5} "
              f"{s.killed:>6} {len(s.survivors):>5} {s.score:>5.1f}%")
    for s in scores:
        if s.survivors:
            print(f"\n   surviving in {s.path}:")
        for mutant in s.survivors:
            print(f"   {s.statuses[mutant].upper()} {mutant.rpartition('.')[2]} ({function_of(mutant)})")
            print("\n".join("      " + line for line in changed_lines(s.diffs[mutant])))
        if verbose:
            for mutant, why in s.equivalent.items():
                print(f"   equivalent {mutant.rpartition('.')[2]} ({function_of(mutant)}): {why}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"default: all ({', '.join(TARGETS)})")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATION_JOBS", "2")))
    parser.add_argument("--min-score", type=float, default=90.0)
    parser.add_argument("--list", action="store_true", help="print the targets and their tests, run nothing")
    parser.add_argument("--show-equivalent", action="store_true", help="also print each equivalent mutant's reason")
    parser.add_argument("--report-only", action="store_true",
                        help="print the last run's results again (after editing the equivalent list), run nothing")
    args = parser.parse_args(argv)
    names = args.targets or list(TARGETS)
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if args.list:
        for name in names:
            target = TARGETS[name]
            print(f"{name}: {' '.join(target.files)}" + (f" ({', '.join(target.functions)})" if target.functions else ""))
            print(f"    tests: {' '.join(target.tests)}")
        return 0
    equivalents = load_equivalents()
    started = time.monotonic()
    low = []
    for name in names:
        target = TARGETS[name]
        missing = [t for t in target.tests if not (ROOT / t).exists()]
        if missing:
            print(f"== {name}: no {', '.join(missing)}; running without", file=sys.stderr)
            target = Target(target.files, tuple(t for t in target.tests if t not in missing), target.functions)
        began = time.monotonic()
        workspace = WORK / name
        if args.report_only:
            if not (workspace / "mutants").is_dir():
                print(f"== {name}: no earlier run in {workspace}", file=sys.stderr)
                return 2
            code, log_text = 0, ""
        else:
            workspace = prepare(name, target)
            print(f"-- {name}: mutmut running ({workspace / 'mutmut.log'})", flush=True)
            code = run_mutmut(name, target, workspace, args.jobs)
            log_text = (workspace / "mutmut.log").read_text(errors="replace")
        if code != 0 and "could not find any test case for any mutant" in log_text:
            print(f"== {name}: no test of the selection calls any mutated function", file=sys.stderr)
        elif code != 0:
            print(f"== {name}: mutmut exited {code}; the end of {workspace / 'mutmut.log'}:", file=sys.stderr)
            print("\n".join(log_text.splitlines()[-40:]),
                  file=sys.stderr)
            return code
        scores = collect(target, workspace, equivalents)
        report(name, scores, time.monotonic() - began, verbose=args.show_equivalent)
        stale = [e for e in equivalents if e["file"] in target.files and "used" not in e
                 and (not target.functions or e["function"] in target.functions)]
        for entry in stale:  # the code changed under it: the mutant is gone or reported again
            print(f"   unused equivalent entry: {entry['function']}: {entry['mutant']}")
        low += [s.path for s in scores if s.score < args.min_score]
    print(f"\nmutation: {len(names)} target(s) in {time.monotonic() - started:.0f} s", end="")
    print(f"; under {args.min_score:.0f}%: {', '.join(low)}" if low else f"; every file at {args.min_score:.0f}% or more")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
