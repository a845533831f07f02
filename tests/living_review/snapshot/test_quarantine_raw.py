"""A quarantined work's raw payloads are looked up in the staged source files after the merge."""
from __future__ import annotations

import datetime as dt
import json

from include.living_review import pipeline
from include.living_review.config import ReviewConfig
from include.living_review.records import Work, works_to_table
from include.living_review.storage import write_json_atomic, write_parquet_atomic

RUN = dt.datetime(2026, 11, 16, tzinfo=dt.timezone.utc)


def stage(ctx: pipeline.RunContext, source: str, works: list[Work], status: str = "ok") -> None:
    write_parquet_atomic(works_to_table(works), ctx.staging.source_records(source))
    write_json_atomic({"source": source, "status": status}, ctx.staging.source_stats(source))


def test_payloads_of_every_source_that_reported_the_work(tmp_path):
    review = ReviewConfig(id="r", title="R", pmid="1", sources=["pubmed", "opencitations", "europepmc"])
    ctx = pipeline.RunContext.create(review, tmp_path, RUN, "test")
    stage(ctx, "pubmed", [Work(title=None, pmid="100", sources=["pubmed"], raw='{"pmid": "100"}'),
                          Work(title="Fine", pmid="200", sources=["pubmed"], raw='{"pmid": "200"}')])
    stage(ctx, "opencitations", [Work(title=None, omid="br/9", doi="10.1/x", sources=["opencitations"],
                                      raw='{"omid": "br/9"}'),
                                 Work(title=None, omid="br/5", sources=["opencitations"], raw='{"only": "omid"}')])
    # A failed source's staged file is not what the merge used: it must not be read.
    stage(ctx, "europepmc", [Work(title=None, pmid="100", sources=["europepmc"], raw='{"epmc": 1}')],
          status="failed")
    rows = [{"work_id": "doi:10.1/x", "doi": "10.1/x", "pmid": "100", "pmcid": None, "openalex_id": None,
             "s2_paper_id": None, "omid": "br/9"},
            {"work_id": "oci:br/5", "doi": None, "pmid": None, "pmcid": None, "openalex_id": None,
             "s2_paper_id": None, "omid": "br/5"},
            {"work_id": "pmid:300", "doi": None, "pmid": "300", "pmcid": None, "openalex_id": None,
             "s2_paper_id": None, "omid": None}]

    payloads = pipeline.raw_payloads(ctx, rows)

    assert json.loads(payloads[0]) == {"pubmed": '{"pmid": "100"}', "opencitations": '{"omid": "br/9"}'}
    assert json.loads(payloads[1]) == {"opencitations": '{"only": "omid"}'}
    assert payloads[2] is None  # nothing staged shares an id with it
    assert pipeline.raw_payloads(ctx, []) == []
