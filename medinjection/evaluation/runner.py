"""``evaluate``: score the base model and each adapter on each task, write, aggregate, compare.

1. The tasks are read once and their items routed to the scorers (``prepare``); a scorer in use
   checks its options first (a BERTScore model that cannot be had offline fails here, before any
   model is loaded).
2. For each model (``base``, then each adapter on the same base; ``loading``): a (model, task)
   whose outputs already hold this exact scoring (``scoring.fingerprint``: same model files,
   adapter files, items and protocol) is reused; the others are scored and written (``scoring``).
3. ``aggregate.json`` per model (``aggregation``), then ``comparisons.json`` and the ``vs_base``
   mappings over every model scored in the output folder (``compare``).

Under ``accelerate launch`` each process scores a shard of the items on its own device
(``processes``); the main process gathers the rows, writes and compares.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from medinjection.core.outputs import reusable, task_dir
from medinjection.core.runs import SUMMARY
from medinjection.evaluation.aggregation import write_aggregate
from medinjection.evaluation.compare import update_comparisons
from medinjection.evaluation.items import ItemError
from medinjection.evaluation.loading import ModelCache, ScoredModel, models_to_score, transformers_engine
from medinjection.evaluation.prepare import PreparedTask, prepare, resolve_tasks
from medinjection.evaluation.processes import Processes
from medinjection.evaluation.scoring import fingerprint, refresh_mix, score_task
from medinjection.evaluation.settings import EvalArguments, EvaluationError, scorer_options


def evaluate(args: EvalArguments, log: Callable[[str], None] = print) -> list[Path]:
    """Score, write and compare; returns the summary files written or reused (main process)."""
    processes = Processes()
    options = scorer_options(args)
    prepared = [prepare(spec, args) for spec in resolve_tasks(args)]
    for task in prepared:
        for kind, info in task.skipped_types.items():
            log(f"{task.spec.name}: {info['n']} {kind} item(s) not scored: {info['reason']}")
    in_use = {name: scorer for task in prepared for name, scorer in task.scorers.items()}
    for name, scorer in sorted(in_use.items()):
        if scorer.check is not None:
            scorer.check(options.get(name, {}))
    models = models_to_score(args)
    cache = ModelCache(args, processes)
    written: list[Path] = []
    for model in models:
        written.extend(_score_model(model, prepared, args, options, cache, processes, log))
    cache.close()
    if processes.main:
        for model in models:
            write_aggregate(args.output_dir, model.tag, resamples=args.bootstrap_resamples, seed=args.seed)
        update_comparisons(
            args.output_dir, alpha=args.alpha, resamples=args.bootstrap_resamples, seed=args.seed
        )
    processes.barrier()
    return written


def _score_model(
    model: ScoredModel,
    prepared: list[PreparedTask],
    args: EvalArguments,
    options: dict[str, dict],
    cache: ModelCache,
    processes: Processes,
    log: Callable[[str], None],
) -> list[Path]:
    from medinjection.evaluation.engine import generation_settings

    generation = generation_settings(cache.tokenizer_only())
    todo, reused = [], []
    for task in prepared:
        folder = task_dir(args.output_dir, model.tag, task.spec.name)
        wanted = fingerprint(model, task, args, cache.identity, generation, options)
        if not args.overwrite and reusable(folder, wanted):
            reused.append(folder / SUMMARY)
        else:
            todo.append(task)
    for path in reused:
        if processes.main:
            refresh_mix(path, model)
        log(
            f"{model.tag} / {path.parent.name}: reused {path} (same model files, adapter, items and protocol)"
        )
    if not todo:
        return reused
    written = list(reused)
    # The stack frees what scoring this model needed: vLLM's engine, then its merged-weights folder.
    with contextlib.ExitStack() as resources:
        if args.backend == "vllm":
            from medinjection.evaluation.vllm_backend import vllm_engine

            engine, backend_info, loaded = vllm_engine(model, todo, cache, resources, log)
        else:
            engine, backend_info, loaded = transformers_engine(model, todo, cache, log)
        try:
            for task in todo:
                written.extend(
                    score_task(
                        model,
                        task,
                        args,
                        engine,
                        backend_info,
                        loaded,
                        generation,
                        options,
                        processes,
                        cache,
                        log,
                    )
                )
        finally:
            cache.give_back(loaded)
    return written


__all__ = ["EvalArguments", "EvaluationError", "ItemError", "evaluate"]
