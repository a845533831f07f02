"""The reviews configuration (``include/reviews.yaml``), validated with pydantic.

Every error names the file, the field and the fix. One bad review entry does not
stop the others from loading: :func:`load_config` returns the good reviews and a
list of :class:`ConfigIssue` for the bad ones.

The file is hostile input as far as the loader is concerned: it bounds what it reads
before anything is converted. The file's size is capped, the YAML is composed into
nodes (aliases stay shared, nothing is expanded), and each review entry is weighed with
its aliases expanded (:func:`_weigh`, linear in the distinct nodes) before it is built
into Python objects; an entry over the bound is refused unbuilt. Id fields are checked
for type and length before ``str()`` touches them, and values shown in messages are
shortened, so a message stays a line.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
# Longest accepted id values (a DOI has no length limit, but real ones stay under 100).
_MAX_LENGTHS = {"doi": 300, "pmid": 20, "pmcid": 20}
_ISSUES_PER_ENTRY = 3


def _shown(value: object, limit: int = 60) -> str:
    """A value for a message: its repr cut to ``limit`` characters; a container is named, not printed."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return f"a {_kind(value)}"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _kind(value: object) -> str:
    return "list" if isinstance(value, list) else "mapping" if isinstance(value, dict) else \
        "true/false" if isinstance(value, bool) else type(value).__name__


def _text(value: object, field: str) -> str:
    """An id field as text, its type and length checked before it is converted."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"must be text, not a {_kind(value)}")
    text = str(value)
    limit = _MAX_LENGTHS[field]
    if len(text) > limit:
        raise ValueError(f"is too long ({len(text)} characters, at most {limit})")
    return text


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
                raise ValueError(f"{_shown(address)} is not an email address")
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
            raise ValueError(f"{_shown(value)} is not a slug")
        return value

    @field_validator("doi", mode="before")
    @classmethod
    def _doi(cls, value: object) -> str | None:
        if value is None:
            return None
        doi = normalize_doi(_text(value, "doi"))
        if doi is None or not DOI_RE.fullmatch(doi):
            raise ValueError(f"{_shown(value)} is not a DOI")
        return doi

    @field_validator("pmid", mode="before")
    @classmethod
    def _pmid(cls, value: object) -> str | None:
        if value is None:
            return None
        text = _text(value, "pmid").strip()
        if not PMID_RE.fullmatch(text):
            raise ValueError(f"{_shown(value)} is not a PubMed id")
        return text

    @field_validator("pmcid", mode="before")
    @classmethod
    def _pmcid(cls, value: object) -> str | None:
        if value is None:
            return None
        pmcid = normalize_pmcid(_text(value, "pmcid"))
        if pmcid is None or not PMCID_RE.fullmatch(pmcid):
            raise ValueError(f"{_shown(value)} is not a PMC id")
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
# Why a schedule string is invalid, or None: Airflow's parser, passed in from dags/_lib/config.py.
ScheduleCheck = Callable[[str], "str | None"]
_ALIAS_FIX = "write the values out instead of reusing anchors (&name) through aliases (*name)"


class _Refused(Exception):
    """A YAML node that must not be built (too large once its aliases are expanded, recursive, too deep)."""

    def __init__(self, problem: str, fix: str = _ALIAS_FIX):
        super().__init__(problem)
        self.fix = fix


class _Weigher:
    """The size of a node with its aliases expanded, without expanding them.

    An alias is the same node object reached twice, so each distinct node is weighed
    once (memo) and a node reached again while it is being weighed is a cycle. The
    weight is one per value plus the characters of each scalar; counting stops at
    ``limit``. Merge keys (``<<: *x``) are children like any other, so the copies
    ``SafeConstructor.flatten_mapping`` would make are counted too.
    """

    def __init__(self, limit: int, max_depth: int):
        self.limit, self.max_depth = limit, max_depth
        self.memo: dict[int, int] = {}
        self.active: set[int] = set()
        self.aliases = 0

    def weigh(self, node: yaml.Node) -> int:
        """The weight of one review entry; raises :class:`_Refused` past the limit or on a cycle."""
        self.active, self.aliases = set(), 0  # a refused entry leaves its walk unfinished
        return self._weigh(node, 0)

    def _weigh(self, node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in self.memo:
            self.aliases += 1
            return self.memo[key]
        if key in self.active:
            raise _Refused("refers to itself through a YAML alias")
        if depth > self.max_depth:
            raise _Refused(f"nests deeper than {self.max_depth} levels",
                           "a review nests two levels at most (digest: {email: [...]}); remove the extra brackets")
        if isinstance(node, yaml.ScalarNode):
            weight = 1 + len(node.value)
        else:
            self.active.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else \
                [part for pair in node.value for part in pair]
            weight = 1
            for child in children:
                weight += self._weigh(child, depth + 1)
                if weight > self.limit:
                    raise _Refused(f"expands to more than {self.limit} values and characters"
                                   + (" through YAML aliases" if self.aliases else ""))
            self.active.discard(key)
        self.memo[key] = weight
        return weight


def _read_text(path: Path, where: str) -> str:
    """The file's text, refused unread past :data:`settings.CONFIG_MAX_BYTES`."""
    limit = settings.CONFIG_MAX_BYTES
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError([ConfigIssue(where, "(file)", f"cannot read it ({exc.strerror})",
                                       f"create it or point {settings.CONFIG_ENV} at an existing file")]) from exc
    if len(data) > limit:
        raise ConfigError([ConfigIssue(where, "(file)", f"is over the limit of {limit} bytes",
                                       "keep only the reviews config in it (a review takes well under 1 KB)")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(where, "(file)", f"is not UTF-8 text (byte {exc.start})",
                                       "save it as UTF-8")]) from exc


