"""Paired comparisons of the models scored in an output folder, corrected for multiple testing.

Two families, each corrected with Benjamini-Hochberg over all of its rows:

- ``vs_base``: every model against the base model, on every task both scored on the same items
  (same ``items_sha256``) and on the micro and macro aggregates over those tasks (and, for exact
  match, the 0.5 MCQ + 0.5 MCQU aggregate of the authors' later code, ``_aggregate_halves``);
- ``pairwise``: every pair of non-base models, the same way (e.g. NAT-TRAD vs ALL).

Only the primary metrics of each scorer are tested (for multiple choice: ``em_constrained``,
``em_greedy``, ``hamming_constrained``, ``hamming_greedy``); breakdowns are not. Items are paired on
``id`` in the original order (permutation 0). On one task, 0/1 metrics are tested with
McNemar's exact test, others with a paired sign-flip permutation test, and the interval of the
difference is a paired bootstrap. On the micro and macro aggregates, every metric is tested with a
sign-flip permutation test stratified by task (``stats.sign_flip_test``: each pair's sign
flipped, the micro or macro statistic recomputed) and the interval is a bootstrap resampling items
within each task (within each dataset for the halves aggregate). ``aggregate_comparisons`` is also
what ``medinjection report`` runs when ``comparisons.json`` lacks a comparison.

The result goes to ``OUTPUT/comparisons.json``, and each model's ``vs_base`` rows into its
summaries (``OUTPUT/<tag>/<task>/summary.json`` and the run folder's copy of a full evaluation).
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from medinjection.core.outputs import (
    BASE_TAG,
    COMPARISONS,
    SCHEMA_VERSION,
    read_predictions,
    read_summary,
    scored_outputs,
    write_json,
    write_run_copy,
)
from medinjection.core.runs import PREDICTIONS, SUMMARY
from medinjection.evaluation import stats, summary

ALPHA = 0.05
AGGREGATES = ("_aggregate_micro", "_aggregate_macro", "_aggregate_halves")
"""The task names of the aggregate comparisons, one per statistic of ``summary.STATISTICS``."""


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["id"]: row for row in rows if row.get("permutation", 0) == 0}


class _Scored:
    """One model's summaries and original-order predictions, by task (read once)."""

    def __init__(self, folders: dict[str, Path]):
        self.summaries = {task: read_summary(folder / SUMMARY) for task, folder in folders.items()}
        self.rows = {task: _by_id(read_predictions(folder / PREDICTIONS)) for task, folder in folders.items()}


def _pairs(a: dict[str, dict], b: dict[str, dict], metric: str) -> tuple[list, list]:
    """Values of ``metric`` of the items both ``{id: row}`` mappings hold, paired."""
    ids = sorted(set(a) & set(b))
    return [a[i].get(metric) for i in ids], [b[i].get(metric) for i in ids]


def _dataset_pairs(a: dict[str, dict], b: dict[str, dict], tasks: list[str], metric: str) -> dict:
    """``{(task, origin, type): (values of a, values of b)}`` of the multiple-choice datasets with pairs."""
    found: dict[tuple[str, str, str], tuple[list, list]] = {}
    for task in tasks:
        for i in sorted(set(a[task]) & set(b[task])):
            row, other = a[task][i], b[task][i]
            if row.get("type") not in summary.HALF_TYPES:
                continue
            if row.get(metric) is None or other.get(metric) is None:
                continue
            x, y = found.setdefault((task, *summary.dataset_key(row)), ([], []))
            x.append(row[metric])
            y.append(other[metric])
    return dict(sorted(found.items()))


def aggregate_comparisons(
    a: dict[str, dict[str, dict]],
    b: dict[str, dict[str, dict]],
    tasks: list[str],
    column: str,
    *,
    resamples: int,
    seed: int,
) -> list[dict]:
    """Comparisons of the aggregates of ``column`` over ``tasks`` (both models' ``{task: {id: row}}``,
    original order): ``{"task": "_aggregate_<statistic>", "metric", "tasks", ...PairedResult}``."""
    scored = [(task, _pairs(a[task], b[task], column)) for task in tasks]
    scored = [(task, g) for task, g in scored if any(v is not None for v in g[0])]
    if not scored:
        return []
    names, groups = [task for task, _ in scored], [g for _, g in scored]
    results = [
        (
            name,
            stats.compare_stratified(
                [g[0] for g in groups], [g[1] for g in groups], statistic, resamples=resamples, seed=seed
            ),
        )
        for name, statistic in zip(AGGREGATES[:2], ("micro", "macro"), strict=True)
    ]
    if column.startswith("em_"):
        found = _dataset_pairs(a, b, names, column)
        weights = summary.half_weights([kind for _, _, kind in found])
        if weights is not None:
            pairs = list(found.values())
            result = stats.compare_stratified(
                [x for x, _ in pairs],
                [y for _, y in pairs],
                "weighted",
                weights=weights,
                resamples=resamples,
                seed=seed,
            )
            results.append((AGGREGATES[2], result))
    return [{"task": name, "metric": column, "tasks": names, **result.as_dict()} for name, result in results]


