"""Scoring one model on one task: the scorers' rows, their metrics, the files written.

``score_task`` runs each scorer on this process's shard of the task's items, gathers the rows, and
on the main process computes the metrics and writes ``predictions.parquet``, ``rejected.jsonl`` and
``summary.json`` (``medinjection.core.outputs`` owns the folder). The summary's ``metrics`` are over
the whole task, its ``groups`` the same metrics per (origin, type) of the items (the rows of the
paper's table), its ``gold_issues`` the items scored with an irregular gold (``items.GOLD_ISSUES``).
A full evaluation's summary of an adapter is also copied into its run folder; a subset's
(``limit``) never is. ``fingerprint`` is what
must be equal for a score to be reused: model (name, commit, and a local folder's file hash),
adapter files, items and protocol.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medinjection.core.outputs import (
    REJECTED,
    SCHEMA_VERSION,
    read_predictions,
    read_summary,
    task_dir,
    write_json,
    write_predictions,
    write_rejected,
    write_run_copy,
)
from medinjection.core.runs import PREDICTIONS, SUMMARY
from medinjection.evaluation import stats, summary
from medinjection.evaluation.items import GOLD_ISSUES
from medinjection.evaluation.scorers import Scorer, ScoringContext
from medinjection.evaluation.settings import EvalArguments, EvaluationError

if TYPE_CHECKING:
    from medinjection.evaluation.loading import ModelCache, ScoredModel
    from medinjection.evaluation.prepare import PreparedTask
    from medinjection.evaluation.processes import Processes

STRING_COLUMNS = ("origin", "gold_issues")
"""Row columns stored as strings even when every row is null (files of several tasks concatenate)."""
EVALUATION_PACKAGES = ("sacrebleu", "rouge_score", "nltk", "bert_score", "scipy", "numpy", "pyarrow")
"""Packages behind the figures of a summary, beside those every run records (``package_versions``)."""


def protocol(args: EvalArguments, task: PreparedTask, generation: dict, options: dict) -> dict[str, Any]:
    return {
        "name": "medinjection-fr-mcq",
        "chat_version": task.chat_version,
        "generation": generation,
        "permutations": args.permutations,
        "seed": args.seed,
        "letters_only": args.letters_only,
        "engine": args.engine,
        "scorer_options": options,
    }


def fingerprint(
    model: ScoredModel,
    task: PreparedTask,
    args: EvalArguments,
    identity: dict,
    generation: dict,
    options: dict,
) -> dict[str, Any]:
    """What two scorings must share for one to stand for the other (the reuse check). A local model
    folder is the hash of its files, wherever it lies; a Hub id is its name and the commit it resolves to."""
    local = identity.get("files_sha256") is not None
    return {
        "schema_version": SCHEMA_VERSION,
        "model": None if local else args.model_name_or_path,
        "revision": None if local else args.model_revision,
        "model_commit": identity.get("revision"),
        "model_files_sha256": identity.get("files_sha256"),
        "adapter_sha256": model.adapter_sha256,
        "items_sha256": task.items_sha256,
        "protocol": protocol(args, task, generation, options),
        "dtype": args.dtype,
        "backend": args.backend,
        "merge": args.merge,
    }


def score_task(
    model: ScoredModel,
    task: PreparedTask,
    args: EvalArguments,
    engine,
    backend_info: dict,
    loaded,
    generation: dict,
    options: dict[str, dict],
    processes: Processes,
    cache: ModelCache,
    log: Callable[[str], None],
) -> list[Path]:
    """Score ``task`` with ``engine`` and write its outputs (main process); returns the summary written."""

    def context(name: str) -> ScoringContext:
        return ScoringContext(engine, args, task.spec, options.get(name, {}))

    start = time.perf_counter()
    rows: list[dict] = []
    caching = loaded.caching() if loaded is not None else contextlib.nullcontext()
    with caching:
        for name, items in task.by_scorer.items():
            scorer = task.scorers[name]
            shard = processes.shard(len(items))
            scored = scorer.score(context(name), [items[i] for i in shard])
            if len(scored) != len(shard):
                raise EvaluationError(f"scorer {name!r} returned {len(scored)} rows for {len(shard)} items")
            gathered = processes.gather(list(zip(shard, scored, strict=True)))
            for index, row in sorted(gathered, key=lambda pair: pair[0]):
                item = items[index]
                rows.append(
                    {
                        "id": item.id,
                        "task": task.spec.name,
                        "type": item.type,
                        "source": item.source,
                        "origin": item.origin,
                        "gold_issues": ",".join(item.gold_issues) or None,
                        "permutation": item.permutation,
                        "scorer": name,
                        **row,
                    }
                )
    seconds = time.perf_counter() - start
    if not processes.main:
        return []
    folder = task_dir(args.output_dir, model.tag, task.spec.name)
    how = dict(permutations=bool(args.permutations), resamples=args.bootstrap_resamples, seed=args.seed)
    metrics = compute_metrics(rows, task.scorers, context, **how)
    groups = compute_groups(rows, task.scorers, context, **how)
    float_columns = tuple(c for s in task.scorers.values() for c in s.metric_columns)
    predictions_sha = write_predictions(folder / PREDICTIONS, rows, float_columns, STRING_COLUMNS)
    write_rejected(folder / REJECTED, task.rejected)
    identity = cache.identity
    doc = {
        "schema_version": SCHEMA_VERSION,
        "model": args.model_name_or_path,
        "model_hub_id": identity["hub_id"],
        "model_revision": identity["revision"],
        "model_identity_source": identity["source"],
        "model_files_sha256": identity.get("files_sha256"),
        "model_tag": model.tag,
        "adapter": str(model.adapter.resolve()) if model.adapter else None,
        "adapter_sha256": model.adapter_sha256,
        "mix": model.mix,
        "task": task.spec.name,
        "task_spec": task.spec.model_dump(mode="json"),
        "items_sha256": task.items_sha256,
        "n_items": len(task.originals),
        "n_by_type": dict(sorted(Counter(item.type for item in task.originals).items())),
        "n_rejected": len(task.rejected),
        "gold_issues": count_gold_issues(rows),
        "skipped_types": task.skipped_types,
        "subsample": task.spec.limit is not None,
        "protocol": protocol(args, task, generation, options),
        "backend": {**backend_info, "world_size": processes.world, "batch_size": args.batch_size},
        "bootstrap": {
            "resamples": args.bootstrap_resamples,
            "method": "percentile",
            "seed": args.seed,
            "confidence": stats.CONFIDENCE,
        },
        "metric_columns": sorted({c for s in task.scorers.values() for c in s.metric_columns}),
        "binary_metrics": sorted({c for s in task.scorers.values() for c in s.binary_metrics}),
        "primary_metrics": [c for s in task.scorers.values() for c in s.tested_metrics],
        "metrics": metrics,
        "groups": groups,
        "aggregated": summary.AGGREGATED,
        "fingerprint": fingerprint(model, task, args, identity, generation, options),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "predictions": PREDICTIONS,
        "predictions_sha256": predictions_sha,
        "wall_seconds": round(seconds, 3),
        "rows_per_second": round(len(rows) / seconds, 2) if seconds > 0 else None,
    }
    path = folder / SUMMARY
    write_json(path, doc)
    run_copy = write_run_copy(doc)
    log(
        f"{model.tag} / {task.spec.name}: {len(task.originals)} items ({len(rows)} rows) in {seconds:.1f} s"
        f"{headline(metrics.get('em_constrained'))}" + (f"; also {run_copy}" if run_copy else "")
    )
    irregular = {kind: n for kind, n in doc["gold_issues"].items() if n}
    if irregular:
        log(
            f"{model.tag} / {task.spec.name}: scored as the authors did, in the denominator: "
            + ", ".join(f"{n} item(s) {kind}" for kind, n in irregular.items())
        )
    return [path]


def count_gold_issues(rows: list[dict]) -> dict[str, int]:
    """Items (original order) scored with an irregular gold, by kind of ``items.GOLD_ISSUES``."""
    counts = dict.fromkeys(GOLD_ISSUES, 0)
    for row in rows:
        if row.get("permutation", 0) == 0 and row.get("gold_issues"):
            for kind in row["gold_issues"].split(","):
                counts[kind] = counts.get(kind, 0) + 1
    return counts


def refresh_mix(path: Path, model: ScoredModel) -> None:
    """A reused summary gets the run manifest's ``mix`` when it does not hold it (one written before
    summaries recorded it): the same adapter files, hence the same run and manifest."""
    doc = read_summary(path)
    if doc.get("mix") != model.mix:
        doc["mix"] = model.mix
        write_json(path, doc)
        write_run_copy(doc)


def headline(entry: dict | None) -> str:
    """``: em_constrained 0.3731 [0.3510, 0.3952]`` for the log (``[n/a]``: no interval)."""
    if not entry or entry.get("value") is None:
        return ""
    ci = entry.get("ci95") or [None, None]
    interval = "[n/a]" if None in ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"
    return f": em_constrained {entry['value']:.4f} {interval}"


def compute_metrics(
    rows: list[dict],
    scorers: dict[str, Scorer],
    context: Callable[[str], ScoringContext],
    *,
    permutations: bool,
    resamples: int,
    seed: int,
    breakdowns: bool = True,
) -> dict[str, dict]:
    """The ``metrics`` mapping of a summary from its prediction rows (a scorer's ``summarize`` wins);
    ``breakdowns``: with the ``_by_type`` and ``_by_source`` entries."""
    metrics: dict[str, dict] = {}
    for name, scorer in scorers.items():
        scorer_rows = [row for row in rows if row["scorer"] == name]
        if not scorer_rows:
            continue
        metrics.update(
            summary.column_metrics(
                scorer_rows, scorer.metric_columns, breakdowns, resamples=resamples, seed=seed
            )
        )
        if scorer.permutable and permutations:
            metrics.update(
                summary.permutation_metrics(
                    scorer_rows, tuple(sorted(scorer.binary_metrics)), resamples=resamples, seed=seed
                )
            )
        if scorer.summarize is not None:
            metrics.update(scorer.summarize(scorer_rows, context(name)))
    summary.round_trip_check(metrics)
    return metrics


def compute_groups(
    rows: list[dict],
    scorers: dict[str, Scorer],
    context: Callable[[str], ScoringContext],
    **how,
) -> list[dict[str, Any]]:
    """The ``groups`` of a summary: one entry per (origin, type) of the items (the rows of the
    paper's table), ``{"origin", "type", "n", "metrics"}``, the metrics those of the whole
    (``compute_metrics``) over the group's rows, without the by-type and by-source breakdowns."""
    by_key: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        by_key.setdefault(summary.dataset_key(row), []).append(row)
    groups = []
    for (origin, kind), group in sorted(by_key.items()):
        n = sum(1 for row in group if row.get("permutation", 0) == 0)
        metrics = compute_metrics(group, scorers, context, breakdowns=False, **how)
        groups.append({"origin": origin, "type": kind, "n": n, "metrics": metrics})
    return groups


def resummarize(folder: Path, scorer_options: dict[str, dict] | None = None) -> dict:
    """Recompute ``metrics`` of one ``OUTPUT/<tag>/<task>/`` from its predictions.parquet (after another
    step added columns to it, e.g. ``medinjection judge``), and rewrite summary.json (its
    ``predictions_sha256`` too) and the run folder's copy (a full evaluation's only). Comparisons
    and aggregates are refreshed by ``compare.update_comparisons`` and ``aggregation.write_aggregate``."""
    from medinjection.evaluation.scorers import load_scorer
    from medinjection.evaluation.tasks import TaskSpec

    folder = Path(folder)
    doc = read_summary(folder / SUMMARY)
    rows = read_predictions(folder / PREDICTIONS)
    scorers = {name: load_scorer(name) for name in sorted({row["scorer"] for row in rows})}
    options = (
        scorer_options if scorer_options is not None else doc.get("protocol", {}).get("scorer_options", {})
    )
    spec = TaskSpec(**doc["task_spec"]) if doc.get("task_spec") else None
    boot = doc.get("bootstrap", {})
    how = dict(
        permutations=bool(doc.get("protocol", {}).get("permutations")),
        resamples=int(boot.get("resamples", stats.RESAMPLES)),
        seed=int(boot.get("seed", stats.SEED)),
    )

    def context(name: str) -> ScoringContext:
        return ScoringContext(None, None, spec, options.get(name, {}), bootstrap=boot or None)

    doc["metrics"] = compute_metrics(rows, scorers, context, **how)
    doc["groups"] = compute_groups(rows, scorers, context, **how)
    doc["gold_issues"] = count_gold_issues(rows)
    doc["predictions_sha256"] = hashlib.sha256((folder / PREDICTIONS).read_bytes()).hexdigest()
    write_json(folder / SUMMARY, doc)
    write_run_copy(doc)
    return doc


def versions() -> dict[str, str | None]:
    """``environment.package_versions()`` (what a training manifest records) and the metric packages."""
    from importlib import metadata

    from medinjection.core.environment import package_versions

    found = package_versions()
    listed = {name.replace("-", "_").lower() for name in found}
    for name in EVALUATION_PACKAGES:
        if name in listed:
            continue
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
