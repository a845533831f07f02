"""The reviews configuration (``include/reviews.yaml``), validated with pydantic.

Every error names the file, the field and the fix. One bad review entry does not
stop the others from loading: :func:`load_config` returns the good reviews and a
list of :class:`ConfigIssue` for the bad ones.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from include.living_review import settings
from include.living_review.records.ids import DOI_RE, PMCID_RE, PMID_RE, normalize_doi, normalize_pmcid

SourceName = Literal["pubmed", "europepmc", "openalex", "opencitations", "semanticscholar"]
EnricherName = Literal["crossref"]
ALL_SOURCES: tuple[str, ...] = ("pubmed", "europepmc", "openalex", "opencitations", "semanticscholar")
ALL_ENRICHERS: tuple[str, ...] = ("crossref",)
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

_FIXES = {
    "id": "use a slug of lowercase letters, digits and '-', e.g. peer-support-mental-health",
    "doi": "write the bare DOI, e.g. 10.2196/15572",
    "pmid": "write the PubMed id as digits in quotes, e.g. \"32357127\"",
    "pmcid": "write PMC followed by digits, e.g. PMC7312261",
    "sources": f"choose from {', '.join(ALL_SOURCES)} (Crossref goes under 'enrich')",
    "enrich": f"choose from {', '.join(ALL_ENRICHERS)}",
    "schedule": "use a cron preset such as @weekly or a cron expression",
    "frequency": "use 'every_run', 'daily' or 'weekly'",
    "included_studies": "list DOIs (10.1000/xyz) or PubMed ids (\"12345678\"), one per item",
}


class DigestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: list[str] = Field(default_factory=list)
    slack: bool = True
    send_when_empty: bool = False
    # Batch several pipeline runs into one digest (e.g. daily fetch, weekly digest).
    frequency: Literal["every_run", "daily", "weekly"] = "every_run"
    # Backfilled runs (logical date older than this many days) never send a digest.
    backfill_grace_days: int = Field(default=8, ge=0)

    @field_validator("email")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+", address):
                raise ValueError(f"{address!r} is not an email address")
        return value


class ReviewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str = Field(min_length=1)
    doi: str | None = None
    pmid: str | None = None
    pmcid: str | None = None
    schedule: str = "@weekly"
    sources: list[SourceName] = Field(default_factory=lambda: ["pubmed"], min_length=1)
    # Services that add metadata to works the sources found, but list no citations of their own.
    enrich: list[EnricherName] = Field(default_factory=list)
    # The review's included studies are watched for retractions and corrections: its reference
    # list from the sources, plus these DOIs or PMIDs (for reviews whose list is not deposited).
    watch_included_studies: bool = True
    included_studies: list[str] = Field(default_factory=list)
    included_studies_only: bool = False  # watch only the ids above, not the deposited reference list
    scope_keywords: list[str] = Field(default_factory=list)
    # The review's own abstract: the scope its citing works are scored against.
    abstract: str | None = None
    digest: DigestConfig = Field(default_factory=DigestConfig)

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a slug")
        return value

    @field_validator("doi", mode="before")
    @classmethod
    def _doi(cls, value: object) -> str | None:
        if value is None:
            return None
        doi = normalize_doi(str(value))
        if doi is None or not DOI_RE.fullmatch(doi):
            raise ValueError(f"{value!r} is not a DOI")
        return doi

    @field_validator("pmid", mode="before")
    @classmethod
    def _pmid(cls, value: object) -> str | None:
        if value is None:
            return None
        text = str(value).strip()
        if not PMID_RE.fullmatch(text):
            raise ValueError(f"{value!r} is not a PubMed id")
        return text

    @field_validator("pmcid", mode="before")
    @classmethod
    def _pmcid(cls, value: object) -> str | None:
        if value is None:
            return None
        pmcid = normalize_pmcid(str(value))
        if pmcid is None or not PMCID_RE.fullmatch(pmcid):
            raise ValueError(f"{value!r} is not a PMC id")
        return pmcid

    @model_validator(mode="before")
    @classmethod
    def _crossref_enriches(cls, data: object) -> object:
        """``sources: [..., crossref]`` (the older spelling) means ``enrich: [crossref]``."""
        if isinstance(data, dict) and isinstance(data.get("sources"), list) and \
                any(s in ALL_ENRICHERS for s in data["sources"]):
            data = dict(data)
            moved = [s for s in data["sources"] if s in ALL_ENRICHERS]
            data["sources"] = [s for s in data["sources"] if s not in ALL_ENRICHERS]
            enrich = data.get("enrich") if isinstance(data.get("enrich"), list) else []
            data["enrich"] = [*enrich, *moved]
        return data

    @field_validator("sources", "enrich")
    @classmethod
    def _unique_sources(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @property
    def dag_suffix(self) -> str:
        return self.id.replace("-", "_")

    @field_validator("included_studies", mode="before")
    @classmethod
    def _included_ids(cls, value: object) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise ValueError("must be a list of DOIs or PMIDs")
        out = []
        for item in value:
            text = str(item).strip() if isinstance(item, (str, int)) else None
            if text is None or len(text) > 300:
                raise ValueError(f"{str(item)[:80]!r} is not a DOI or a PMID")
            doi = normalize_doi(text)
            if doi and DOI_RE.fullmatch(doi):
                out.append(f"doi:{doi}")
            elif PMID_RE.fullmatch(text.removeprefix("pmid:").strip()):
                out.append(f"pmid:{text.removeprefix('pmid:').strip()}")
            else:
                raise ValueError(f"{text[:80]!r} is not a DOI or a PMID")
        return list(dict.fromkeys(out))

    @model_validator(mode="after")
    def _has_ids(self) -> ReviewConfig:
        if self.pmid is None and "pubmed" in self.sources:
            raise ValueError("source 'pubmed' needs the review's pmid")
        if self.doi is None and self.pmid is None:
            raise ValueError("a review needs a doi or a pmid")
        return self


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the config file, phrased for the person who must fix it."""

    path: str
    field: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.problem}. Fix: {self.fix}."


