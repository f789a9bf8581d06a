"""From per-item prediction rows to the ``metrics`` mapping of a summary, and to aggregates.

Every metric is a mean over items with a bootstrap 95 % interval and its ``n``:

- ``<column>``: over the original-order rows (permutation 0) where the column has a value;
- ``<column>_by_type:<TYPE>``, ``<column>_by_source:<source>``: the same within a type or source;
- with permutations (0/1 columns of permutable tasks): ``<column>_perm`` (mean over the K permuted
  copies; interval by item, resampling whole items), ``<column>_perm<k>``, ``<column>_perm_drop``
  (original minus permuted mean, a paired interval) and ``<column>_robust`` (an item counts only
  when correct in the original order and under every permutation: MMBench's CircularEval idea).

Over several tasks (``aggregate``): ``<column>_micro`` (every item pooled), ``<column>_macro`` (the
mean of the task means) and, for exact match, ``<column>_halves``: 0.5 x the mean over the
multi-answer (MCQ) datasets + 0.5 x the mean over the single-answer (MCQU) datasets, a dataset being
one (task, origin, type) group: the formula of the authors' later code (ikram28/MedAdapt,
``Evaluation/bootstrap.py``); nothing in public code ties it to this paper's aggregated figure.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from medinjection.evaluation import stats

AGGREGATED = "macro"
"""Which mean over tasks the report calls "aggregated" (the paper does not say how it forms its)."""
STATISTICS = {
    "micro": "mean over every item of every task",
    "macro": "mean of the task means",
    "halves": "0.5 x mean over the MCQ datasets + 0.5 x mean over the MCQU datasets (a dataset: one "
    "(task, origin, type) group; each mean unweighted over datasets); exact match only; the formula "
    "of the authors' later code, ikram28/MedAdapt Evaluation/bootstrap.py (original option order here)",
}
"""The aggregates of ``aggregate``, by the suffix of their names (``aggregate.json`` repeats them)."""
HALF_TYPES = ("MCQ", "MCQU")
NO_ORIGIN = "(origin not recorded)"
"""The origin of a prediction row written before rows carried one."""


def _values(rows: list[dict], column: str) -> list[float | None]:
    return [row.get(column) for row in rows]


def column_metrics(
    rows: list[dict], columns: tuple[str, ...], breakdowns: bool = True, **bootstrap
) -> dict[str, dict]:
    """Overall, by-type and by-source metrics of ``columns`` over original-order ``rows`` (overall
    only without ``breakdowns``)."""
    original = [row for row in rows if row.get("permutation", 0) == 0]
    metrics: dict[str, dict] = {}
    groups = {
        "type": sorted({row["type"] for row in original}),
        "source": sorted({row.get("source") or "" for row in original}),
    }
    if not breakdowns:
        groups = {}
    for column in columns:
        values = _values(original, column)
        if all(v is None for v in values):
            continue
        metrics[column] = stats.metric(values, **bootstrap)
        for key, names in groups.items():
            for name in names:
                subset = [row.get(column) for row in original if (row.get(key) or "") == name]
                if any(v is not None for v in subset):
                    metrics[f"{column}_by_{key}:{name}"] = stats.metric(subset, **bootstrap)
    return metrics


def permutation_metrics(rows: list[dict], columns: tuple[str, ...], **bootstrap) -> dict[str, dict]:
    """Position-bias metrics of the 0/1 ``columns`` (empty without permuted rows)."""
    by_item: dict[str, dict[int, dict]] = defaultdict(dict)
    for row in rows:
        by_item[row["id"]][int(row.get("permutation", 0))] = row
    ks = sorted({k for perms in by_item.values() for k in perms if k > 0})
    if not ks:
        return {}
    metrics: dict[str, dict] = {}
    items = [perms for perms in by_item.values() if 0 in perms and all(k in perms for k in ks)]
    for column in columns:
        original = np.array([perms[0][column] for perms in items], dtype=float)
        permuted = np.array([[perms[k][column] for k in ks] for perms in items], dtype=float)
        metrics[f"{column}_perm"] = stats.metric(permuted.mean(axis=1), **bootstrap)
        for j, k in enumerate(ks):
            metrics[f"{column}_perm{k}"] = stats.metric(permuted[:, j], **bootstrap)
        metrics[f"{column}_perm_drop"] = stats.metric(original - permuted.mean(axis=1), **bootstrap)
        metrics[f"{column}_robust"] = stats.metric(np.minimum(original, permuted.min(axis=1)), **bootstrap)
    return metrics


def origin_of(row: dict) -> str:
    return row.get("origin") or NO_ORIGIN


def dataset_key(row: dict) -> tuple[str, str]:
    """``(origin, type)`` of a prediction row: the rows of one dataset of the paper's table."""
    return origin_of(row), row["type"]


