"""Processing throughput: raw API pages -> normalize -> merge -> enrich -> validate -> publish.

``python -m bench.bench_processing --records 100000 [--rerun] [--profile] [--out FILE]``

The real pipeline functions run on a temporary data directory, exactly as the DAG's
tasks call them (``pipeline.fetch_source`` per source, ``merge_sources``,
``enrich_metadata``, ``validate``, ``publish``). Only the network is replaced: each
client's ``http`` replays response bodies rendered beforehand by the fake servers'
own renderers (``tests/fakes``), written to disk, so "normalize" covers what a fetch
task does after a body arrives: parse (JSON or PubMed XML), check the raw contract,
map onto ``Work``, dedupe and stage the Parquet file.

Papers come from ``bench.bench_merge.papers`` (long-tailed author names, unicode
titles of 6-24 words) and appear in five sources with ``bench_merge.VISIBILITY``;
PubMed lists only papers with a PMID and a PMCID (as its cited-by does). Semantic
Scholar records get the same variants as in ``bench_merge`` (title case, 5% without
external ids, so only the title can join them).

The floor is a plain ``pyarrow`` write (zstd, as the pipeline writes) plus read of
the published snapshot table, measured in the same process.
"""
from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import pstats
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, peak_rss_mb, remove_tree, reset_peak_rss, rss_mb, stage, write_json

RUN_DATE = dt.datetime(2026, 11, 16, tzinfo=dt.timezone.utc)
SOURCES = ("pubmed", "europepmc", "openalex", "opencitations", "semanticscholar")
EFETCH_BATCH = 200
# Expected records per paper with bench_merge.VISIBILITY when PubMed needs a PMID and a PMCID.
RECORDS_PER_PAPER = 0.85 * 0.7 * 0.5 + 0.70 + 0.90 + 0.55 + 0.70
ABSTRACT_WORDS = (120, 260)
# Peak RSS seen inside timed sub-calls (each resets the kernel's counter to get its own peak).
_PEAK_CARRY: list[float] = [0.0]


# -- synthetic raw pages -----------------------------------------------------------

