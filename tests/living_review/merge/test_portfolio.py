"""A paper citing two configured reviews is fetched once and shared; the cross-review table."""
from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq

from include.living_review.storage import Layout
from include.living_review import pipeline
from include.living_review.config import ReviewConfig
from include.living_review.sources.pubmed import PubMedClient
from tests.fakes.corpus import seed_corpus
from tests.fakes.eutils import FakeEutils

DAY = dt.datetime.now(dt.timezone.utc).date()


def run(conf: ReviewConfig, data_dir, url: str) -> None:
    ctx = pipeline.RunContext.create(conf, data_dir, dt.datetime.combine(DAY, dt.time(), dt.timezone.utc),
                                     f"test__{conf.id}")
    pipeline.fetch_source(ctx, "pubmed", PubMedClient(url))
    pipeline.merge_sources(ctx)
    pipeline.enrich_metadata(ctx, None)
    pipeline.validate(ctx)
    pipeline.publish(ctx)


def test_shared_citers_are_fetched_once_and_tabulated(tmp_path):
    papers = seed_corpus()
    first, second = papers[:8], papers[5:14]  # papers 5, 6, 7 cite both reviews
    shared = {p.pmid for p in papers[5:8]}
    reviews = [ReviewConfig(id="review-a", title="Review A", pmid="11111111", sources=["pubmed"]),
               ReviewConfig(id="review-b", title="Review B", pmid="22222222", sources=["pubmed"])]
    with FakeEutils(papers, review_pmids={"11111111": first, "22222222": second}) as fake:
        run(reviews[0], tmp_path, fake.url)
        fetched_a = {i for r in fake.requests_to("efetch") for i in r.param("id").split(",")}
        fake.requests.clear()
        run(reviews[1], tmp_path, fake.url)
        fetched_b = {i for r in fake.requests_to("efetch") for i in r.param("id").split(",")}

    assert fetched_a == {p.pmid for p in first}
    assert fetched_b == {p.pmid for p in second} - shared  # the shared citers were not fetched again
    b_rows = {r["pmid"]: r for r in pq.read_table(
        Layout.of(tmp_path, "review-b", DAY).snapshot_file).to_pylist()}
    assert set(b_rows) == {p.pmid for p in second}
    a_rows = {r["pmid"]: r for r in pq.read_table(
        Layout.of(tmp_path, "review-a", DAY).snapshot_file).to_pylist()}
    for pmid in shared:  # full metadata, routed to review B's snapshot (and so its digest)
        for field in ("title", "authors", "journal", "journal_abbrev", "publication_date", "doi", "pmcid"):
            assert b_rows[pmid][field] == a_rows[pmid][field] and b_rows[pmid][field], (pmid, field)
        assert b_rows[pmid]["sources"] == ["pubmed"]

    table = pq.read_table(tmp_path / "portfolio" / "citations_by_review.parquet").to_pylist()
    by_review: dict[str, set[str]] = {}
    for row in table:
        by_review.setdefault(row["paper_key"], set()).add(row["review_id"])
    both = {key for key, ids in by_review.items() if ids == {"review-a", "review-b"}}
    assert both == {f"doi:{p.doi.lower()}" for p in papers[5:8]}
    assert all(row["n_reviews"] == 2 for row in table if row["paper_key"] in both)
    assert len(table) == len(first) + len(second)
