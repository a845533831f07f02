"""``make bench``: every benchmark, a plain-text table, and ``bench/results.json``.

``python -m bench.run_all [--parts requests,rates,processing,parse] [--sizes 1000,10000,100000]``

Each part runs in a fresh process (clean memory figures, no shared state):

1. requests    the real pipeline DAG against the local fakes: requests vs the theoretical minimum
2. rates       each client with work queued: achieved requests/s vs the configured limit
3. processing  normalize -> merge -> enrich -> validate -> publish vs a plain pyarrow write+read
4. parse       DagBag fill of ``dags/`` with 200 reviews vs an empty folder
5. growth      the processing bench at every ``--sizes``: time per record

Ratios compare figures measured in the same run. The machine is shared, so every
timing is given as wall time and as CPU time of the measured process; CPU time is
the one that noise from other processes does not inflate. No test asserts any of it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import ROOT, run_child, write_json

RESULTS = ROOT / "bench" / "results.json"
PARTS = ("requests", "rates", "processing", "parse", "commit", "probes")
PROFILE_RECORDS = 30_000
SOURCE_ORDER = ("pubmed", "europepmc", "openalex", "opencitations", "semanticscholar", "crossref")
STEP_ORDER = ("normalize", "merge", "enrich", "validate", "publish")
RSS_TARGET_MB = 1536
RATIO_TARGET = 3.0


# -- formatting --------------------------------------------------------------------

def fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return "inf"
    return format(value, spec)


def table(headers: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    """Columns padded to width; ``align`` is one of l/r per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)).rstrip()

    out = [line(cells[0]), line(["-" * w for w in widths])]
    out.extend(line(r) for r in cells[1:])
    return out


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "MET" if ok else "NOT MET"


def report_probes(result: dict[str, Any], targets: dict[str, Any]) -> list[str]:
    """Section 7: the update probes' cost for K known works (bench/bench_probes.py)."""
    from bench.bench_probes import report

    at_min, within, over = True, True, []
    for known, r in result["sizes"].items():
        for source, s in r["quiet"]["sources"].items():
            at_min &= s["at_minimum"]
            if not s["within_target"]:
                within = False
                over.append(f"{source} K={int(known):,}: {s['requests']} ({s['listing_pages']} listing pages)")
        found = r["changed"]["events"]
        at_min &= found.get("retracted", 0) == r["changed"]["changed"] and found.get("reference_retracted") == 1
    sizes = ", ".join(f"{int(k):,}" for k in result["sizes"])
    targets["probes: nothing-new week at the minimum; every one-database change found"] = (
        at_min, f"K = {sizes}")
    targets["probes: nothing-new week <= 2 per source + ceil(K/200) PubMed + ceil(K/100) Crossref"] = (
        within, "; ".join(over) or f"K = {sizes}")
    return report(result)


def report_commit(result: dict[str, Any]) -> list[str]:
    """Section 6: the run commit against the alternatives (bench/bench_commit.py)."""
    rows = [[name, fmt(r["wall_s"], ".3f"), fmt(r["cpu_s"], ".3f"), fmt(r["written_bytes"] / 1e6, ".1f"),
             fmt(r["exposure_ms"], ".2f"), r["after_kill_9"]] for name, r in result["local"].items()]
    lines = [f"6. RUN COMMIT - a rerun over a committed date, {result['rows']:,} rows (bench/bench_commit.py)", ""]
    lines += table(["mechanism", "wall s", "cpu s", "written MB", "exposure ms", "after kill -9"], rows, "lrrrrl")
    for name, r in result.get("s3", {}).items():
        lines.append(f"   s3 (local moto server): {name}: {r['wall_s']:.3f} s")
    return lines


# -- parts -------------------------------------------------------------------------