def corpus(n_records: int, seed: int = 7) -> tuple[list[Any], dict[str, list[Any]]]:
    """Papers and, per source, the papers that source lists (about ``n_records`` in all)."""
    from bench.bench_merge import VISIBILITY, WORDS, papers
    from tests.fakes.corpus import Paper

    rng = random.Random(seed)
    n_papers = max(1, round(n_records / RECORDS_PER_PAPER))
    n_families = max(50, n_papers // 6)
    out: list[Paper] = []
    for p in papers(n_papers, rng, n_families):
        authors = [tuple(a.rsplit(" ", 1)) if " " in a else (a, "") for a in p["authors"]]
        start = rng.randint(1, 1500)
        out.append(Paper(
            title=p["title"] + ".", authors=authors, journal_abbrev=p["abbrev"], journal=p["journal"],
            year=p["year"], month=p["date"].month, day=p["date"].day,
            volume=str(rng.randint(1, 60)), issue=str(rng.randint(1, 12)), pages=f"{start}-{start + rng.randint(3, 20)}",
            pmid=p["pmid"], pmcid=p["pmcid"], doi=p["doi"], openalex_id=p["openalex"], s2_paper_id=p["s2"],
            omid=p["omid"],
            pub_types=rng.choice([["Journal Article"], ["Journal Article", "Review"],
                                  ["Journal Article", "Randomized Controlled Trial"]]),
            abstract=" ".join(rng.choice(WORDS) for _ in range(rng.randint(*ABSTRACT_WORDS))).capitalize() + ".",
        ))
    visible: dict[str, list[Paper]] = {s: [] for s in SOURCES}
    for paper in out:
        for source, chance in VISIBILITY.items():
            if rng.random() < chance and (source != "pubmed" or (paper.pmid and paper.pmcid)):
                visible[source].append(paper)
    return out, visible


def render_pages(visible: dict[str, list[Any]], directory: Path, seed: int = 7) -> dict[str, dict[str, list[Path]]]:
    """Write every response body a real fetch would receive; returns source -> path key -> files."""
    from include.living_review.sources.openalex import SELECT_FIELDS
    from include.living_review.sources.semanticscholar import FIELDS
    from tests.fakes.corpus import REVIEW
    from tests.fakes.europepmc import VERSION, core_record
    from tests.fakes.europepmc import encode_cursor as epmc_cursor
    from tests.fakes.eutils import ELINK_HEAD, PUBMED_HEAD, pubmed_article_xml
    from tests.fakes.openalex import encode_cursor as oa_cursor
    from tests.fakes.openalex import review_work, work_json
    from tests.fakes.opencitations import FakeOpenCitations
    from tests.fakes.semanticscholar import citing_paper

    rng = random.Random(seed + 1)
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, list[Path]]] = {s: {} for s in SOURCES}
    counter = iter(range(10**9))

    def put(source: str, key: str, body: bytes) -> None:
        path = directory / f"{source}-{next(counter):06d}.body"
        path.write_bytes(body)
        files[source].setdefault(key, []).append(path)

    def dumps(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False).encode("utf-8")

    # PubMed: one elink listing, then efetch batches in the listed order.
    pubmed = visible["pubmed"]
    links = "".join(f"<Link>\n\t\t\t\t<Id>{p.pmid}</Id>\n\t\t\t</Link>" for p in pubmed)
    put("pubmed", "elink.fcgi", (ELINK_HEAD + "<eLinkResult><LinkSet><DbFrom>pubmed</DbFrom>"
                                 f"<IdList><Id>{REVIEW['pmid']}</Id></IdList><LinkSetDb><DbTo>pubmed</DbTo>"
                                 f"<LinkName>pubmed_pubmed_citedin</LinkName>{links}</LinkSetDb></LinkSet>"
                                 "</eLinkResult>").encode("utf-8"))
    for start in range(0, len(pubmed), EFETCH_BATCH):
        articles = "".join(pubmed_article_xml(p) for p in pubmed[start:start + EFETCH_BATCH])
        put("pubmed", "efetch.fcgi", (PUBMED_HEAD + f"<PubmedArticleSet>{articles}</PubmedArticleSet>").encode())

    # Europe PMC: cursor pages of 1000 core records.
    from include.living_review import settings

    epmc = visible["europepmc"]
    size = settings.EUROPEPMC_PAGE_SIZE
    for start in range(0, max(len(epmc), 1), size):
        chunk = epmc[start:start + size]
        put("europepmc", "search", dumps({
            "version": VERSION, "hitCount": len(epmc), "nextCursorMark": epmc_cursor(start + len(chunk)),
            "request": {"queryString": f"CITES:{REVIEW['pmid']}_MED", "resultType": "core",
                        "cursorMark": epmc_cursor(start) if start else "*", "pageSize": size, "sort": "",
                        "synonym": False},
            "resultList": {"result": [core_record(p) for p in chunk]}}))

    # OpenAlex: the review look-up, then cursor pages with only the selected root fields.
    oa = visible["openalex"]
    put("openalex", "works/", dumps({k: v for k, v in review_work(REVIEW["openalex_id"]).items()
                                     if k in ("id", "ids")}))
    per_page = settings.OPENALEX_PER_PAGE
    for start in range(0, max(len(oa), 1), per_page):
        chunk = oa[start:start + per_page]
        results = []
        for paper in chunk:
            work = work_json(paper, cites=[REVIEW["openalex_id"]])
            results.append({k: work[k] for k in SELECT_FIELDS if k in work})
        put("openalex", "works", dumps({
            "meta": {"count": len(oa), "db_response_time_ms": 12, "page": None, "per_page": per_page,
                     "next_cursor": oa_cursor(start + len(chunk)), "groups_count": None},
            "results": results, "group_by": []}))

    # OpenCitations: one unpaged list of citation rows.
    oc_fake = FakeOpenCitations([])
    oc_fake.server.server_close()
    review_doi = REVIEW["doi"].lower()
    put("opencitations", "index/v2/citations/",
        dumps([oc_fake.row(p, i, review_doi) for i, p in enumerate(visible["opencitations"])]))

    # Semantic Scholar: offset pages of 1000; title and id variants as in bench_merge.
    s2 = visible["semanticscholar"]
    wanted = set(FIELDS) | {"paperId"}
    size = settings.SEMANTIC_SCHOLAR_PAGE_SIZE
    for start in range(0, max(len(s2), 1), size):
        data = []
        for paper in s2[start:start + size]:
            record = {k: v for k, v in citing_paper(paper).items() if k in wanted}
            if rng.random() < 0.05:
                record["externalIds"] = {}
            if rng.random() < 0.3:
                record["title"] = paper.title.rstrip(".").title() + "."
            data.append({"citingPaper": record})
        body: dict[str, Any] = {"offset": start, "data": data}
        if start + size < len(s2):
            body["next"] = start + size
        put("semanticscholar", "graph/v1/paper/", dumps(body))
    return files


