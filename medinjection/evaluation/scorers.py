"""The dispatch table of the evaluation: a scorer scores the items of some record types.

A *task* (``medinjection.evaluation.tasks``) says which items are scored; a *scorer* says how. Adding
a way of scoring is adding a module with a ``SCORER = Scorer(...)`` and one line in ``SCORERS``; the
runner routes each item to the scorer whose ``types`` contain the item's type, and summarises every
column named in ``metric_columns`` (mean and bootstrap interval, overall, by type, by source)
without knowing what the scorer does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SCORERS: dict[str, str] = {
    "mcq": "medinjection.evaluation.mcq:SCORER",
    "oeq": "medinjection.evaluation.open_ended:SCORER",
}
"""Scorer name -> ``module:attribute`` of its ``Scorer``, imported only when items need it."""


@dataclass
class ScoringContext:
    """What a scorer gets to score a task's items."""

    engine: Any
    """``medinjection.evaluation.engine.Engine`` (model, tokenizer, batching)."""
    settings: Any
    """``medinjection.evaluation.settings.EvalArguments`` of the run (None when re-summarising)."""
    task: Any = None
    """``medinjection.evaluation.tasks.TaskSpec`` of the items."""
    options: dict[str, Any] = field(default_factory=dict)
    """This scorer's options (``scorer_options(settings)[scorer.name]``)."""
    bootstrap: dict[str, Any] | None = None
    """``{"resamples", "seed"}`` of the run when there are no ``settings`` (``scoring.resummarize``)."""


@dataclass(frozen=True)
class Scorer:
    name: str
    types: frozenset[str]
    score: Callable[[ScoringContext, list], list[dict[str, Any]]]
    """Items -> one prediction row per item, in the same order."""
    metric_columns: tuple[str, ...]
    """Per-item metric columns of the rows (None / NaN where a metric does not apply)."""
    binary_metrics: frozenset[str] = frozenset()
    """Columns that are 0/1 (paired comparisons use McNemar's test on them)."""
    primary_metrics: tuple[str, ...] = ()
    """Columns tested in the paired comparisons (default: all of ``metric_columns``)."""
    summarize: Callable[[list[dict[str, Any]], ScoringContext], dict[str, dict]] | None = None
    """Metrics that are not means of a column (corpus BLEU ...): ``{name: {"value", "ci95", "n"}}``."""
    permutable: bool = False
    """Whether ``permutations`` applies (options that can be reordered)."""
    check: Callable[[dict[str, Any]], None] | None = None
    """Called with the scorer's options before any model is loaded: raises on options that cannot be
    honoured (a BERTScore model that cannot be had offline), so that a run fails before it starts."""

    @property
    def tested_metrics(self) -> tuple[str, ...]:
        return self.primary_metrics or self.metric_columns


class ScorerUnavailable(RuntimeError):
    """A scorer's module cannot be imported (not written yet, or a missing dependency)."""


def load_scorer(name: str) -> Scorer:
    if name not in SCORERS:
        raise KeyError(f"unknown scorer {name!r}; known: {sorted(SCORERS)}")
    module_name, attribute = SCORERS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ScorerUnavailable(f"scorer {name!r} ({module_name}) cannot be imported: {err}") from err
    return getattr(module, attribute)


def route(types: set[str]) -> tuple[dict[str, Scorer], dict[str, str]]:
    """Scorer per record type for ``types``, and the reason for each type no available scorer scores."""
    by_type: dict[str, Scorer] = {}
    unavailable: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for name in SCORERS:
        try:
            scorer = load_scorer(name)
        except ScorerUnavailable as err:
            unavailable[name] = str(err)
            continue
        for kind_type in scorer.types:
            by_type.setdefault(kind_type, scorer)
    for kind_type in sorted(types - set(by_type)):
        reasons[kind_type] = "; ".join(unavailable.values()) or f"no scorer scores type {kind_type!r}"
    return by_type, reasons