def report_requests(r: dict[str, Any], targets: dict[str, Any]) -> list[str]:
    full, inc = r["full"], r["incremental"]
    lines = [f"1. REQUEST EFFICIENCY - real pipeline DAG (dag.test) vs local fakes, {r['papers']:,} citing papers,",
             f"   then next week with {r['new_papers']} new ones. Requests counted on the fakes' logs.", ""]
    rows = []
    totals = [0, 0, 0, 0]
    for source in SOURCE_ORDER:
        s, i = full["sources"][source], inc["sources"][source]
        listed = full["listed"].get(source if source != "crossref" else "crossref_new_dois")
        ends = ", ".join(f"{k} {v}" for k, v in sorted(s["by_endpoint"].items()))
        rows.append([source, fmt(listed), s["requests"], s["minimum"], fmt(s["ratio"], ".2f"),
                     i["requests"], i["minimum"], fmt(i["ratio"], ".2f"), ends])
        totals = [totals[0] + s["requests"], totals[1] + s["minimum"], totals[2] + i["requests"],
                  totals[3] + i["minimum"]]
    rows.append(["total", "", totals[0], totals[1], fmt(totals[0] / max(totals[1], 1), ".2f"),
                 totals[2], totals[3], fmt(totals[2] / max(totals[3], 1), ".2f"), ""])
    lines += table(["source", "listed", "full", "minimum", "ratio", "+new", "minimum", "ratio",
                    "full run by endpoint"], rows, "lrrrrrrrl")
    def metadata(run: dict[str, Any]) -> int:
        crossref = run["sources"]["crossref"]["by_endpoint"]
        return (run["sources"]["pubmed"]["by_endpoint"].get("efetch", 0) + crossref.get("list", 0)
                + crossref.get("single", 0))

    def probes(run: dict[str, Any]) -> int:
        return (run["sources"]["pubmed"]["by_endpoint"].get("esearch", 0)
                + run["sources"]["crossref"]["by_endpoint"].get("probe", 0))

    meta_full, meta_inc = metadata(full), metadata(inc)
    new_works = inc["counts"]["new"]
    lines += ["",
              f"   metadata requests (efetch + Crossref doi: lists): full run {meta_full} for "
              f"{full['counts']['new']:,} new works; incremental {meta_inc} for {new_works} new works",
              f"   (efetch batches of 200: {inc['listed']['pubmed_new']} new PMIDs; Crossref batches of 100: "
              f"{inc['listed']['crossref_new_dois']} new DOIs, {inc['listed']['crossref_candidates']} of them "
              f"without metadata from a listing source).",
              f"   update probes of the {full['counts']['published']:,} known works (PubMed esearch by mdat, "
              f"Crossref from-update-date): {probes(inc)} requests; full re-fetch would be "
              f"{math.ceil(full['counts']['published'] / 200) + math.ceil(full['counts']['published'] / 100)}.",
              "   Listing requests stay proportional to N: none of these APIs can list only citations added "
              "since a date.",
              f"   DAG wall time: full {full['dag']['seconds']:.1f} s, incremental {inc['dag']['seconds']:.1f} s; "
              f"works published {full['counts']['published']:,} / {inc['counts']['published']:,}, "
              f"quarantined {full['counts']['quarantined']} ({_reasons(full.get('quarantine_reasons'))})."]
    exact = all(s["requests"] == s["minimum"] for s in full["sources"].values())
    inc_exact = all(s["requests"] == s["minimum"] for s in inc["sources"].values())
    targets["request ratio 1.0 on the full run"] = (exact, f"{totals[0]} requests, minimum {totals[1]}")
    targets["incremental: metadata requests only for new papers"] = (
        inc_exact and meta_inc <= math.ceil(inc["listed"]["pubmed_new"] / 200)
        + math.ceil(inc["listed"]["crossref_new_dois"] / 100),
        f"{meta_inc} metadata requests for {new_works} new works; every source at its minimum: {inc_exact}")
    return lines


def _reasons(reasons: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (reasons or {}).items()) or "none"