# -- replaying bodies through the real clients -------------------------------------

class _Response:
    status_code = 200

    def __init__(self, url: str, content_type: str):
        self.url = url
        self.headers = {"Content-Type": content_type}


class ReplayHttp:
    """Stands in for a client's ``HttpClient``: hands the next recorded body to the client's own parser."""

    def __init__(self, source: str, bodies: dict[str, list[Path]]):
        from include.living_review.sources.http import RequestLog

        self.source = source
        self.base_url = f"http://replay.invalid/{source}"
        self.bodies = {key: list(paths) for key, paths in bodies.items()}
        self.log = RequestLog()
        self.io_seconds = 0.0

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _next(self, path: str) -> Path:
        if path in self.bodies:
            return self.bodies[path].pop(0)
        for key, paths in self.bodies.items():
            if key.endswith("/") and path.startswith(key):
                return paths.pop(0)
        raise KeyError(f"{self.source}: no recorded body for {path!r}")

    def request(self, method: str, path: str, parse: Any, **kwargs: Any) -> Any:
        from include.living_review.sources.http import RequestRecord

        started = time.perf_counter()
        body = self._next(path).read_bytes()
        self.io_seconds += time.perf_counter() - started
        kind = "text/xml" if path.endswith(".fcgi") else "application/json"
        result = parse(_Response(self.url(path), kind), body)
        self.log.records.append(RequestRecord(method, self.url(path), 200, time.perf_counter() - started))
        return result

    def get(self, path: str, parse: Any, **kwargs: Any) -> Any:
        return self.request("GET", path, parse, **kwargs)

    def post(self, path: str, parse: Any, **kwargs: Any) -> Any:
        return self.request("POST", path, parse, **kwargs)


def replay_client(source: str, bodies: dict[str, list[Path]]) -> Any:
    from include.living_review.connections import client_settings
    from include.living_review.sources import build_client
    from include.living_review.sources import semanticscholar

    # The real API serves only the first 10,000 citations; the bench measures processing, not that cap.
    semanticscholar.MAX_OFFSET = 10**9
    conn = {"pubmed": "ncbi_eutils", "europepmc": "europe_pmc", "openalex": "openalex",
            "opencitations": "opencitations", "semanticscholar": "semantic_scholar"}[source]
    conf = client_settings(conn, host="http://replay.invalid", extra={"email": "bench@example.org"},
                           password="bench-key" if source == "openalex" else None)
    client = build_client(source, conf)
    client.http = ReplayHttp(source, bodies)
    return client


# -- the measured pipeline ---------------------------------------------------------

def review_config() -> Any:
    """The shipped review (its abstract and scope keywords drive relevance), under a bench id."""
    from include.living_review.config import load_config

    shipped = load_config(ROOT / "include" / "reviews.yaml").reviews[0]
    return shipped.model_copy(update={"id": "bench-processing", "sources": list(SOURCES)})


def _child(conn: Any, fn: Any, args: tuple[Any, ...]) -> None:
    import traceback

    try:
        reset_peak_rss()
        start_rss = rss_mb()
        started, cpu = time.perf_counter(), time.process_time()
        _PEAK_CARRY[0] = 0.0
        value = fn(*args)
        conn.send({"value": value, "seconds": time.perf_counter() - started,
                   "cpu_seconds": time.process_time() - cpu, "peak_rss_mb": max(peak_rss_mb(), _PEAK_CARRY[0]),
                   "start_rss_mb": start_rss})
    except BaseException:  # noqa: BLE001  (reported to the parent, which raises)
        conn.send({"error": traceback.format_exc()})
    finally:
        conn.close()


