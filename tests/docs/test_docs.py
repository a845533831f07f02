"""The documentation is tested against a real data directory.

One module-scoped fixture runs the real pipeline and digest DAGs (``dag.test()``)
for two weekly logical dates against the local stand-ins of all six APIs:

- week 1 (baseline): the demo corpus plus a PubMed record without a title (quarantined);
- week 2: one new citing paper, one paper no source reports any more, one corrected title.

Then: every ``manifest.json`` written on the way validates against
``docs/manifest.schema.json``; every ```python block of ``docs/analysts.md`` runs with
``DATA_DIR`` set and gives the right answers; ``docs/data-dictionary.md`` names every
column of every table and every manifest key; ``docs/audit-trail.md``'s recipes run.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from include.living_review.storage import Layout
from tests.fakes.corpus import REVIEW, Paper
from tests.fakes.demo import demo_corpus
from tests.fakes.stack import LocalStack
from tests.integration.conftest import DagRunner, apply_env, write_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REVIEW_ID = "peer-support-mental-health"
PIPELINE = "living_review__peer_support_mental_health"
DIGEST = "living_review_digest__peer_support_mental_health"
SOURCES = ["pubmed", "europepmc", "openalex", "opencitations", "semanticscholar", "crossref"]
TODAY = dt.datetime.now(dt.timezone.utc).date()
WEEK1, WEEK2 = TODAY - dt.timedelta(days=7), TODAY

BROKEN_DOI = "10.9999/broken.1"
NEW_DOI = "10.1186/s12888-026-00001-1"
RETITLED_DOI = "10.2196/61234"
RETITLED = "Digital peer support for young adults with early psychosis: a pilot feasibility study."


def broken_paper() -> Paper:
    """Only PubMed knows it, without a title: quarantined (Crossref cannot fill it in)."""
    return Paper(title="", authors=[("Nobody", "N")], journal_abbrev="J Broken", journal="J Broken", year=2025,
                 pmid="39000001", pmcid="PMC39000001", doi=BROKEN_DOI, visible_in={"pubmed"})


def new_paper() -> Paper:
    return Paper(title="Peer support workers in crisis lines: a mixed-methods evaluation.",
                 authors=[("Okafor", "C"), ("Lindqvist", "A"), ("Mehta", "R")],
                 journal_abbrev="BMC Psychiatry", journal="BMC psychiatry", year=TODAY.year, month=TODAY.month,
                 day=1, volume="26", issue="1", pages="101", pmid="41000001", pmcid="PMC12000001", doi=NEW_DOI,
                 openalex_id="W4400000099", pub_types=["Journal Article", "Randomized Controlled Trial"])


@dataclasses.dataclass
class Built:
    data_dir: Path
    manifests: list[tuple[str, dict[str, Any]]]  # (when, manifest.json as read then)
    digests: list[tuple[str, dict[str, Any]]]  # (when, digest.json as read then)
    dropped_doi: str

    def layout(self, day: dt.date) -> Layout:
        return Layout.of(self.data_dir, REVIEW_ID, day)

    def manifest(self, day: dt.date) -> dict[str, Any]:
        return json.loads(self.layout(day).manifest_file.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def built(tmp_path_factory, airflow_db) -> Built:
    root = tmp_path_factory.mktemp("docs")
    data_dir = root / "data"
    week1 = demo_corpus() + [broken_paper()]
    dropped = week1[1]  # a seed paper: no source lists it in week 2
    week2 = [p for p in week1 if p is not dropped] + [new_paper()]
    for i, paper in enumerate(week2):
        if paper.doi == RETITLED_DOI:
            week2[i] = dataclasses.replace(paper, title=RETITLED)
    manifests: list[tuple[str, dict[str, Any]]] = []
    digests: list[tuple[str, dict[str, Any]]] = []
    runner = DagRunner(data_dir)

    def record(when: str, day: dt.date) -> None:
        from include.living_review.digest import digest_status

        layout = Layout.of(data_dir, REVIEW_ID, day)
        manifests.append((when, json.loads(layout.manifest_file.read_text(encoding="utf-8"))))
        digests.append((when, digest_status(layout)))

    # Some fakes (Semantic Scholar, OpenCitations) keep the list they were built with,
    # so the corpus changes in place rather than through LocalStack.set_papers().
    corpus = list(week1)
    with pytest.MonkeyPatch.context() as mp, LocalStack(corpus) as stack:
        apply_env(mp, stack.env())
        mp.setenv("LIVING_REVIEW_DATA_DIR", str(data_dir))
        config = write_config(root / "reviews.yaml", [{
            "id": REVIEW_ID, "title": REVIEW["title"], "doi": REVIEW["doi"], "pmid": REVIEW["pmid"],
            "pmcid": REVIEW["pmcid"], "sources": SOURCES,
            "digest": {"email": ["maintainer@example.org"], "slack": True}}])
        mp.setenv("LIVING_REVIEW_CONFIG", str(config))

        for day, papers in ((WEEK1, week1), (WEEK2, week2)):
            corpus[:] = papers
            states = runner.task_states(runner.run(PIPELINE, day))
            assert set(states.values()) == {"success"}, states
            record(f"pipeline {day}", day)
            runner.run(DIGEST, day)
            record(f"digest {day}", day)
        assert len(stack.smtp.messages) == 2  # the baseline and one with the new paper
    return Built(data_dir, manifests, digests, dropped.doi)


# -- helpers -------------------------------------------------------------------------

def python_blocks(doc: str) -> dict[str, str]:
    """The ```python blocks of a doc, by the name on their first line (``# example: <name>``)."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    named = {}
    for block in blocks:
        first = block.splitlines()[0]
        match = re.fullmatch(r"# example: ([a-z0-9-]+)", first)
        assert match, f"{doc}: every python block starts with '# example: <name>', not {first!r}"
        assert match.group(1) not in named, f"{doc}: two examples named {match.group(1)}"
        named[match.group(1)] = block
    return named


def run_block(doc: str, name: str, code: str, data_dir: Path) -> dict[str, Any]:
    """Exec one documented example with ``DATA_DIR`` set, as the docs' convention says."""
    namespace: dict[str, Any] = {"DATA_DIR": str(data_dir), "__name__": f"docs_example_{name}"}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(code, f"{DOCS / doc}:{name}", "exec"), namespace)
    namespace["_stdout"] = out.getvalue()
    return namespace


def load_schema(name: str = "manifest.schema.json") -> dict[str, Any]:
    import jsonschema

    schema = json.loads((DOCS / name).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def schema_errors(manifest: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def month(day: dt.date) -> str:
    return day.strftime("%Y-%m")


# -- the manifest and its schema -----------------------------------------------------

def test_every_manifest_validates_against_the_schema(built):
    schema = load_schema()
    assert [when.split()[0] for when, _ in built.manifests] == ["pipeline", "digest"] * 2
    for when, manifest in built.manifests:
        assert schema_errors(manifest, schema) == [], when
    # the manifest is the commit record: the digest never rewrites it
    assert built.manifests[0][1] == built.manifests[1][1] and built.manifests[2][1] == built.manifests[3][1]
    # what the digest did is in digest.json, with its own schema
    assert [d["status"] for _, d in built.digests] == ["pending", "sent", "pending", "sent"]
    digest_schema = load_schema("digest.schema.json")
    for when, digest in built.digests[1::2]:
        assert schema_errors(digest, digest_schema) == [], when
    assert "latency" in built.digests[3][1] and "latency" not in built.digests[1][1]  # not for the baseline
    # the top level is closed and complete: every key written is documented and required
    assert set(schema["required"]) == set(schema["properties"]) == set(built.manifest(WEEK2))
    assert schema["additionalProperties"] is False


def test_manifests_hold_the_audit_trail(built):
    first, second = built.manifest(WEEK1), built.manifest(WEEK2)
    assert first["baseline"] and not second["baseline"] and second["previous_snapshot_date"] == WEEK1.isoformat()
    assert set(second["sources"]) == set(SOURCES) - {"crossref"}
    assert second["enrichment"]["source"] == "crossref"
    assert second["counts"]["quarantined"] == 1 and second["counts"]["new"] == 1
    assert second["counts"]["published"] == second["counts"]["after_merge"] - second["counts"]["quarantined"]
    assert second["changes"] == {"added": 1, "updated": 1, "no_longer_reported": 1,
                                 "retracted": 0, "corrected": 0, "preprint_published": 0}
    assert second["coverage"]["union"] == second["counts"]["published"] - 1  # the dropped paper is kept
    for stats in second["sources"].values():
        assert stats["status"] == "ok" and stats["http"]["status_counts"] and stats["query"]
        assert not any("demo-key-not-a-secret" in url or "demo@example.org" in url for url in stats["http"]["urls"])


SCHEMA_DRIFT = {
    "unknown top-level key": lambda m: m.update(run_by="someone"),
    "missing counts": lambda m: m.pop("counts"),
    "wrong manifest version": lambda m: m.update(manifest_version="1.0"),
    "an event file outside the log's naming": lambda m: m["event_files"].append("events.parquet"),
    "a file without its checksum": lambda m: m["files"]["snapshot"].pop("sha256"),
    "unknown source status": lambda m: m["sources"]["pubmed"].update(status="partial"),
    "unknown source": lambda m: m["sources"].update(scopus={"status": "ok", "reason": None}),
    "ok source without its stats": lambda m: m["sources"]["pubmed"].pop("listed"),
    "api key in a URL": lambda m: m["sources"]["openalex"]["http"]["urls"].append(
        "https://api.openalex.org/works?filter=cites:W1&api_key=abc123"),
    "credentials in a URL": lambda m: m["sources"]["pubmed"]["http"]["urls"].append(
        "https://user:secret@eutils.ncbi.nlm.nih.gov/entrez/eutils/elink.fcgi"),
    "secret in a query": lambda m: m["sources"]["europepmc"]["query"].update(email="me@example.org"),
    "extra PRISMA count": lambda m: m["counts"].update(screened=3),
    "negative count": lambda m: m["counts"].update(new=-1),
    "unknown change kind": lambda m: m["changes"].update(removed=0),
    "expectation without severity": lambda m: m["data_quality"]["expectations"][0].pop("severity"),
    "snapshot path outside the layout": lambda m: m["paths"].update(snapshot="/tmp/works.parquet"),
}


@pytest.mark.parametrize("drift", sorted(SCHEMA_DRIFT))
def test_schema_catches_drift(built, drift):
    manifest = copy.deepcopy(built.manifest(WEEK2))
    SCHEMA_DRIFT[drift](manifest)
    assert schema_errors(manifest, load_schema()), f"the schema accepts: {drift}"


DIGEST_DRIFT = {
    "unknown digest status": lambda d: d.update(status="bounced"),
    "digest without channels": lambda d: d.pop("channels"),
    "unknown channel": lambda d: d["channels"].update(pager={"status": "sent"}),
    "unknown channel status": lambda d: d["channels"]["email"].update(status="already_sent"),
}


@pytest.mark.parametrize("drift", sorted(DIGEST_DRIFT))
def test_digest_schema_catches_drift(built, drift):
    digest = copy.deepcopy(built.digests[-1][1])
    DIGEST_DRIFT[drift](digest)
    assert schema_errors(digest, load_schema("digest.schema.json")), f"the schema accepts: {drift}"


def test_schema_accepts_skipped_failed_and_unfinished_sources(tmp_path):
    """The failure paths the DAG runs above do not take, through the real pipeline functions."""
    from include.living_review import pipeline
    from include.living_review.config import ReviewConfig
    from include.living_review.records import Work
    from include.living_review.sources.base import SourceResult, SourceSkipped

    class Listing:
        def fetch_citing(self, review, known, *, cached=None):
            work = Work(title="Peer support in crisis lines: a cohort study.", doi="10.1000/peer.1", pmid="1000001",
                        authors=["Doe J"], journal="J Peer Support", publication_year=2025, sources=["pubmed"],
                        source_ids={"pubmed": "1000001"}, raw='{"PMID": "1000001"}')
            return SourceResult("pubmed", [work], listed=1, query={"elink": {"id": review.pmid}})

    class Skipping:
        def fetch_citing(self, review, known, *, cached=None):
            raise SourceSkipped("an API key is required since Feb 2026")

    class Failing:
        def fetch_citing(self, review, known, *, cached=None):
            raise ConnectionError("connection refused")

    review = ReviewConfig(id=REVIEW_ID, title=REVIEW["title"], doi=REVIEW["doi"], pmid=REVIEW["pmid"],
                          pmcid=REVIEW["pmcid"], sources=["pubmed", "europepmc", "openalex", "semanticscholar"])
    ctx = pipeline.RunContext.create(review, tmp_path / "data", dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc),
                                     "manual__failure-paths")
    pipeline.fetch_source(ctx, "pubmed", Listing())
    pipeline.fetch_source(ctx, "openalex", Skipping())
    with pytest.raises(pipeline.SourceFailed):
        pipeline.fetch_source(ctx, "europepmc", Failing())
    # semanticscholar's task never ran
    pipeline.merge_sources(ctx)
    pipeline.enrich_metadata(ctx, None)
    pipeline.validate(ctx)
    pipeline.publish(ctx)

    manifest = json.loads(ctx.layout.manifest_file.read_text(encoding="utf-8"))
    assert schema_errors(manifest, load_schema()) == []
    assert manifest["partial"] is True and manifest["counts"]["published"] == 1
    assert manifest["sources"]["openalex"]["status"] == "skipped"
    assert manifest["sources"]["europepmc"]["status"] == "failed"
    assert set(manifest["sources"]["semanticscholar"]) == {"status", "reason"}
    assert manifest["enrichment"]["status"] == "skipped"
    from include.living_review.digest import digest_status

    assert digest_status(ctx.layout) == {"status": "pending"}


# -- analysts.md -------------------------------------------------------------------------

ANALYST_EXAMPLES = {
    "pandas-latest", "pandas-latest-file", "pandas-time-travel", "pandas-new-per-month", "pandas-coverage",
    "pandas-quarantine", "pandas-changes", "duckdb-latest", "duckdb-time-travel", "duckdb-new-per-month",
    "duckdb-coverage", "duckdb-quarantine-changes", "pyarrow-snapshots", "pyarrow-months-coverage",
    "pyarrow-quarantine-changes", "manifest",
}


@pytest.fixture(scope="module")
def analyst_results(built) -> dict[str, dict[str, Any]]:
    blocks = python_blocks("analysts.md")
    assert set(blocks) == ANALYST_EXAMPLES
    return {name: run_block("analysts.md", name, code, built.data_dir) for name, code in blocks.items()}


def expected(built: Built) -> dict[str, Any]:
    before, now = built.manifest(WEEK1), built.manifest(WEEK2)
    first_seen = {month(WEEK1): before["counts"]["published"]}
    first_seen[month(WEEK2)] = first_seen.get(month(WEEK2), 0) + now["counts"]["new"]
    return {
        "published": now["counts"]["published"], "published_before": before["counts"]["published"],
        "coverage": {s: n for s, n in now["coverage"].items() if s != "union"},
        "first_seen": first_seen, "changes": now["changes"], "manifest": now,
    }


def test_pandas_examples(built, analyst_results):
    want = expected(built)
    r = analyst_results
    assert r["pandas-latest"]["latest_date"] == WEEK2.isoformat()
    assert len(r["pandas-latest"]["latest"]) == want["published"]
    assert r["pandas-latest"]["latest"]["work_id"].is_unique
    assert r["pandas-latest-file"]["latest_date"] == WEEK2.isoformat()
    assert len(r["pandas-latest-file"]["latest"]) == want["published"]

    travel = r["pandas-time-travel"]
    assert travel["then"] == WEEK1.isoformat() and len(travel["snapshot_then"]) == want["published_before"]
    assert travel["added_since"] == {f"doi:{NEW_DOI}"}

    months = r["pandas-new-per-month"]
    assert months["by_first_seen"].to_dict() == want["first_seen"]
    assert months["by_publication"].sum() == want["published"]  # every work has a publication date here
    assert months["by_publication"][month(TODAY)] >= 1  # the new paper, published this month

    coverage = r["pandas-coverage"]
    assert coverage["per_source"].to_dict() == want["coverage"]
    table = coverage["coverage"].set_index("source")
    assert set(table.index) == set(SOURCES) and set(table["status"]) == {"ok"}
    assert {s: table.loc[s, "works"] for s in want["coverage"]} == want["coverage"]
    assert set(coverage["only_one"].index) <= set(want["coverage"])

    quarantine = r["pandas-quarantine"]["quarantine"]
    assert list(quarantine["work_id"]) == [f"doi:{BROKEN_DOI}"]
    assert list(quarantine["failed_expectations"].iloc[0]) == ["title_not_null"]
    assert "39000001" in r["pandas-quarantine"]["_stdout"]  # the raw PubMed record was decoded

    changes = r["pandas-changes"]["latest_changes"]
    assert changes["change"].value_counts().to_dict() == {k: v for k, v in want["changes"].items() if v}
    assert set(zip(changes["change"], changes["work_id"])) == {
        ("added", f"doi:{NEW_DOI}"), ("updated", f"doi:{RETITLED_DOI}"),
        ("no_longer_reported", f"doi:{built.dropped_doi}")}
    assert RETITLED in r["pandas-changes"]["_stdout"]


def test_duckdb_examples(built, analyst_results):
    want = expected(built)
    r = analyst_results
    assert len(r["duckdb-latest"]["latest"]) == want["published"]
    assert list(r["duckdb-latest"]["history"]["works"]) == [want["published_before"], want["published"]]
    assert len(r["duckdb-time-travel"]["snapshot_then"]) == want["published_before"]

    by_month = r["duckdb-new-per-month"]["by_month"]
    assert dict(zip(by_month["month_first_seen"], by_month["new_works"])) == want["first_seen"]
    assert r["duckdb-new-per-month"]["by_publication_month"]["works"].sum() == want["published"]

    per_source = r["duckdb-coverage"]["per_source"]
    assert dict(zip(per_source["source"], per_source["works"])) == want["coverage"]
    assert len(r["duckdb-coverage"]["coverage"]) == 2 * len(SOURCES)

    quarantine = r["duckdb-quarantine-changes"]["quarantine"]
    assert list(quarantine["work_id"]) == [f"doi:{BROKEN_DOI}"]
    changes = r["duckdb-quarantine-changes"]["changes"]
    latest = changes[changes["snapshot_date"].astype(str) == WEEK2.isoformat()]
    assert latest["change"].value_counts().to_dict() == {k: v for k, v in want["changes"].items() if v}


def test_pyarrow_examples(built, analyst_results):
    want = expected(built)
    r = analyst_results
    snapshots = r["pyarrow-snapshots"]
    assert snapshots["latest"].num_rows == want["published"]
    assert snapshots["snapshot_then"].num_rows == want["published_before"]
    assert snapshots["new_since_then"].column("work_id").to_pylist() == [f"doi:{NEW_DOI}"]

    months = r["pyarrow-months-coverage"]
    assert months["by_month"] == want["first_seen"]
    assert months["per_source"] == want["coverage"]
    assert months["coverage"].num_rows == len(SOURCES)

    qc = r["pyarrow-quarantine-changes"]
    assert qc["quarantine"].column("work_id").to_pylist() == [f"doi:{BROKEN_DOI}"]
    assert qc["changes"].num_rows == sum(want["changes"].values())
    assert r["manifest"]["manifest"] == want["manifest"]


# -- audit-trail.md ------------------------------------------------------------------

def test_audit_trail_python_examples(built):
    blocks = python_blocks("audit-trail.md")
    assert set(blocks) == {"prisma", "audit-python"}
    now = built.manifest(WEEK2)
    text = run_block("audit-trail.md", "prisma", blocks["prisma"], built.data_dir)["text"]
    identified = sum(now["counts"]["identified"].values())
    numbers = {k: int(v) for k, v in re.findall(r"^\s+(Records identified|Duplicate records|Records without any "
                                                  r"identifier|Failed automated data-quality checks|Citing works in "
                                                  r"the living review|new since \S+|no longer reported by any "
                                                  r"source, kept) \(n = (\d+)\)", text, flags=re.M)}
    assert numbers["Records identified"] == identified
    assert numbers["Failed automated data-quality checks"] == 1 and "title_not_null 1" in text
    assert numbers[f"new since {WEEK1.isoformat()}"] == 1
    assert numbers["no longer reported by any source, kept"] == 1
    assert numbers["Citing works in the living review"] == now["counts"]["published"]
    # the flow adds up: identified - removed + kept = included
    assert (identified - numbers["Duplicate records"] - numbers["Records without any identifier"]
            - numbers["Failed automated data-quality checks"] + numbers["no longer reported by any source, kept"]
            ) == now["counts"]["published"]
    for name in ("PubMed", "Europe PMC", "OpenAlex", "OpenCitations", "Semantic Scholar"):
        assert f"    {name} (n = " in text
    assert 'REST search "CITES:32357127_MED"' in text and "API release" in text

    history = run_block("audit-trail.md", "audit-python", blocks["audit-python"], built.data_dir)["history"]
    assert [h["snapshot_date"] for h in history] == [WEEK1.isoformat(), WEEK2.isoformat()]
    assert history[-1]["failed_rules"] == {"title_not_null": 1}


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_audit_trail_jq_recipes(built):
    text = (DOCS / "audit-trail.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) == 2
    manifest = built.layout(WEEK2).manifest_file
    outputs = []
    for block in blocks:
        script = re.sub(r"^M=.*$", f"M='{manifest}'", block, flags=re.M)
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=built.data_dir.parent,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert '"CITES:32357127_MED"' in outputs[0] and "title_not_null\tblocking\tFAIL\t1" in outputs[0]
    assert outputs[1].splitlines()[-1].startswith(f"{WEEK2.isoformat()}\t")


# -- data-dictionary.md ----------------------------------------------------------------

def test_data_dictionary_names_every_column_and_manifest_key(built):
    from include.living_review.records import CITING_WORKS_SCHEMA, QUARANTINE_SCHEMA
    from include.living_review.records import CHANGES_SCHEMA, COVERAGE_SCHEMA
    from include.living_review.snapshot.changes import CHANGE_KINDS, TRACKED_FIELDS

    text = (DOCS / "data-dictionary.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([^`\s]+)`", text))
    wanted = {
        "citing_works": set(CITING_WORKS_SCHEMA.names) | {"review_id", "snapshot_date"},
        "quarantine": set(QUARANTINE_SCHEMA.names),
        "coverage": set(COVERAGE_SCHEMA.names),
        "changes": set(CHANGES_SCHEMA.names) | set(CHANGE_KINDS) | set(TRACKED_FIELDS),
        "manifest": set(built.manifest(WEEK2)) | set(load_schema()["properties"]),
        "counts": set(built.manifest(WEEK2)["counts"]),
    }
    for table, names in wanted.items():
        assert names <= documented, f"data-dictionary.md does not mention {table}: {sorted(names - documented)}"
    for name in ("citing_works.parquet", "rejected.parquet", "changes.parquet", "coverage.parquet",
                 "manifest.json", "ledger.json", "digest.json", "events-<commit>.parquet", ".commit.json",
                 "staging/"):
        assert name in text, name
    # each snapshot column has its own row in the citing_works table
    for name in CITING_WORKS_SCHEMA.names:
        assert re.search(rf"^\| `{name}` \| {re.escape(_type_word(CITING_WORKS_SCHEMA.field(name).type))}",
                         text, flags=re.M), name


def _type_word(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_list(arrow_type):
        return "list<struct<" if pa.types.is_struct(arrow_type.value_type) else "list<string>"
    if pa.types.is_map(arrow_type):
        return "map<string, string>"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp[us, UTC]"
    return {"string": "string", "bool": "bool", "int32": "int32", "date32[day]": "date32",
            "float": "float32"}[str(arrow_type)]


def test_data_dictionary_event_log_example_reads_each_event_once(built):
    """The documented way to read the event log gives every committed event once."""
    blocks = python_blocks("data-dictionary.md")
    events = run_block("data-dictionary.md", "events-read", blocks["events-read"], built.data_dir)["events"]
    appended = [built.manifest(day)["events"] for day in (WEEK1, WEEK2)]
    assert len(events) == sum(sum(counts.values()) for counts in appended) > 0
    assert not events["event_id"].duplicated().any()
    week2 = events[events["run_timestamp"].dt.date == WEEK2]
    assert sorted(week2["kind"]) == sorted(k for k, n in appended[1].items() for _ in range(n))
    assert {"added", "updated", "no_longer_reported"} <= set(week2["kind"])