def _review_nodes(text: str, where: str) -> tuple[Any, list[yaml.Node]]:
    """The loader and the nodes of the ``reviews:`` entries, composed but not built."""
    loader = _YAML_LOADER(text)
    try:
        # libyaml's loader when PyYAML has it (its wheels do): 8x faster, and every DAG file
        # parses the config, so with 200 reviews this is most of the DAG folder's parse time.
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError([ConfigIssue(where, position, f"is not valid YAML ({getattr(exc, 'problem', exc)})",
                                       "correct the YAML syntax at that position")]) from exc
    finally:
        loader.dispose()
    # Only ``reviews`` is ever built: whatever else the file holds (anchors parked under
    # other keys, say) is never converted.
    reviews = None
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "reviews":
                reviews = value  # the last one wins, as when the mapping is built
    if not isinstance(reviews, yaml.SequenceNode) or not reviews.value:
        raise ConfigError([ConfigIssue(where, "reviews", "must be a non-empty list of reviews",
                                       "add at least one review under 'reviews:'")])
    return loader, reviews.value


def _entry_id(node: yaml.Node) -> str | None:
    """The ``id:`` of an entry read from its node, for labels of entries that are not built."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "id" and isinstance(value, yaml.ScalarNode):
                return value.value
    return None


def _label(index: int, review_id: object) -> str:
    return f"reviews[{index}] (id {_shown(review_id)})" if isinstance(review_id, str) else f"reviews[{index}]"


def load_config(path: Path | str | None = None, *, check_schedule: ScheduleCheck | None = None) -> LoadedConfig:
    """Read and validate the config. Raise :class:`ConfigError` only if nothing can load.

    ``check_schedule`` is Airflow's timetable parser, passed in by ``dags/_lib/config.py``
    (this package never imports Airflow); a review whose schedule it refuses is reported
    and not loaded. Without it the schedule is only checked to be text.
    """
    path = Path(path) if path is not None else settings.config_path()
    where = str(path)
    loader, nodes = _review_nodes(_read_text(path, where), where)

    reviews: list[ReviewConfig] = []
    issues: list[ConfigIssue] = []
    seen: set[str] = set()
    weigher = _Weigher(settings.CONFIG_MAX_ENTRY_SIZE, settings.CONFIG_MAX_DEPTH)
    total = 0
    for index, node in enumerate(nodes):
        label = _label(index, _entry_id(node))
        try:
            total += weigher.weigh(node)
        except _Refused as exc:
            issues.append(ConfigIssue(where, label, str(exc), exc.fix))
            continue
        if total > settings.CONFIG_MAX_TOTAL_SIZE:  # many entries reusing one large anchor
            raise ConfigError([ConfigIssue(where, "reviews", "expand to more than "
                                           f"{settings.CONFIG_MAX_TOTAL_SIZE} values and characters", _ALIAS_FIX)])
        try:
            entry = loader.construct_document(node)
        except (yaml.YAMLError, ValueError, TypeError) as exc:  # a bad tag, an int too long to convert
            problem = str(getattr(exc, "problem", None) or exc)
            issues.append(ConfigIssue(where, label, f"cannot be read ({problem[:200]})",
                                      "see the example in include/reviews.yaml and docs/operations.md"))
            continue
        if isinstance(entry, dict):
            label = _label(index, entry.get("id"))
        try:
            review = ReviewConfig.model_validate(entry)
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False)
            for error in errors[:_ISSUES_PER_ENTRY]:
                loc = tuple(error["loc"])
                message = error["msg"].removeprefix("Value error, ")
                issues.append(ConfigIssue(where, f"{label}.{_field_of(loc)}", message, _fix_for(loc)))
            if len(errors) > _ISSUES_PER_ENTRY:  # a list of 20,000 wrong values is not 20,000 lines
                issues.append(ConfigIssue(where, label, f"and {len(errors) - _ISSUES_PER_ENTRY} more problems "
                                          "in this entry", "fix the ones above first"))
            continue
        if check_schedule is not None and (problem := check_schedule(review.schedule)) is not None:
            issues.append(ConfigIssue(where, f"{label}.schedule", f"{_shown(review.schedule)} is not a schedule "
                                      f"Airflow accepts ({problem[:200]})", _FIXES["schedule"]))
            continue
        if review.id in seen:
            issues.append(ConfigIssue(where, f"{label}.id", f"duplicates the id {review.id!r} of an earlier review",
                                      "give every review a unique id"))
            continue
        seen.add(review.id)
        reviews.append(review)
    return LoadedConfig(path=path, reviews=reviews, issues=issues)