def half_weights(kinds: list[str]) -> list[float] | None:
    """Weights of the 0.5 MCQ + 0.5 MCQU formula for datasets of these types (each MCQ dataset
    0.5 / #MCQ datasets, each MCQU one 0.5 / #MCQU); None unless both types are present."""
    counts = {kind: kinds.count(kind) for kind in HALF_TYPES}
    if not all(counts.values()) or any(kind not in HALF_TYPES for kind in kinds):
        return None
    return [0.5 / counts[kind] for kind in kinds]


def datasets(per_task: dict[str, list[dict]], column: str) -> dict[tuple[str, str, str], list]:
    """``{(task, origin, type): values of column}`` over the original-order multiple-choice rows."""
    found: dict[tuple[str, str, str], list] = {}
    for task, rows in sorted(per_task.items()):
        for row in rows:
            if (
                row.get("permutation", 0) == 0
                and row.get("type") in HALF_TYPES
                and row.get(column) is not None
            ):
                found.setdefault((task, *dataset_key(row)), []).append(row[column])
    return dict(sorted(found.items()))


def halves_missing(kinds: list[str]) -> str:
    absent = [kind for kind in HALF_TYPES if kind not in kinds]
    return f"no {' and no '.join(absent)} dataset scored (the 0.5 MCQ + 0.5 MCQU formula needs both)"


def halves(per_task: dict[str, list[dict]], column: str, **bootstrap) -> dict[str, Any]:
    """``<column>_halves``: 0.5 x mean over MCQ datasets + 0.5 x mean over MCQU datasets
    (``STATISTICS["halves"]``), its interval resampling items within each dataset."""
    found = datasets(per_task, column)
    keys, groups = list(found), list(found.values())
    kinds = [kind for _, _, kind in keys]
    described = {
        "n": int(sum(len(g) for g in groups)),
        "tasks": len({task for task, _, _ in keys}),
        "datasets": {kind: [f"{t}: {o} {k}" for t, o, k in keys if k == kind] for kind in HALF_TYPES},
    }
    weights = half_weights(kinds)
    if weights is None:
        return {"value": None, "ci95": [None, None], **described, "missing": halves_missing(kinds)}
    low, high, _ = stats.stratified_bootstrap_ci(groups, "weighted", weights=weights, **bootstrap)
    value = stats.weighted_mean(groups, weights)
    return {"value": _number(value), "ci95": [_number(low), _number(high)], **described}


def aggregate(per_task: dict[str, list[dict]], columns: tuple[str, ...], **bootstrap) -> dict[str, dict]:
    """Micro (all items pooled) and macro (mean of task means) of ``columns`` over tasks, and the
    halves formula of the exact-match columns (``STATISTICS``)."""
    metrics: dict[str, dict] = {}
    for column in columns:
        groups = [
            [row.get(column) for row in rows if row.get("permutation", 0) == 0] for rows in per_task.values()
        ]
        groups = [g for g in groups if any(v is not None for v in g)]
        if not groups:
            continue
        n = int(sum(sum(v is not None for v in g) for g in groups))
        for statistic, mean in (("micro", stats.micro_mean), ("macro", stats.macro_mean)):
            low, high, _ = stats.stratified_bootstrap_ci(groups, statistic, **bootstrap)
            metrics[f"{column}_{statistic}"] = {
                "value": _number(mean(groups)),
                "ci95": [_number(low), _number(high)],
                "n": n,
                "tasks": len(groups),
            }
        if column.startswith("em_"):
            metrics[f"{column}_halves"] = halves(per_task, column, **bootstrap)
    return metrics


def _number(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def breakdown_name(name: str) -> tuple[str, str | None, str | None]:
    """``"em_constrained_by_type:MCQ"`` -> ``("em_constrained", "type", "MCQ")``."""
    base, sep, rest = name.partition("_by_")
    if not sep:
        return name, None, None
    key, _, value = rest.partition(":")
    return base, key, value


def round_trip_check(metrics: dict[str, Any]) -> None:
    """Every entry has the summary shape (a guard for writers that add metrics)."""
    for name, entry in metrics.items():
        if not {"value", "ci95", "n"} <= set(entry):
            raise ValueError(f"metric {name!r}: entry {entry} lacks value/ci95/n")