def in_process(fn: Any, *args: Any, isolate: bool = True) -> dict[str, Any]:
    """Run ``fn(*args)`` as one task: in a forked process of its own (like an Airflow task), or inline.

    The fork inherits the imports (pyarrow, pandas, GX) but no data, so its peak RSS
    is what one task process needs; ``start_rss_mb`` is the imports' share of it.
    """
    if not isolate:
        record: dict[str, Any] = {}
        start_rss = rss_mb()
        _PEAK_CARRY[0] = 0.0
        with stage(record, "step"):
            value = fn(*args)
        record["step"]["peak_rss_mb"] = max(record["step"]["peak_rss_mb"], _PEAK_CARRY[0])
        return {**record["step"], "value": value, "start_rss_mb": start_rss}
    import multiprocessing

    mp = multiprocessing.get_context("fork")
    receiver, sender = mp.Pipe(duplex=False)
    process = mp.Process(target=_child, args=(sender, fn, args))
    process.start()
    sender.close()
    try:
        message = receiver.recv()
    except EOFError:
        message = {"error": f"the task process died (exit code {process.join() or process.exitcode})"}
    process.join()
    if "error" in message:
        raise RuntimeError(f"{getattr(fn, '__name__', fn)} failed:\n{message['error']}")
    return message


def _fetch(ctx: Any, source: str, bodies: dict[str, list[Path]]) -> dict[str, Any]:
    from include.living_review import pipeline

    client = replay_client(source, bodies)
    stats = pipeline.fetch_source(ctx, source, client)
    return {"records": stats["works"], "body_read_seconds": client.http.io_seconds}


def _timed_core(step: Any, *targets: tuple[str, str]) -> Any:
    """``step`` with each ``module.name`` in ``targets`` timed (wall s, own peak RSS) apart from the rest.

    A target missing from the code under test (renamed, not there yet) is skipped.
    """
    import importlib

    def run_step(ctx: Any) -> dict[str, Any]:
        spent: dict[str, dict[str, float]] = {}
        restore = []
        for module, name in targets:
            target = importlib.import_module(module)
            original = getattr(target, name, None)
            if original is None:
                continue

            def timed(*args: Any, __name: str = name, __fn: Any = original, **kwargs: Any) -> Any:
                _PEAK_CARRY[0] = max(_PEAK_CARRY[0], peak_rss_mb())
                reset_peak_rss()
                started = time.perf_counter()
                try:
                    return __fn(*args, **kwargs)
                finally:
                    peak = peak_rss_mb()
                    _PEAK_CARRY[0] = max(_PEAK_CARRY[0], peak)
                    entry = spent.setdefault(__name, {"seconds": 0.0, "peak_rss_mb": 0.0})
                    entry["seconds"] += time.perf_counter() - started
                    entry["peak_rss_mb"] = max(entry["peak_rss_mb"], peak)

            setattr(target, name, timed)
            restore.append((target, name, original))
        try:
            summary = step(ctx)
        finally:
            for target, name, original in restore:
                setattr(target, name, original)
        return {"summary": summary, "parts": spent}
    return run_step


