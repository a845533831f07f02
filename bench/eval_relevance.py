"""Evaluate the relevance scorers on the labelled set: ``python -m bench.eval_relevance``.

Options: ``--show`` (every work with its score and reason), ``--titles-only``.

The set is ``tests/fixtures/relevance/labelled_works.yaml`` (labels documented in
the README beside it). For each scorer that is installed, with and without the
set's scope keywords, prints precision@5, precision@10 and the recall of the
"Likely relevant" section (relevant works scoring at least the threshold), plus that
section's size and precision and the average precision (AP) of the whole ranking.
``--titles-only`` drops every abstract first. The embedding rows read "not installed"
without the optional extra.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from include.living_review import relevance

ROOT = Path(__file__).resolve().parents[1]
LABELLED_SET = ROOT / "tests" / "fixtures" / "relevance" / "labelled_works.yaml"


@dataclass(frozen=True)
class LabelledSet:
    review_title: str
    review_abstract: str
    scope_keywords: list[str]
    works: list[dict[str, Any]]

    @property
    def review_text(self) -> str:
        return relevance.build_review_text(self.review_title, self.review_abstract, self.scope_keywords)


@dataclass(frozen=True)
class Evaluation:
    name: str
    precision_at_5: float
    precision_at_10: float
    recall: float
    average_precision: float
    section_size: int
    section_precision: float
    seconds: float
    scored: list[tuple[float, str]]


def review_abstract(seed_file: Path) -> str:
    """The review's abstract: everything in the seed file before "Citing Articles"."""
    text = seed_file.read_text(encoding="utf-8")
    return text.split("\nCiting Articles", 1)[0].strip()


def load_labelled_set(path: Path = LABELLED_SET) -> LabelledSet:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    review = document["review"]
    return LabelledSet(
        review_title=review["title"],
        review_abstract=review_abstract(ROOT / review["abstract_source"]),
        scope_keywords=list(document.get("scope_keywords") or []),
        works=list(document["works"]),
    )


def evaluate(data: LabelledSet, scorer: str = "tfidf", *, keywords: bool = True) -> Evaluation:
    scope = data.scope_keywords if keywords else []
    review_text = relevance.build_review_text(data.review_title, data.review_abstract, scope)
    started = time.perf_counter()
    scored = relevance.score_works(review_text, scope, data.works, scorer=scorer)
    seconds = time.perf_counter() - started
    labels = [bool(w["relevant"]) for w in data.works]
    order = relevance.order_by_relevance([score for score, _ in scored])
    section = [i for i, (score, _) in enumerate(scored) if relevance.is_likely_relevant(score)]
    found = sum(labels[i] for i in section)

    def precision_at(k: int) -> float:
        return sum(labels[i] for i in order[:k]) / min(k, len(order)) if order else 0.0

    hits, precisions = 0, []
    for rank, i in enumerate(order, 1):
        if labels[i]:
            hits += 1
            precisions.append(hits / rank)

    return Evaluation(
        name=scorer if keywords else f"{scorer}, no keywords",
        precision_at_5=precision_at(5),
        precision_at_10=precision_at(10),
        recall=found / sum(labels) if any(labels) else 0.0,
        average_precision=sum(precisions) / sum(labels) if any(labels) else 0.0,
        section_size=len(section),
        section_precision=found / len(section) if section else 0.0,
        seconds=seconds,
        scored=scored,
    )


def table(data: LabelledSet, rows: list[Evaluation | str]) -> str:
    positives = sum(bool(w["relevant"]) for w in data.works)
    lines = [
        f"Labelled set: {len(data.works)} works, {positives} relevant (base rate {positives / len(data.works):.2f}); "
        f"likely-relevant threshold {relevance.LIKELY_RELEVANT_THRESHOLD}",
        "",
        "| scorer | P@5 | P@10 | recall (likely relevant) | section size | section precision | AP | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if isinstance(row, str):
            lines.append(f"| {row} | – | – | – | – | – | – | – |")
        else:
            lines.append(f"| {row.name} | {row.precision_at_5:.2f} | {row.precision_at_10:.2f} | {row.recall:.2f} | "
                         f"{row.section_size} | {row.section_precision:.2f} | {row.average_precision:.2f} | "
                         f"{row.seconds:.2f} |")
    return "\n".join(lines)


def ranked_listing(data: LabelledSet, evaluation: Evaluation) -> str:
    lines = [f"\n{evaluation.name}: works by score (* = labelled relevant, | marks the threshold)"]
    scores = [score for score, _ in evaluation.scored]
    crossed = False
    for i in relevance.order_by_relevance(scores):
        score, reason = evaluation.scored[i]
        if not crossed and not relevance.is_likely_relevant(score):
            lines.append("  " + "-" * 20 + " threshold")
            crossed = True
        work = data.works[i]
        mark = "*" if work["relevant"] else " "
        lines.append(f"  {score:.3f} {mark} {work['id']:8} {work['title'][:70]}\n{'':18}{reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="list every work with its score and reason")
    parser.add_argument("--titles-only", action="store_true",
                        help="drop every abstract first (as when no source sends one)")
    args = parser.parse_args(argv)
    data = load_labelled_set()
    if args.titles_only:
        data = replace(data, works=[{**w, "abstract": None} for w in data.works])
        print("Titles only: every abstract dropped.")
    rows: list[Evaluation | str] = []
    notes: list[str] = []
    for scorer in relevance.SCORERS:
        if scorer not in relevance.available_scorers():
            rows.append(f"{scorer}: not installed (pip install -r {relevance.EMBEDDING_EXTRA})")
            continue
        if scorer == "embedding":
            started = time.perf_counter()
            relevance.load_embedding_model()
            notes.append(f"embedding model loaded in {time.perf_counter() - started:.1f} s (not in 'seconds')")
        rows += [evaluate(data, scorer), evaluate(data, scorer, keywords=False)]
    print(table(data, rows))
    for note in notes:
        print(note)
    if args.show:
        for row in rows:
            if isinstance(row, Evaluation):
                print(ranked_listing(data, row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
