"""Time the merge on synthetic records: ``python bench/bench_merge.py [--records 100000]``.

Five sources see ~30k papers with overlapping, differently spelled id subsets
(the same shapes as the source mappers emit); a few records carry no shared id
and need the title match. With ``--preprints F`` a fraction F of the papers also
has a medRxiv preprint, listed on top of the ``--records`` by OpenAlex and Europe
PMC; Europe PMC links half of them to the article (``related_dois``). Prints wall
time, records/s and peak RSS for a first run and for a second run that feeds the
first output back as the previous snapshot.
Not a test: it asserts only that the merge found the papers it was given.
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from include.living_review.merge import merge_works  # noqa: E402
from include.living_review.records import CITING_WORKS_SCHEMA, Work  # noqa: E402

# Chance that a source lists a given paper: ~3.4 records per paper.
# PubMed lists only papers with a PMID, so its share of all papers is 0.85 * 0.7 = 0.6.
VISIBILITY = {"pubmed": 0.85, "europepmc": 0.70, "openalex": 0.90, "opencitations": 0.55, "semanticscholar": 0.70}
WORDS = ("peer support mental health recovery community intervention randomised trial qualitative study "
         "depression anxiety youth services workforce stigma digital outcomes wellbeing psychosis carers "
         "evaluation implementation cohort adolescents veterans employment housing loneliness resilience "
         "self-management telehealth suicide prevention schizophrenia bipolar inpatient outpatient primary "
         "care résumé naïve Ångström São Paulo Zürich Kraków Łódź Malmö Ærø Dvořák").split()
SYLLABLES = "an bel cho da el fi gar ha ito ju ka li mo nu ø pe qu ri sø ta ug vi wa xu ya zé ng ić".split()


def families(rng: random.Random, n: int) -> tuple[list[str], list[float]]:
    """``n`` family names with a long-tailed frequency (the commonest ~1.5% of papers)."""
    names = sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))).capitalize()
                    for _ in range(n * 2)})[:n]
    weights = [1.0 / (rank + 25) for rank in range(len(names))]
    return names, weights


def papers(n: int, rng: random.Random, n_families: int) -> list[dict]:
    names, weights = families(rng, n_families)
    out = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))).capitalize()
        authors = [f"{f} {rng.choice('ABCDEFGHJKLM')}{rng.choice(['', 'J', 'M'])}"
                   for f in rng.choices(names, weights, k=rng.randint(1, 8))]
        year = rng.randint(2015, 2025)
        out.append(dict(
            title=title, authors=authors, year=year, date=dt.date(year, rng.randint(1, 12), rng.randint(1, 28)),
            journal=f"Journal of Synthetic Studies {i % 397}", abbrev=f"J Synth Stud {i % 397}",
            doi=f"10.{5000 + i % 50}/synth.{i:07d}" if rng.random() > 0.08 else None,
            pmid=str(20_000_000 + i) if rng.random() > 0.3 else None,
            pmcid=f"PMC{8_000_000 + i}" if rng.random() > 0.5 else None,
            openalex=f"W{4_000_000_000 + i}", s2=f"{i + 1:040x}", omid=f"br/06{i:09d}",
        ))
    return out


def records_for(paper: dict, source: str, rng: random.Random) -> Work:
    p = paper
    meta = dict(title=p["title"], authors=list(p["authors"]), publication_year=p["year"],
                publication_date=p["date"], journal=p["journal"], sources=[source])
    doi = p["doi"]
    if source == "pubmed":
        return Work(doi=doi, pmid=p["pmid"], pmcid=p["pmcid"], journal_abbrev=p["abbrev"],
                    publication_types=["Journal Article"], source_ids={source: p["pmid"]}, **meta)
    if source == "europepmc":
        return Work(doi=doi.upper() if doi else None, pmid=p["pmid"], pmcid=p["pmcid"],
                    source_ids={source: f"MED/{p['pmid']}" if p["pmid"] else f"PPR/{p['s2'][-8:]}"}, **meta)
    if source == "openalex":
        return Work(doi=f"https://doi.org/{doi}" if doi else None, pmid=p["pmid"], openalex_id=p["openalex"],
                    source_ids={source: p["openalex"]}, **meta)
    if source == "opencitations":
        one = doi if doi and (rng.random() < 0.7 or not p["pmid"]) else None
        return Work(title=None, doi=one, pmid=None if one else p["pmid"], omid=p["omid"], sources=[source],
                    source_ids={source: p["omid"]})
    bare = rng.random() < 0.05  # S2 papers without externalIds: only the title can join them
    title = p["title"].title() + "." if rng.random() < 0.3 else p["title"]
    return Work(doi=None if bare or not doi else doi.upper(), pmcid=None if bare or not p["pmcid"] else p["pmcid"][3:],
                s2_paper_id=p["s2"], source_ids={source: p["s2"]},
                **{**meta, "title": title, "authors": [a.split(" ")[0] for a in p["authors"]]})


def generate(n_records: int, n_papers: int, n_families: int, seed: int, preprints: float = 0.0) -> list[Work]:
    rng = random.Random(seed)
    corpus = papers(n_papers, rng, n_families)
    records = [records_for(p, s, rng) for p in corpus for s, chance in VISIBILITY.items()
               if rng.random() < chance and (s != "pubmed" or p["pmid"])]
    rng.shuffle(records)
    records = records[:n_records]
    if preprints:
        records += preprint_records(corpus, preprints, seed)
        random.Random(seed + 2).shuffle(records)
    return records


def preprint_records(corpus: list[dict], fraction: float, seed: int) -> list[Work]:
    """Preprint versions of some papers: their own DOI, OpenAlex id and Europe PMC PPR id."""
    rng = random.Random(seed + 1)  # its own stream: --preprints 0 leaves the other records as they were
    out = []
    for i, p in enumerate(corpus):
        if not p["doi"] or rng.random() >= fraction:
            continue
        doi = f"10.1101/{p['year'] - 1}.{i % 12 + 1:02d}.01.{i:06d}"
        meta = dict(title=p["title"], authors=list(p["authors"]), publication_year=p["year"] - 1,
                    publication_date=dt.date(p["year"] - 1, rng.randint(1, 12), rng.randint(1, 28)),
                    journal="medRxiv", is_preprint=True)
        out.append(Work(doi=f"https://doi.org/{doi}", openalex_id=f"W{5_000_000_000 + i}", sources=["openalex"],
                        source_ids={"openalex": f"W{5_000_000_000 + i}"}, publication_types=["preprint"], **meta))
        out.append(Work(doi=doi.upper(), sources=["europepmc"], source_ids={"europepmc": f"PPR/PPR{i}"},
                        publication_types=["Preprint"], related_dois=[p["doi"]] if rng.random() < 0.5 else [],
                        **meta))
    return out


def snapshot(rows: list[dict], when: dt.datetime) -> list[dict]:
    names = set(CITING_WORKS_SCHEMA.names)
    return [{**{k: v for k, v in r.items() if k in names}, "source_ids": list(r["source_ids"].items()),
             "first_seen": when, "last_reported": when} for r in rows]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--papers", type=int, default=30_000)
    parser.add_argument("--families", type=int, default=5_000, help="distinct first-author family names")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--preprints", type=float, default=0.05,
                        help="fraction of papers that also have a preprint version (0: the pre-versions workload)")
    args = parser.parse_args()

    started = time.perf_counter()
    records = generate(args.records, args.papers, args.families, args.seed, args.preprints)
    print(f"generated {len(records):,} records of {args.papers:,} papers in {time.perf_counter() - started:.1f}s; "
          f"RSS {peak_rss_mb():.0f} MB")

    started, cpu = time.perf_counter(), time.process_time()
    first = merge_works(records)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    s = first.stats
    print(f"run 1: {s['records_in']:,} records -> {s['works_out']:,} works in {seconds:.2f}s (CPU {cpu:.2f}s) "
          f"({s['records_in'] / seconds:,.0f} records/s); matched by id {s['matched_by_id']:,}, "
          f"by title {s['matched_by_fuzzy']:,}; {s['versions_linked']:,} with several versions; "
          f"peak RSS {peak_rss_mb():.0f} MB")

    previous = snapshot(first.works, dt.datetime(2025, 1, 6, tzinfo=dt.timezone.utc))
    started, cpu = time.perf_counter(), time.process_time()
    second = merge_works(records, previous)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    s = second.stats
    print(f"run 2 (+{len(previous):,} previous rows): {s['works_out']:,} works, {s['works_new']} new, "
          f"in {seconds:.2f}s (CPU {cpu:.2f}s, {s['records_in'] / seconds:,.0f} records/s); "
          f"peak RSS {peak_rss_mb():.0f} MB")
    if (second.stats["works_new"] or second.stats["works_out"] != first.stats["works_out"]
            or second.stats["versions_linked"] != first.stats["versions_linked"]):
        raise SystemExit("second run changed the works: the merge is not a fixed point")


if __name__ == "__main__":
    main()