def report_rates(r: dict[str, Any], dag: dict[str, Any] | None, targets: dict[str, Any]) -> list[str]:
    lines = ["2. RATE-LIMIT ADHERENCE - each real client with 20 requests queued (one-record pages),",
             "   arrival times logged by the fakes. Limit = settings.RATE_LIMITS for the client's configuration.", ""]
    rows = []
    for label, m in r.items():
        rows.append([label, fmt(m["limit_rps"], ".1f"), fmt(m["achieved_rps"], ".2f"),
                     fmt(100 * m["share_of_limit"], ".1f") + "%", fmt(m["min_gap_s"], ".3f"),
                     fmt(1 / m["limit_rps"], ".3f"), m["max_in_any_1s"],
                     "yes" if m["under_limit"] else "NO", "yes" if m["at_least_80pct"] else "NO"])
    lines += table(["client", "limit/s", "achieved/s", "of limit", "min gap s", "interval", "max in 1 s",
                    "under", ">=80%"], rows)
    strict = [label for label, m in r.items() if m["max_in_any_1s"] > m["limit_rps"]]
    if strict:
        which = "every client" if len(strict) == len(r) else ", ".join(strict)
        lines += ["", "   Note: the throttle spaces requests exactly 1/limit apart at the client, so arrival jitter",
                  f"   can put limit+1 requests into some 1-second window at the server ({which}).",
                  "   A provider counting strictly per rolling second could answer 429; pacing at ~95% of the",
                  "   limit (or from the previous response's arrival) would remove that edge."]
    if dag:
        parts = []
        for source in SOURCE_ORDER:
            s = dag["full"]["sources"][source]
            if s["achieved_rps"]:
                parts.append(f"{source} {s['achieved_rps']:.2f}/s over {s['requests']}")
        lines += ["", "   In the 5,000-paper DAG run (pages are parsed between requests, so page processing, not the",
                  "   throttle, sets the pace where pages are large): " + "; ".join(parts) + "."]
    under = all(m["under_limit"] for m in r.values())
    eighty = all(m["at_least_80pct"] for m in r.values())
    targets["achieved req/s under every configured limit"] = (under, "mean rate over 20 queued requests")
    targets["achieved req/s >= 80% of the limit with work queued"] = (
        eighty, "micro-benchmark; the DAG run is slower where large pages are parsed between requests")
    return lines


