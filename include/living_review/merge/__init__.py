"""The merge stage: one row per real paper from every source's records and the last commit.

- :func:`merge_works` joins records into works (``docs/merge-rules.md``); its parts are
  :mod:`.idgraph` (id matching), :mod:`.fuzzy` (title matching) and :mod:`.rows`
  (field precedence, work_id, versions);
- :func:`merge_sources` is the pipeline step (staged records in, ``merged.parquet`` out);
- :func:`enrich_metadata` asks the enrichers (Crossref) for what new works lack, then merges again;
- :mod:`.portfolio` shares works between the configured reviews.
"""
from __future__ import annotations

from include.living_review.merge._values import PREPRINT_DOI_PREFIXES, has_preprint_type, preprint_server_doi
from include.living_review.merge.fuzzy import family_key, same_wording, title_key
from include.living_review.merge.rows import OUTPUT_COLUMNS, PRECEDENCE
from include.living_review.merge.works import MergeResult, merge_works

__all__ = ["OUTPUT_COLUMNS", "PRECEDENCE", "PREPRINT_DOI_PREFIXES", "MergeResult", "family_key",
           "has_preprint_type", "merge_works", "preprint_server_doi", "same_wording", "title_key"]
