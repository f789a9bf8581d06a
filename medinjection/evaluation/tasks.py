"""The dispatch table of the evaluation: a task kind scores the items of some record types.

Adding a kind of scoring is adding a module with a ``TASK = TaskKind(...)`` and one line in
``TASKS``; the runner routes each item to the task whose ``types`` contain the item's type, and
summarises every column named in ``metric_columns`` (mean and bootstrap interval, overall, by type,
by source) without knowing what the task does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

TASKS: dict[str, str] = {
    "mcq": "medinjection.evaluation.mcq:TASK",
    "oeq": "medinjection.evaluation.open_ended:TASK",  # issue 12: open-ended answers and their metrics
}
"""Task kind -> ``module:attribute`` of its ``TaskKind``, imported only when items need it."""


@dataclass
class ScoringContext:
    """What a task gets to score a benchmark's items."""

    engine: Any
    """``medinjection.evaluation.engine.Engine`` (model, tokenizer, batching)."""
    settings: Any
    """``medinjection.evaluation.settings.EvalSettings``."""
    benchmark: Any = None
    """``medinjection.evaluation.benchmarks.BenchmarkSpec`` of the items."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """This task's options (``settings.task_options[task.name]``)."""
    bootstrap: dict[str, Any] | None = None
    """``{"resamples", "seed"}`` of the run when there are no ``settings`` (``runner.resummarize``)."""


@dataclass(frozen=True)
class TaskKind:
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
    """Whether ``--permutations`` applies (options that can be reordered)."""

    @property
    def tested_metrics(self) -> tuple[str, ...]:
        return self.primary_metrics or self.metric_columns


class TaskUnavailable(RuntimeError):
    """A task kind's module cannot be imported (not written yet, or a missing dependency)."""


def load_task(kind: str) -> TaskKind:
    if kind not in TASKS:
        raise KeyError(f"unknown task kind {kind!r}; known: {sorted(TASKS)}")
    module_name, attribute = TASKS[kind].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise TaskUnavailable(f"task {kind!r} ({module_name}) cannot be imported: {err}") from err
    return getattr(module, attribute)


def route(types: set[str]) -> tuple[dict[str, TaskKind], dict[str, str]]:
    """Task per record type for ``types``, and the reason for each type no available task scores."""
    by_type: dict[str, TaskKind] = {}
    unavailable: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for kind in TASKS:
        try:
            task = load_task(kind)
        except TaskUnavailable as err:
            unavailable[kind] = str(err)
            continue
        for kind_type in task.types:
            by_type.setdefault(kind_type, task)
    for kind_type in sorted(types - set(by_type)):
        reasons[kind_type] = "; ".join(unavailable.values()) or f"no task scores type {kind_type!r}"
    return by_type, reasons