def compare_models(
    model: str, baseline: str, a: _Scored, b: _Scored, *, resamples: int, seed: int
) -> tuple[list[dict], list[dict]]:
    """Rows of the comparison of ``model`` (a) with ``baseline`` (b), and the tasks not comparable."""
    rows, not_comparable = [], []
    common = []
    for task in sorted(set(a.summaries) & set(b.summaries)):
        sa, sb = a.summaries[task], b.summaries[task]
        if sa.get("items_sha256") != sb.get("items_sha256"):
            not_comparable.append(
                {
                    "model": model,
                    "baseline": baseline,
                    "task": task,
                    "reason": "different items (items_sha256)",
                }
            )
            continue
        common.append(task)
    primary: dict[str, bool] = {}
    for task in common:
        columns = [
            c
            for c in a.summaries[task].get("primary_metrics", [])
            if c in b.summaries[task].get("primary_metrics", [])
        ]
        for column in columns:
            binary = primary.setdefault(column, column in a.summaries[task].get("binary_metrics", []))
            x, y = _pairs(a.rows[task], b.rows[task], column)
            result = stats.compare_paired(x, y, binary=binary, resamples=resamples, seed=seed)
            if result.n:
                rows.append(
                    {"model": model, "baseline": baseline, "task": task, "metric": column, **result.as_dict()}
                )
    for column in primary:
        for row in aggregate_comparisons(a.rows, b.rows, common, column, resamples=resamples, seed=seed):
            rows.append({"model": model, "baseline": baseline, **row})
    return rows, not_comparable


def correct(rows: list[dict], alpha: float = ALPHA) -> list[dict]:
    """Benjamini-Hochberg over ``rows`` (one family): ``p_adjusted``, ``significant``, ``verdict``."""
    adjusted = stats.benjamini_hochberg([row.get("p_value") for row in rows])
    for row, p_adj in zip(rows, adjusted, strict=True):
        row["p_adjusted"] = p_adj
        row["significant"] = p_adj is not None and p_adj < alpha
        row["verdict"] = stats.verdict(row.get("diff"), row["significant"])
    return rows


def update_comparisons(
    output: Path, *, alpha: float = ALPHA, resamples: int = stats.RESAMPLES, seed: int = stats.SEED
) -> dict[str, Any]:
    """Recompute ``OUTPUT/comparisons.json`` from every scored model, and the summaries' ``vs_base``."""
    output = Path(output)
    folders = scored_outputs(output)
    scored = {tag: _Scored(tasks) for tag, tasks in folders.items()}
    families: dict[str, list[dict]] = {"vs_base": [], "pairwise": []}
    not_comparable: list[dict] = []
    others = sorted(tag for tag in scored if tag != BASE_TAG)
    if BASE_TAG in scored:
        for tag in others:
            rows, skipped = compare_models(
                tag, BASE_TAG, scored[tag], scored[BASE_TAG], resamples=resamples, seed=seed
            )
            families["vs_base"].extend(rows)
            not_comparable.extend(skipped)
    for tag_a, tag_b in combinations(others, 2):
        rows, skipped = compare_models(
            tag_a, tag_b, scored[tag_a], scored[tag_b], resamples=resamples, seed=seed
        )
        families["pairwise"].extend(rows)
        not_comparable.extend(skipped)
    for rows in families.values():
        correct(rows, alpha)
    result = {
        "schema_version": SCHEMA_VERSION,
        "alpha": alpha,
        "correction": "benjamini-hochberg (per family)",
        "bootstrap": {
            "resamples": resamples,
            "seed": seed,
            "method": "percentile",
            "confidence": stats.CONFIDENCE,
        },
        "families": families,
        "not_comparable": not_comparable,
    }
    write_json(output / COMPARISONS, result)
    _write_vs_base(output, folders, families["vs_base"])
    return result


def _write_vs_base(output: Path, folders: dict[str, dict[str, Path]], rows: list[dict]) -> None:
    keys = (
        "n",
        "value",
        "baseline_value",
        "diff",
        "ci95",
        "test",
        "p_value",
        "p_adjusted",
        "significant",
        "verdict",
    )
    for tag, tasks in folders.items():
        if tag == BASE_TAG:
            continue
        for task, folder in tasks.items():
            mine = {
                row["metric"]: {k: row[k] for k in keys}
                for row in rows
                if row["model"] == tag and row["task"] == task
            }
            path = folder / SUMMARY
            summary = read_summary(path)
            if mine:
                summary["vs_base"] = mine
            else:
                summary.pop("vs_base", None)
            write_json(path, summary)
            write_run_copy(summary)