def run_pipeline(data_dir: Path, files: dict[str, dict[str, list[Path]]], when: dt.datetime, *,
                 isolate: bool = True) -> dict[str, Any]:
    """One weekly run: every step as its own task, in DAG order; wall/CPU seconds and peak RSS per step."""
    from include.living_review import pipeline

    ctx = pipeline.RunContext.create(review_config(), data_dir, when, f"bench__{when:%Y%m%d}")
    stages: dict[str, Any] = {}
    fetch = {source: in_process(_fetch, ctx, source, files[source], isolate=isolate) for source in SOURCES}
    stages["normalize"] = {key: sum(f[key] for f in fetch.values()) for key in ("seconds", "cpu_seconds")}
    stages["normalize"]["peak_rss_mb"] = max(f["peak_rss_mb"] for f in fetch.values())
    stages["normalize"]["start_rss_mb"] = max(f["start_rss_mb"] for f in fetch.values())
    stages["normalize"]["per_source"] = {s: {k: v for k, v in f.items() if k != "value"} | f["value"]
                                         for s, f in fetch.items()}
    merge = in_process(_timed_core(pipeline.merge_sources, ("include.living_review.merge.works", "merge_works"),
                                   ("include.living_review.relevance", "score_relevance"),
                                   ("include.living_review.merge.step", "table_to_works"),
                                   ("include.living_review.merge.step", "committed_rows"),
                                   ("include.living_review.merge.step", "fill_from_portfolio"),
                                   ("include.living_review.merge.step", "merged_table")), ctx, isolate=isolate)
    enrich = in_process(pipeline.enrich_metadata, ctx, None, isolate=isolate)
    check = in_process(_timed_core(pipeline.validate, ("data_quality.validate", "validate_works")), ctx,
                       isolate=isolate)
    publish = in_process(pipeline.publish, ctx, isolate=isolate)
    for name, step in (("merge", merge), ("enrich", enrich), ("validate", check), ("publish", publish)):
        stages[name] = {k: v for k, v in step.items() if k != "value"}
    stages["merge"]["parts"] = merge["value"]["parts"]
    stages["merge"]["core_seconds"] = merge["value"]["parts"].get("merge_works", {}).get("seconds", 0.0)
    stages["validate"]["core_seconds"] = check["value"]["parts"].get("validate_works", {}).get("seconds", 0.0)
    merged, checked, published = merge["value"]["summary"], check["value"]["summary"], publish["value"]
    validation = json.loads(ctx.staging.validation.read_text(encoding="utf-8"))
    return {"stages": stages,
            "total_seconds": sum(s["seconds"] for s in stages.values()),
            "total_cpu_seconds": sum(s["cpu_seconds"] for s in stages.values()),
            "peak_rss_mb": max(s["peak_rss_mb"] for s in stages.values()),
            "records_in": merged["records_in"], "works_out": merged["works_out"], "new": merged["new"],
            "quarantined": checked["quarantined"], "quarantine_reasons": validation.get("blocking_counts", {}),
            "published": published["works"], "snapshot": published["snapshot"]}


def _generate(records: int, seed: int, directory: Path) -> dict[str, Any]:
    papers, visible = corpus(records, seed)
    files = render_pages(visible, directory, seed)
    return {"files": {s: {k: [str(p) for p in v] for k, v in f.items()} for s, f in files.items()},
            "records": sum(len(v) for v in visible.values()), "papers": len(papers),
            "per_source": {s: len(v) for s, v in visible.items()}}


def floor_seconds(snapshot: str, directory: Path, repeat: int = 3) -> dict[str, Any]:
    """Plain pyarrow write (zstd, as ``write_parquet_atomic``) plus read of the final table."""
    import pyarrow.parquet as pq

    table = pq.read_table(snapshot)
    times, cpu_times = [], []
    for i in range(repeat):
        path = directory / f"floor-{i}.parquet"
        started, cpu = time.perf_counter(), time.process_time()
        pq.write_table(table, path, compression="zstd")
        pq.read_table(path)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu)
        path.unlink()
    return {"seconds": statistics.median(times), "cpu_seconds": statistics.median(cpu_times), "rows": table.num_rows,
            "bytes": Path(snapshot).stat().st_size}