def report_processing(sizes: dict[int, dict[str, Any]], profile: dict[str, Any] | None,
                      targets: dict[str, Any]) -> list[str]:
    biggest = sizes[max(sizes)]
    first = biggest["first"]
    lines = [f"3. PROCESSING THROUGHPUT - {biggest['records']:,} raw records from 5 sources "
             f"({_per_source(biggest['per_source'])}) -> {first['works_out']:,} works.",
             "   Real pipeline functions on a temp data dir; network replaced by replaying fake-rendered bodies",
             f"   ({biggest['body_mb']:.0f} MB). Each step runs in its own forked process, like an Airflow task.", ""]
    rows = []
    for name in STEP_ORDER:
        s = first["stages"][name]
        detail = ""
        if name == "merge":
            timed = sum(p["seconds"] for p in s.get("parts", {}).values())
            detail = f"merge_works {s['core_seconds']:.1f} s, rest of merge_sources {s['seconds'] - s['core_seconds']:.1f} s"
            if s.get("parts"):
                detail += f" (breakdown below; {s['seconds'] - timed:.1f} s untimed glue)"
        elif name == "validate":
            detail = f"validate_works {s['core_seconds']:.1f} s (GX + Data Docs)"
        elif name == "normalize":
            detail = "cpu s: " + ", ".join(f"{k} {s['per_source'][k]['cpu_seconds']:.1f}"
                                           for k in SOURCE_ORDER if k in s["per_source"])
        rows.append([name, fmt(s["seconds"], ".2f"), fmt(s["cpu_seconds"], ".2f"), fmt(s["peak_rss_mb"]), detail])
    rows.append(["total", fmt(first["total_seconds"], ".2f"), fmt(first["total_cpu_seconds"], ".2f"),
                 fmt(first["peak_rss_mb"]), ""])
    floor = biggest["floor"]
    rows.append(["floor", fmt(floor["seconds"], ".3f"), fmt(floor["cpu_seconds"], ".3f"), "",
                 f"pyarrow write (zstd) + read of the {floor['rows']:,}-row snapshot"])
    lines += table(["step", "wall s", "cpu s", "peak RSS MB", "detail"], rows, "lrrrl")
    parsing = biggest.get("parse_floor")
    if parsing:
        lines += ["", f"   decoding the bodies alone ({parsing['json_mb']:.0f} MB JSON, {parsing['xml_mb']:.0f} MB PubMed XML; "
                  f"CPU s): msgspec JSON {parsing['json_msgspec_cpu_seconds']:.2f}, Bio.Entrez XML "
                  f"{parsing['pubmed_entrez_cpu_seconds']:.2f} (ElementTree would take "
                  f"{parsing['pubmed_elementtree_cpu_seconds']:.2f})",
                  f"   total vs (write/read floor + decoding): {biggest['ratio_cpu_vs_parse_and_write']:.1f}x CPU"]
    parts = first["stages"]["merge"].get("parts") or {}
    if parts:
        lines += ["", "   merge step, by call inside pipeline.merge_sources (wall s; peak RSS MB while it ran):",
                  "   " + "; ".join(f"{k} {v['seconds']:.1f} s / {v['peak_rss_mb']:,.0f}"
                                    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]["seconds"]))]
    lines += ["",
              f"   ratio to floor: {biggest['ratio']:.0f}x wall, {biggest['ratio_cpu']:.0f}x CPU   "
              f"(target <= {RATIO_TARGET:.0f}x)",
              f"   peak RSS, largest task process: {first['peak_rss_mb']:,.0f} MB, of which "
              f"{first['stages']['merge']['start_rss_mb']:,.0f} MB is the imports every task starts with "
              f"(target <= {RSS_TARGET_MB:,} MB)",
              f"   fixed cost per validate task, not in the totals: GX import {biggest['gx_import_seconds']:.1f} s, "
              f"first validation {biggest['gx_first_validate_seconds']:.1f} s",
              f"   quarantined {first['quarantined']} works ({_reasons(first['quarantine_reasons'])}): "
              "OpenCitations entities known only by OMID, and ids-only works Crossref is not asked for here."]
    second = biggest.get("second")
    if second:
        stages = ", ".join(f"{k} {second['stages'][k]['cpu_seconds']:.1f}" for k in STEP_ORDER)
        lines += [f"   next week, same records + previous snapshot ({second['new']} new): "
                  f"{second['total_seconds']:.1f} s wall, {second['total_cpu_seconds']:.1f} s CPU ({stages} cpu s), "
                  f"peak {second['peak_rss_mb']:,.0f} MB"]
    if profile:
        lines += ["", f"   Top hotspots (cProfile, {profile['records']:,} records, every step inline; "
                  "own time = in the function itself, C calls included):"]
        lines += ["   " + x for x in table(
            ["own s", "cum s", "calls", "function"],
            [[fmt(h["own_s"], ".2f"), fmt(h["cumulative_s"], ".2f"), fmt(h["calls"]), h["function"]]
             for h in profile["hotspots"]["by_own_time"]], "rrrl")]
        lines += ["", "   Project functions by attributed time (own code + the library calls it makes, "
                  "excluding other project functions):"]
        lines += ["   " + x for x in table(
            ["attr s", "cum s", "calls", "function", "mostly in"],
            [[fmt(h["attributed_s"], ".2f"), fmt(h["cumulative_s"], ".2f"), fmt(h["calls"]), h["function"],
              h["mostly_in"]] for h in profile["hotspots"]["project_by_attributed"][:8]], "rrrll")]
    targets[f"processing <= {RATIO_TARGET:.0f}x the pyarrow floor"] = (
        biggest["ratio"] <= RATIO_TARGET, f"{biggest['ratio']:.0f}x wall, {biggest['ratio_cpu']:.0f}x CPU")
    targets["peak RSS <= 1.5 GB"] = (first["peak_rss_mb"] <= RSS_TARGET_MB,
                                     f"{first['peak_rss_mb']:,.0f} MB in the largest task process (merge)")
    return lines


