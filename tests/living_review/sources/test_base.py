"""What every source shares: the raw-payload encoding."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.living_review.sources.base import raw_json
from include.living_review.sources.pubmed import entrez_read

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


@pytest.mark.parametrize("record", [
    {"title": "Peer support: résumé of ærø", "n": 3, "x": 2.5, "ok": True, "none": None, "list": [1, "a", {}]},
    {"title": "Half an emoji \ud83d here"},  # a lone surrogate from a "\ud83d" escape: msgspec refuses it
    {"big": 123456789012345678901234567890},
    [],
])
def test_raw_json_is_json_of_the_same_record(record):
    assert json.loads(raw_json(record)) == record


def test_raw_json_keeps_a_lone_surrogate_for_the_staging_scrub():
    assert raw_json({"title": "a\ud83db"}) == '{"title": "a\ud83db"}'


@pytest.mark.parametrize("name", ["pubmed1.xml", "pubmed4.xml", "pubmed7.xml"])
def test_raw_json_of_bio_entrez_records_matches_json_dumps_with_default_str(name):
    body = (FIXTURES / "pubmed" / name).read_bytes()
    articles = entrez_read(body, "https://eutils.example/efetch.fcgi")["PubmedArticle"]
    assert articles
    for article in articles:
        assert json.loads(raw_json(article)) == json.loads(json.dumps(article, default=str, ensure_ascii=False))