def parse_floor(files: dict[str, dict[str, list[Path]]], repeat: int = 3) -> dict[str, Any]:
    """The cheapest decode of every response body, with bodies already in memory (CPU s, median).

    JSON with msgspec (the fastest decoder installed); PubMed's XML with Bio.Entrez as
    the pipeline must (``pubmed.entrez_read``), and with ElementTree for reference. This
    is work no pipeline can skip, so it is reported beside the write/read floor.
    """
    import xml.etree.ElementTree as ET

    import msgspec

    from include.living_review.sources.pubmed import entrez_read

    json_bodies = [p.read_bytes() for source, by_key in files.items() if source != "pubmed"
                   for paths in by_key.values() for p in paths]
    xml_bodies = [p.read_bytes() for key, paths in files.get("pubmed", {}).items() if key == "efetch.fcgi"
                  for p in paths]

    def cpu(fn: Any, bodies: list[bytes]) -> float:
        import gc

        times = []
        for _ in range(repeat):
            gc.collect()
            gc.disable()  # as the fetch tasks parse: no collector passes over the parsed pages
            started = time.process_time()
            try:
                for body in bodies:
                    fn(body)
                    gc.collect(0)  # Bio.Entrez leaves each page in a reference cycle
            finally:
                gc.enable()
            times.append(time.process_time() - started)
        return statistics.median(times)

    decode = msgspec.json.Decoder()
    result = {"json_msgspec_cpu_seconds": cpu(decode.decode, json_bodies),
              "pubmed_entrez_cpu_seconds": cpu(lambda b: entrez_read(b, "replay"), xml_bodies),
              "pubmed_elementtree_cpu_seconds": cpu(ET.fromstring, xml_bodies),
              "json_mb": sum(map(len, json_bodies)) / 1e6, "xml_mb": sum(map(len, xml_bodies)) / 1e6}
    result["cpu_seconds"] = result["json_msgspec_cpu_seconds"] + result["pubmed_entrez_cpu_seconds"]
    return result


def warm_up_gx(directory: Path) -> float:
    """Import GX and validate a few rows once: the fixed cost every validate task pays."""
    import pyarrow as pa

    from data_quality.validate import validate_works
    from include.living_review.records import CITING_WORKS_SCHEMA

    started = time.perf_counter()
    try:
        from bench.bench_validate import RUN_DATE as run_date
        from bench.bench_validate import synthetic_table

        frame = synthetic_table(20).to_pandas()
    except (KeyError, ValueError, TypeError, pa.ArrowException):  # that bench lags a schema change
        run_date, frame = RUN_DATE.date(), CITING_WORKS_SCHEMA.empty_table().to_pandas()
    validate_works(frame, run_date=run_date, data_docs_dir=directory / "docs")
    return time.perf_counter() - started


