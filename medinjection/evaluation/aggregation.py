"""``OUTPUT/<tag>/aggregate.json``: one model's primary metrics over every task it was scored on.

Micro (all items pooled), macro (the mean of the task means) and, for exact match, the 0.5 MCQ +
0.5 MCQU formula of the authors' later code (``halves``), with intervals that resample items within
each task or dataset (``summary.aggregate``), recomputed from the predictions of the tasks present.
The file names the predictions it was computed from (``predictions_sha256`` per task), so that a
reader can tell a stale one (``medinjection report`` recomputes from the summaries present).
"""

from __future__ import annotations

from pathlib import Path

from medinjection.core.outputs import (
    AGGREGATE,
    SCHEMA_VERSION,
    read_predictions,
    read_summary,
    scored_outputs,
    write_json,
)
from medinjection.core.runs import PREDICTIONS, SUMMARY
from medinjection.evaluation import stats, summary


def write_aggregate(
    output: Path, tag: str, *, resamples: int = stats.RESAMPLES, seed: int = stats.SEED
) -> Path | None:
    """Write ``OUTPUT/<tag>/aggregate.json`` (None when the model has no scored task there)."""
    tasks = scored_outputs(output).get(tag, {})
    if not tasks:
        return None
    per_task, columns, inputs = {}, [], {}
    for name, folder in sorted(tasks.items()):
        doc = read_summary(folder / SUMMARY)
        per_task[name] = read_predictions(folder / PREDICTIONS)
        columns.extend(c for c in doc.get("primary_metrics", []) if c not in columns)
        inputs[name] = doc.get("predictions_sha256")
    metrics = summary.aggregate(per_task, tuple(columns), resamples=resamples, seed=seed)
    path = Path(output) / tag / AGGREGATE
    write_json(
        path,
        {
            "schema_version": SCHEMA_VERSION,
            "model_tag": tag,
            "tasks": sorted(per_task),
            "predictions_sha256": inputs,
            "aggregated": summary.AGGREGATED,
            "statistics": summary.STATISTICS,
            "bootstrap": {"resamples": resamples, "seed": seed, "method": "percentile"},
            "metrics": metrics,
        },
    )
    return path
