"""``OUTPUT/<tag>/aggregate.json``: one model's primary metrics over every task it was scored on.

Micro (all items pooled) and macro (the mean of the task means) with intervals that resample items
within each task (``summary.aggregate``), recomputed from the predictions of the tasks present.
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
    per_task, columns = {}, []
    for name, folder in sorted(tasks.items()):
        doc = read_summary(folder / SUMMARY)
        per_task[name] = read_predictions(folder / PREDICTIONS)
        columns.extend(c for c in doc.get("primary_metrics", []) if c not in columns)
    metrics = summary.aggregate(per_task, tuple(columns), resamples=resamples, seed=seed)
    path = Path(output) / tag / AGGREGATE
    write_json(
        path,
        {
            "schema_version": SCHEMA_VERSION,
            "model_tag": tag,
            "tasks": sorted(per_task),
            "aggregated": summary.AGGREGATED,
            "metrics": metrics,
        },
    )
    return path
