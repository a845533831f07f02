"""The included studies: the review's own reference list, watched for retractions and corrections.

A retracted included study is the change that matters most to a review's conclusions,
and no alert service watches references. :func:`fetch_references` is the step; the
publish commit writes ``references/.../included_studies.parquet`` and turns new
notices on included studies into ``reference_retracted`` / ``reference_corrected`` /
``reference_concern`` events (:func:`reference_changes`).
"""
from __future__ import annotations

from include.living_review.references.watch import (
    REFERENCE_EVENT_KINDS,
    committed_included,
    fetch_references,
    reference_changes,
)

__all__ = ["REFERENCE_EVENT_KINDS", "committed_included", "fetch_references", "reference_changes"]