def _per_source(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {counts[k]:,}" for k in SOURCE_ORDER if k in counts)


def report_growth(sizes: dict[int, dict[str, Any]], targets: dict[str, Any]) -> list[str]:
    lines = ["5. GROWTH CURVE - the processing bench at each size (first run, no previous snapshot)", ""]
    rows = []
    for n in sorted(sizes):
        r = sizes[n]
        f = r["first"]
        rows.append([fmt(r["records"]), fmt(f["works_out"]), fmt(f["total_seconds"], ".2f"),
                     fmt(f["total_cpu_seconds"], ".2f"), fmt(r["us_per_record"], ".0f"),
                     fmt(r["cpu_us_per_record"], ".0f"), fmt(f["peak_rss_mb"]), fmt(r["ratio"], ".0f") + "x"])
    lines += table(["records", "works", "wall s", "cpu s", "us/record wall", "us/record cpu", "peak RSS MB",
                    "vs floor"], rows, "rrrrrrrr")
    per = [sizes[n]["cpu_us_per_record"] for n in sorted(sizes)]
    # 10% allowance: CPU time still carries some noise on a shared machine.
    ok = all(b <= a * 1.10 for a, b in zip(per, per[1:]))
    trend = "falling" if per[-1] < per[0] * 0.9 else "flat" if ok else "RISING"
    lines += ["", f"   CPU time per record is {trend} from {fmt(min(sizes))} to {fmt(max(sizes))} records."]
    targets["time per record flat or falling with size"] = (ok, f"{' -> '.join(fmt(p, '.0f') for p in per)} "
                                                               "us/record CPU")
    return lines


def report_parse(r: dict[str, Any], targets: dict[str, Any]) -> list[str]:
    full, base, one, cy = r["all_reviews"], r["baseline"], r["one_review"], r["what_if_pure_yaml"]
    lines = [f"4. SCALE OF REVIEWS - DagBag fill of dags/ in a fresh process, {r['reviews']} reviews "
             f"(best of {r['repeat']}; Airflow import not timed)", ""]
    rows = [["empty folder (baseline)", base["dags"], base["tasks"], fmt(base["seconds"], ".3f"),
             fmt(base["cpu_seconds"], ".3f"), fmt(base["rss_delta_mb"], ".1f")],
            ["dags/, 1 review", one["dags"], one["tasks"], fmt(one["seconds"], ".3f"), fmt(one["cpu_seconds"], ".3f"),
             fmt(one["rss_delta_mb"], ".1f")],
            [f"dags/, {r['reviews']} reviews", full["dags"], full["tasks"], fmt(full["seconds"], ".3f"),
             fmt(full["cpu_seconds"], ".3f"), fmt(full["rss_delta_mb"], ".1f")],
            [f"  what-if: pure-Python YAML", cy["dags"], cy["tasks"], fmt(cy["seconds"], ".3f"),
             fmt(cy["cpu_seconds"], ".3f"), fmt(cy["rss_delta_mb"], ".1f")]]
    lines += table(["folder", "DAGs", "tasks", "fill s", "cpu s", "RSS +MB"], rows, "lrrrrr")
    lines += ["",
              f"   {r['reviews']} reviews over baseline: {r['seconds_over_baseline']:.2f} s wall, "
              f"{r['cpu_seconds_over_baseline']:.2f} s CPU (target <= 1 s); {r['ms_per_review']:.1f} ms per review, "
              f"{r['ms_per_dag']:.1f} ms per DAG",
              f"   memory: {r['rss_mb_over_baseline']:.1f} MB for {full['dags']} DAGs = {1024 * r['mb_per_dag']:.0f} KB "
              "per DAG",
              f"   each of the 3 DAG files calls load_config(): {full['config_load_seconds']:.3f} s per load with "
              f"libyaml's CSafeLoader, {cy['config_load_seconds']:.3f} s with PyYAML's pure-Python SafeLoader"]
    targets[f"DagBag fill of {r['reviews']} reviews <= 1 s"] = (
        r["seconds_over_baseline"] <= 1.0,
        f"{r['seconds_over_baseline']:.2f} s wall, {r['cpu_seconds_over_baseline']:.2f} s CPU")
    return lines


# -- driver ------------------------------------------------------------------------

def environment() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout
        except OSError:
            return ""

    commit = git("rev-parse", "--short", "HEAD").strip()
    # The code under test is the working tree: uncommitted edits outside bench/ are measured too.
    modified = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
                if line[3:] and not line[3:].startswith("bench/")]
    return {"started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "modified_files": modified,
            "python": platform.python_version(), "cpus": os.cpu_count(), "load_avg_start": os.getloadavg(),
            "platform": platform.platform()}