def _short(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    short = filename.replace(str(ROOT) + "/", "")
    for marker in ("site-packages/", f"/lib/python{sys.version_info.major}.{sys.version_info.minor}/"):
        if marker in short:
            short = short.split(marker, 1)[1]
    return f"{short}:{line}:{re.sub(r' at 0x[0-9a-f]+', '', name)}"


def hotspots(profile: cProfile.Profile, limit: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Top functions by own time, and project functions by *attributed* time.

    A project function's attributed time is its cumulative time minus what it spends
    in other project functions, looking through any library or ``bench/`` frames in
    between (``list.extend`` driving a generator, the replayed HTTP layer): its own
    code plus the library calls it makes (json, Bio.Entrez, pyarrow...), i.e. the time
    a change to that function can win back. Where a library function is called from
    several places, the project time below it is shared out by call time.
    """
    stats = pstats.Stats(profile, stream=io.StringIO()).stats  # type: ignore[attr-defined]
    names = {key: _short(key) for key in stats}
    project = {k for k, n in names.items() if n.startswith(("include/", "data_quality/"))}
    callees: dict[Any, dict[Any, float]] = {}
    for key, (_cc, _nc, _tt, _ct, callers) in stats.items():
        for caller, (_c, _n, _t, cumulative) in callers.items():
            if caller != key:
                callees.setdefault(caller, {})[key] = cumulative
    memo: dict[Any, float] = {}

    def project_below(key: Any, visiting: frozenset[Any] = frozenset()) -> float:
        """Time spent in project functions under a non-project ``key`` (per unit of its own cumulative time)."""
        if key in memo:
            return memo[key]
        total = 0.0
        for callee, spent in callees.get(key, {}).items():
            if callee in project:
                total += spent
            elif callee not in visiting:
                total += share(callee, spent, visiting | {key})
        memo[key] = total
        return total

    def share(key: Any, spent: float, visiting: frozenset[Any] = frozenset()) -> float:
        cumulative = stats[key][3]
        return spent / cumulative * project_below(key, visiting) if cumulative else 0.0

    def row(key: Any, **extra: Any) -> dict[str, Any]:
        _cc, calls, tottime, cumtime, _ = stats[key]
        return {"function": names[key], "calls": calls, "own_s": round(tottime, 3),
                "cumulative_s": round(cumtime, 3), **extra}

    own = [row(k) for k in sorted(stats, key=lambda k: -stats[k][2])[:limit]]
    attributed = []
    for key in project:
        inner = 0.0
        library: dict[Any, float] = {}
        for callee, spent in callees.get(key, {}).items():
            if callee in project:
                inner += spent
            else:
                below = min(spent, share(callee, spent))
                inner += below
                library[callee] = spent - below
        top = sorted(library.items(), key=lambda item: -item[1])[:2]
        attributed.append(row(key, attributed_s=round(max(stats[key][3] - inner, 0.0), 3),
                              mostly_in=", ".join(f"{names[k].rsplit(':', 1)[1]} {t:.2f}s" for k, t in top
                                                  if t >= 0.01)))
    attributed.sort(key=lambda r: -r["attributed_s"])
    return {"by_own_time": own, "project_by_attributed": attributed[:limit * 2]}


def run(records: int, *, rerun: bool = False, profile: bool = False, seed: int = 7) -> dict[str, Any]:
    """Time one size. ``profile`` runs every step inline under cProfile (timings then carry its overhead)."""
    started = time.perf_counter()
    import pandas  # noqa: F401  (imported before timing, as a task process has them)
    import pyarrow  # noqa: F401

    import include.living_review.pipeline  # noqa: F401
    import include.living_review.sources.pubmed  # noqa: F401
    base_import = time.perf_counter() - started
    started = time.perf_counter()
    import great_expectations  # noqa: F401
    gx_import = time.perf_counter() - started

    work = Path(tempfile.mkdtemp(prefix="lr-bench-processing-"))
    try:
        gx_first = warm_up_gx(work)
        started = time.perf_counter()
        generated = in_process(_generate, records, seed, work / "bodies")["value"]  # its garbage dies with it
        generate_seconds = time.perf_counter() - started
        files = {s: {k: [Path(p) for p in v] for k, v in f.items()} for s, f in generated["files"].items()}
        body_bytes = sum(p.stat().st_size for f in files.values() for ps in f.values() for p in ps)
        isolate = not profile
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        first = run_pipeline(work / "data", files, RUN_DATE, isolate=isolate)
        second = run_pipeline(work / "data", files, RUN_DATE + dt.timedelta(days=7), isolate=isolate) \
            if rerun else None
        if profiler:
            profiler.disable()
        floor = floor_seconds(first["snapshot"], work)
        parsing = parse_floor(files)
        floor_with_parse = floor["cpu_seconds"] + parsing["cpu_seconds"]
        result: dict[str, Any] = {
            "records": generated["records"], "papers": generated["papers"], "per_source": generated["per_source"],
            "body_mb": body_bytes / 1e6, "generate_seconds": generate_seconds,
            "import_seconds": base_import, "gx_import_seconds": gx_import, "gx_first_validate_seconds": gx_first,
            "task_start_rss_mb": rss_mb(), "isolated_tasks": isolate,
            "first": first, "second": second, "floor": floor, "parse_floor": parsing,
            # The floor plus decoding every body: what no implementation of this pipeline avoids.
            "ratio_cpu_vs_parse_and_write": first["total_cpu_seconds"] / max(floor_with_parse, 1e-9),
            "ratio": first["total_seconds"] / floor["seconds"],
            "ratio_cpu": first["total_cpu_seconds"] / max(floor["cpu_seconds"], 1e-9),
            "us_per_record": first["total_seconds"] / generated["records"] * 1e6,
            "cpu_us_per_record": first["total_cpu_seconds"] / generated["records"] * 1e6,
        }
        if second:
            result["second_us_per_record"] = second["total_seconds"] / generated["records"] * 1e6
            result["second_cpu_us_per_record"] = second["total_cpu_seconds"] / generated["records"] * 1e6
        if profiler:
            result["hotspots"] = hotspots(profiler)
        return result
    finally:
        remove_tree(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rerun", action="store_true", help="also time next week's run on the same records")
    parser.add_argument("--profile", action="store_true", help="run under cProfile and report hotspots")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args.records, rerun=args.rerun, profile=args.profile)
    if args.out:
        write_json(result, args.out)
    else:
        json.dump(result, sys.stdout, indent=2, default=str)
        print()


if __name__ == "__main__":
    main()