class ConfigError(ValueError):
    """The config file as a whole is unusable (missing, not YAML, no reviews)."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    reviews: list[ReviewConfig]
    issues: list[ConfigIssue]

    def review(self, review_id: str) -> ReviewConfig:
        for review in self.reviews:
            if review.id == review_id:
                return review
        raise KeyError(f"review {review_id!r} is not configured in {self.path}")


def _field_of(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(entry)"


def _fix_for(loc: tuple[object, ...]) -> str:
    for part in reversed(loc):
        if isinstance(part, str) and part in _FIXES:
            return _FIXES[part]
    return "see the example in include/reviews.yaml and docs/operations.md"


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config(path: Path | str | None = None) -> LoadedConfig:
    """Read and validate the config. Raise :class:`ConfigError` only if nothing can load."""
    path = Path(path) if path is not None else settings.config_path()
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(where, "(file)", f"cannot read it ({exc.strerror})",
                                       f"create it or point {settings.CONFIG_ENV} at an existing file")]) from exc
    try:
        # libyaml's loader when PyYAML has it (its wheels do): 8x faster, and every DAG file
        # parses the config, so with 200 reviews this is most of the DAG folder's parse time.
        document = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader either way
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError([ConfigIssue(where, position, f"is not valid YAML ({getattr(exc, 'problem', exc)})",
                                       "correct the YAML syntax at that position")]) from exc
    if not isinstance(document, dict) or not isinstance(document.get("reviews"), list) or not document["reviews"]:
        raise ConfigError([ConfigIssue(where, "reviews", "must be a non-empty list of reviews",
                                       "add at least one review under 'reviews:'")])

    reviews: list[ReviewConfig] = []
    issues: list[ConfigIssue] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["reviews"]):
        label = f"reviews[{index}]"
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            label = f"reviews[{index}] (id {entry['id']!r})"
        try:
            review = ReviewConfig.model_validate(entry)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                message = error["msg"].removeprefix("Value error, ")
                issues.append(ConfigIssue(where, f"{label}.{_field_of(loc)}", message, _fix_for(loc)))
            continue
        if review.id in seen:
            issues.append(ConfigIssue(where, f"{label}.id", f"duplicates the id {review.id!r} of an earlier review",
                                      "give every review a unique id"))
            continue
        seen.add(review.id)
        reviews.append(review)
    return LoadedConfig(path=path, reviews=reviews, issues=issues)