def attempt(name: str, results: dict[str, Any], errors: dict[str, str], fn: Any) -> Any:
    started = time.perf_counter()
    print(f"[bench] {name} ...", flush=True)
    try:
        value = fn()
    except Exception as exc:  # one failed part must not hide the others' figures
        errors[name] = f"{type(exc).__name__}: {exc}"
        print(f"[bench] {name} FAILED: {errors[name][:2000]}", flush=True)
        traceback.print_exc()
        return None
    results[name] = value
    print(f"[bench] {name} done in {time.perf_counter() - started:.0f} s", flush=True)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--sizes", default="1000,10000,100000", help="record counts for the processing bench")
    parser.add_argument("--profile-records", type=int, default=PROFILE_RECORDS)
    parser.add_argument("--papers", type=int, default=5000, help="citing papers for the request bench")
    parser.add_argument("--probe-known", default="100,1000,10000", help="known works for the update-probe bench")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    started = time.perf_counter()
    env = environment()
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}

    if "requests" in parts:
        attempt("requests", results, errors,
                lambda: run_child("bench.bench_requests", ["--papers", str(args.papers)], timeout=1200))
    if "rates" in parts:
        attempt("rates", results, errors, lambda: run_child("bench.bench_rate_limits", []))
    if "processing" in parts:
        processing: dict[int, Any] = {}
        for n in sizes:
            extra = ["--rerun"] if n == max(sizes) else []
            value = attempt(f"processing {n:,}", results, errors,
                            lambda n=n, extra=extra: run_child("bench.bench_processing",
                                                               ["--records", str(n), *extra], timeout=1800))
            if value:
                processing[n] = value
        results["processing"] = {str(n): v for n, v in processing.items()}
        if args.profile_records:
            profile = attempt("profile", results, errors,
                              lambda: run_child("bench.bench_processing",
                                                ["--records", str(args.profile_records), "--profile"], timeout=1800))
            if profile:
                results["profile"] = {"records": profile["records"], "hotspots": profile["hotspots"]}
        for n in sizes:
            results.pop(f"processing {n:,}", None)
    if "parse" in parts:
        attempt("parse", results, errors, lambda: run_child("bench.bench_dag_parse", [], timeout=900))
    if "commit" in parts:
        attempt("commit", results, errors, lambda: run_child("bench.bench_commit", ["--s3"], timeout=900))
    if "probes" in parts:
        attempt("probes", results, errors,
                lambda: run_child("bench.bench_probes", ["--known", args.probe_known], timeout=5400))

    # -- the report ----------------------------------------------------------------
    targets: dict[str, Any] = {}
    lines = ["", "=" * 100,
             f"living-review benchmarks  {env['started']}  commit {env['commit'] or '?'}  "
             f"python {env['python']}  {env['cpus']} CPUs",
             f"load average at start {env['load_avg_start'][0]:.1f} (shared machine: wall times include other "
             "processes' load; CPU times do not)",
             *([f"working tree: {len(env['modified_files'])} modified file(s) outside bench/ are measured as they "
                f"are: {', '.join(env['modified_files'][:6])}{' ...' if len(env['modified_files']) > 6 else ''}"]
               if env["modified_files"] else []),
             "=" * 100, ""]
    sections: list[tuple[str, Any]] = []
    if "requests" in results:
        sections.append(("requests", lambda: report_requests(results["requests"], targets)))
    if "rates" in results:
        sections.append(("rates", lambda: report_rates(results["rates"], results.get("requests"), targets)))
    processing_results = {int(n): v for n, v in results.get("processing", {}).items()}
    if processing_results:
        sections.append(("processing", lambda: report_processing(processing_results, results.get("profile"),
                                                                 targets)))
    if "parse" in results:
        sections.append(("parse", lambda: report_parse(results["parse"], targets)))
    if len(processing_results) > 1:
        sections.append(("growth", lambda: report_growth(processing_results, targets)))
    if "commit" in results:
        sections.append(("commit", lambda: report_commit(results["commit"])))
    if "probes" in results:
        sections.append(("probes", lambda: report_probes(results["probes"], targets)))
    for name, build in sections:
        try:
            lines += build() + [""]
        except Exception as exc:  # a report bug must not lose the measured figures in results.json
            errors[f"report {name}"] = f"{type(exc).__name__}: {exc}"
            lines += [f"{name}: could not format the results ({exc}); see {args.out}", ""]

    total = time.perf_counter() - started
    targets["make bench under ~10 minutes"] = (total <= 600, f"{total / 60:.1f} min wall")
    lines += ["TARGETS", ""]
    lines += table(["target", "verdict", "measured"],
                   [[name, verdict(ok), detail] for name, (ok, detail) in targets.items()], "lll")
    if errors:
        lines += ["", "ERRORS"] + [f"  {name}: {message.splitlines()[0]}" for name, message in errors.items()]
    lines += ["", f"load average at end {os.getloadavg()[0]:.1f}; total {total:.0f} s; results in {args.out}"]
    report = "\n".join(lines)
    print(report)
    env.update(load_avg_end=os.getloadavg(), total_seconds=total)
    write_json({"environment": env, "targets": {k: {"met": ok, "measured": d} for k, (ok, d) in targets.items()},
                "errors": errors, "results": results, "report": report}, args.out)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
