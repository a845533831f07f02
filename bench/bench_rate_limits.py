"""Rate-limit adherence: each real client, with work queued, against its local fake.

``python -m bench.bench_rate_limits [--requests 20] [--out FILE]``

Every client is built as the DAG builds it (``client_settings`` + ``build_client``)
and made to walk ``--requests`` one-record pages (or DOIs), so its throttle is the
only thing between requests. The fakes timestamp each arrival; the achieved rate is
``(n - 1) / (last - first)``. It must stay at or under the configured limit
(``settings.RATE_LIMITS``; 1% allowance for timestamp jitter) and should reach 80%
of it: being slower than the provider allows is also a cost.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import write_json

JITTER = 0.01


def cases(n: int) -> list[tuple[str, str, str | None, Any]]:
    """(label, source, api key, action) with the action taking the client and sending ``n`` requests."""
    from tests.fakes.corpus import REVIEW

    def efetch(client: Any, papers: list[Any]) -> None:
        client.batch_size = 1
        for _ in client.fetch_pages([p.pmid for p in papers if p.pmid][:n]):
            pass

    def europepmc(client: Any, papers: list[Any]) -> None:
        client.page_size = 1
        for _ in client.search_pages(f"CITES:{REVIEW['pmid']}_MED", max_records=n):
            pass

    def openalex(client: Any, papers: list[Any]) -> None:
        client.per_page = 1
        for _ in client.citing_pages(REVIEW["openalex_id"], max_records=n):
            pass

    def opencitations(client: Any, papers: list[Any]) -> None:
        # One call answers a review, so the queued work is n reviews' worth of calls.
        for _ in range(n):
            client.citations(f"doi:{REVIEW['doi']}")

    def semanticscholar(client: Any, papers: list[Any]) -> None:
        client.page_size = 1
        for _ in client.pages(f"DOI:{REVIEW['doi']}", max_records=n):
            pass

    def crossref(client: Any, papers: list[Any]) -> None:
        client.enrich([p.doi for p in papers if p.doi][:n])

    return [
        ("pubmed efetch (no key)", "pubmed", None, efetch),
        ("pubmed efetch (API key)", "pubmed", "bench-key", efetch),
        ("europepmc search", "europepmc", None, europepmc),
        ("openalex list (key)", "openalex", "bench-key", openalex),
        ("opencitations citations", "opencitations", None, opencitations),
        ("semanticscholar citations", "semanticscholar", None, semanticscholar),
        ("crossref works (mailto)", "crossref", None, crossref),
    ]


def measure(times: list[float], limit: float) -> dict[str, Any]:
    times = sorted(times)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    rate = (len(times) - 1) / span if span > 0 else float("inf")
    gaps = [b - a for a, b in zip(times, times[1:])]
    window = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    return {"requests": len(times), "span_s": span, "achieved_rps": rate, "limit_rps": limit,
            "share_of_limit": rate / limit, "min_gap_s": min(gaps) if gaps else None,
            "max_in_any_1s": window, "under_limit": rate <= limit * (1 + JITTER),
            "at_least_80pct": rate >= 0.8 * limit}


def run(n: int = 20) -> dict[str, Any]:
    from include.living_review import settings
    from include.living_review.connections import client_settings
    from include.living_review.sources import build_client
    from tests.fakes.corpus import synthetic_corpus
    from tests.fakes.stack import FAKES, LocalStack

    papers = synthetic_corpus(n + 10, seed=3)
    for i, paper in enumerate(papers):  # every source lists every paper: PubMed needs both ids
        paper.pmid = paper.pmid or str(41_000_000 + i)
        paper.pmcid = paper.pmcid or f"PMC{30_000_000 + i}"
        paper.doi = paper.doi or f"10.5555/rate.{i}"
    results: dict[str, Any] = {}
    with LocalStack(papers, smtp=False, slack=False) as stack:
        for label, source, key, action in cases(n):
            fake = stack.fakes[source]
            fake.clear()
            conf = client_settings(FAKES[source][0], host=fake.url, password=key,
                                   extra={"email": "bench@example.org"})
            client = build_client(source, conf)
            # The limit this client was configured with: settings.RATE_LIMITS[source], anonymous or keyed.
            # The throttle paces at RATE_SAFETY of that limit, so divide it back out.
            limit = 1.0 / client.http.throttle.interval / settings.RATE_SAFETY
            started = time.perf_counter()
            action(client, papers)
            results[label] = {"source": source, "settings_limits": list(settings.RATE_LIMITS[source]),
                              **measure([r.at for r in fake.requests], limit),
                              "seconds": time.perf_counter() - started,
                              "statuses": sorted({str(r.status) for r in client.http.log.records})}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = run(args.requests)
    if args.out:
        write_json(result, args.out)
    else:
        json.dump(result, sys.stdout, indent=2, default=str)
        print()


if __name__ == "__main__":
    main()
