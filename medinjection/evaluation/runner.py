"""``evaluate``: score the base model and each adapter on each benchmark, write, summarise, compare.

1. Benchmarks are read once (``load_items``), their items routed by type to the tasks of
   ``tasks.TASKS`` (types no available task scores are counted in the summary, never scored as 0),
   multiple-choice items copied under ``permutations`` seeded option orders.
2. For each model (``base``, then each adapter on the same base): a (model, benchmark) whose
   outputs already hold this exact scoring (same model, adapter hash, items and protocol) is reused;
   otherwise its tasks score the items, and ``predictions.parquet`` + ``summary.json`` are written
   (an adapter's summary also into its run folder).
3. ``aggregate.json`` per model, then ``comparisons.json`` and the ``vs_base`` mappings over every
   model scored in the output folder.

Under ``accelerate launch`` each process scores a shard of the items (every ``world_size``-th) on its
own device; the main process gathers the rows, writes and compares.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medinjection.core.outputs import (
    AGGREGATE,
    BASE_TAG,
    REJECTED,
    SCHEMA_VERSION,
    bench_dir,
    read_json,
    read_predictions,
    reusable,
    scored_outputs,
    write_json,
    write_predictions,
    write_rejected,
    write_run_copy,
)
from medinjection.core.runs import PREDICTIONS, SUMMARY, find_runs
from medinjection.evaluation import stats, summary
from medinjection.evaluation.benchmarks import BenchmarkSpec, dataset_benchmark, load_benchmark
from medinjection.evaluation.compare import update_comparisons
from medinjection.evaluation.items import (
    EvalItem,
    ItemError,
    dataset_chat_version,
    items_sha256,
    load_items,
)
from medinjection.evaluation.permutations import permuted_items
from medinjection.evaluation.tasks import ScoringContext, TaskKind, route

BACKENDS = ("transformers", "vllm")
ENGINES = ("batched", "reference")


class EvaluationError(RuntimeError):
    """A setting that cannot be honoured (e.g. nothing to score); the message says what to change."""


@dataclass
class EvalSettings:
    model: str
    revision: str | None = None
    adapters: list[str | Path] = field(default_factory=list)
    """Run folders, or folders of run folders (``runs/``)."""
    base: bool = True
    """Score the base model too (the baseline of the paired comparisons; reused when already scored)."""
    benchmarks: list[str] = field(default_factory=list)
    dataset: str | None = None
    config: str | None = None
    split: str = "test"
    dataset_revision: str | None = None
    data_dir: Path | None = None
    output: Path = Path("eval")
    permutations: int = 0
    seed: int = 0
    letters_only: bool = True
    batch_size: int = 64
    max_batch_tokens: int = 32768
    dtype: str = "auto"
    device: str = "auto"
    backend: str = "transformers"
    engine: str = "batched"
    merge: bool = False
    merge_check_items: int = 32
    bootstrap_resamples: int = stats.RESAMPLES
    alpha: float = 0.05
    skip_bad_rows: bool = False
    overwrite: bool = False
    limit: int | None = None
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: Callable[[str], None] = print


@dataclass
class PreparedBenchmark:
    spec: BenchmarkSpec
    originals: list[EvalItem]
    by_task: dict[str, list[EvalItem]]
    tasks: dict[str, TaskKind]
    rejected: list[dict]
    skipped_types: dict[str, dict]
    chat_version: str
    items_sha256: str


# ---- benchmarks ------------------------------------------------------------------------------------
def resolve_benchmarks(settings: EvalSettings) -> list[BenchmarkSpec]:
    specs = [load_benchmark(name, settings.data_dir) for name in settings.benchmarks]
    if settings.dataset:
        if not settings.config:
            raise EvaluationError("--dataset needs --config (native, translated, synthetic or a mix)")
        specs.append(
            dataset_benchmark(settings.dataset, settings.config, settings.split, settings.dataset_revision)
        )
    if not specs:
        raise EvaluationError(
            "nothing to score: give --benchmark NAME (repeatable) or --dataset DIR --config NAME"
        )
    names = Counter(spec.name for spec in specs)
    if any(n > 1 for n in names.values()):
        raise EvaluationError(f"benchmark names must differ (outputs are named by them): {dict(names)}")
    if settings.limit is not None:
        specs = [spec.model_copy(update={"limit": settings.limit}) for spec in specs]
    return specs


def prepare(spec: BenchmarkSpec, settings: EvalSettings) -> PreparedBenchmark:
    item_set = load_items(spec, skip_bad_rows=settings.skip_bad_rows)
    chat_version = spec.chat_version
    if spec.dataset is not None and spec.dataset.path:
        chat_version = dataset_chat_version(Path(spec.dataset.path)) or chat_version
    by_type, reasons = route({item.type for item in item_set.items})
    counts = Counter(item.type for item in item_set.items)
    skipped = {t: {"n": counts[t], "reason": reasons[t]} for t in sorted(reasons)}
    by_task: dict[str, list[EvalItem]] = {}
    tasks: dict[str, TaskKind] = {}
    originals = [item for item in item_set.items if item.type in by_type]
    for item in originals:
        task = by_type[item.type]
        tasks[task.name] = task
        bucket = by_task.setdefault(task.name, [])
        bucket.append(item)
        if task.permutable:
            bucket.extend(permuted_items([item], settings.permutations, settings.seed, chat_version))
    return PreparedBenchmark(
        spec, originals, by_task, tasks, item_set.rejected, skipped, chat_version, items_sha256(originals)
    )


# ---- distributed -----------------------------------------------------------------------------------
class _Processes:
    """The accelerate processes of a data-parallel run (one process: no-op)."""

    def __init__(self) -> None:
        self.state = None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            import torch
            from accelerate import PartialState

            # Without CUDA, accelerate only joins the processes (gloo) when told to run on CPU.
            self.state = PartialState(cpu=not torch.cuda.is_available())

    @property
    def rank(self) -> int:
        return self.state.process_index if self.state else 0

    @property
    def world(self) -> int:
        return self.state.num_processes if self.state else 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str | None:
        return str(self.state.device) if self.state else None

    def gather(self, rows: list) -> list:
        if not self.state:
            return rows
        from accelerate.utils import gather_object

        return gather_object(rows)

    def barrier(self) -> None:
        if self.state:
            self.state.wait_for_everyone()


# ---- models ----------------------------------------------------------------------------------------
@dataclass
class _Model:
    tag: str
    adapter: Path | None
    adapter_sha256: str | None


def models_to_score(settings: EvalSettings) -> list[_Model]:
    models = [_Model(BASE_TAG, None, None)] if settings.base or not settings.adapters else []
    seen: dict[str, Path] = {}
    for path in settings.adapters:
        for layout in find_runs(path):
            if layout.name == BASE_TAG:
                raise EvaluationError(
                    f"{layout.root}: a run folder cannot be named {BASE_TAG!r} (the base model's tag)"
                )
            if layout.name in seen and seen[layout.name] != layout.root.resolve():
                raise EvaluationError(
                    f"two run folders named {layout.name!r} ({seen[layout.name]}, {layout.root}): outputs are named by the folder"
                )
            seen[layout.name] = layout.root.resolve()
            models.append(_Model(layout.name, layout.root, layout.adapter_sha256()))
    return models


def protocol(settings: EvalSettings, prepared: PreparedBenchmark, tokenizer_settings: dict) -> dict[str, Any]:
    return {
        "name": "medinjection-fr-mcq",
        "chat_version": prepared.chat_version,
        "generation": tokenizer_settings,
        "permutations": settings.permutations,
        "seed": settings.seed,
        "letters_only": settings.letters_only,
        "engine": settings.engine,
        "task_options": settings.task_options,
    }


# ---- the run ---------------------------------------------------------------------------------------
def evaluate(settings: EvalSettings) -> list[Path]:
    """Score, write and compare; returns the summary files written or reused (main process)."""
    if settings.backend not in BACKENDS:
        raise EvaluationError(f"backend {settings.backend!r}; allowed: {list(BACKENDS)}")
    if settings.engine not in ENGINES:
        raise EvaluationError(f"engine {settings.engine!r}; allowed: {list(ENGINES)}")
    if settings.engine == "reference" and settings.backend != "transformers":
        raise EvaluationError(
            "--engine reference runs transformers' generate: use it with --backend transformers"
        )
    if settings.permutations < 0:
        raise EvaluationError("--permutations must be 0 or more")
    processes = _Processes()
    specs = resolve_benchmarks(settings)
    prepared = [prepare(spec, settings) for spec in specs]
    for bench in prepared:
        for kind, info in bench.skipped_types.items():
            settings.log(f"{bench.spec.name}: {info['n']} {kind} item(s) not scored: {info['reason']}")
    models = models_to_score(settings)
    loader = _Loader(settings, processes)
    written: list[Path] = []
    for model in models:
        written.extend(_score_model(model, prepared, settings, loader, processes))
    loader.close()
    if processes.main:
        for model in models:
            write_aggregate(
                settings.output, model.tag, resamples=settings.bootstrap_resamples, seed=settings.seed
            )
        update_comparisons(
            settings.output, alpha=settings.alpha, resamples=settings.bootstrap_resamples, seed=settings.seed
        )
    processes.barrier()
    return written


class _Loader:
    """Loads the base once and each adapter on it (or merged copies), and builds engines."""

    def __init__(self, settings: EvalSettings, processes: _Processes):
        self.settings = settings
        self.processes = processes
        self._base = None
        self.tokenizer = None
        self.base_info: dict[str, Any] = {}
        self._identity: dict[str, str | None] | None = None

    def _model_settings(self):
        from medinjection.evaluation.models import ModelSettings

        device = self.settings.device
        if device == "auto" and self.processes.device:
            device = self.processes.device
        return ModelSettings(self.settings.model, self.settings.revision, self.settings.dtype, device)

    @property
    def identity(self) -> dict[str, str | None]:
        """``{"hub_id", "revision", "source"}`` of the base (``medinjection.models.identity.base_identity``), found once."""
        if self._identity is None:
            from medinjection.models.identity import base_identity

            self._identity = base_identity(self.settings.model, self.settings.revision)
        return self._identity

    def base(self):
        if self._base is None:
            from medinjection.evaluation.models import load_base

            self._base, self.tokenizer, self.base_info = load_base(self._model_settings())
        return self._base

    def fresh_base(self):
        from medinjection.evaluation.models import load_base

        model, _, _ = load_base(self._model_settings())
        return model

    def tokenizer_only(self):
        if self.tokenizer is None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(
                self.settings.model, revision=self.settings.revision
            )
        return self.tokenizer

    def close(self) -> None:
        """Drop the base model and give its memory back (before vLLM takes the GPU, and at the end)."""
        import gc

        self._base = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass


def _fingerprint(model: _Model, bench: PreparedBenchmark, settings: EvalSettings, generation: dict) -> dict:
    return {
        "model": settings.model,
        "revision": settings.revision,
        "adapter_sha256": model.adapter_sha256,
        "items_sha256": bench.items_sha256,
        "protocol": protocol(settings, bench, generation),
        "dtype": settings.dtype,
        "backend": settings.backend,
        "merge": settings.merge,
    }


def _score_model(
    model: _Model,
    prepared: list[PreparedBenchmark],
    settings: EvalSettings,
    loader: _Loader,
    processes: _Processes,
) -> list[Path]:
    import contextlib

    from medinjection.evaluation.engine import generation_settings

    generation = generation_settings(loader.tokenizer_only())
    todo, reused = [], []
    for bench in prepared:
        folder = bench_dir(settings.output, model.tag, bench.spec.name)
        if not settings.overwrite and reusable(folder, _fingerprint(model, bench, settings, generation)):
            reused.append(folder / SUMMARY)
        else:
            todo.append(bench)
    for path in reused:
        settings.log(
            f"{model.tag} / {path.parent.name}: reused {path} (same model, adapter, items and protocol)"
        )
    if not todo:
        return reused
    written = list(reused)
    # The stack frees what scoring this model needed: vLLM's engine, then its merged-weights folder.
    with contextlib.ExitStack() as resources:
        if settings.backend == "vllm":
            engine, backend_info, loaded = _vllm_engine(model, todo, settings, loader, resources)
        else:
            engine, backend_info, loaded = _engine(model, todo, settings, loader)
        try:
            for bench in todo:
                written.extend(
                    _score_benchmark(
                        model, bench, settings, engine, backend_info, loaded, generation, processes, loader
                    )
                )
        finally:
            if loaded is not None:
                loader._base = loaded.release()
    return written


def _merge_check_items(todo: list[PreparedBenchmark], settings: EvalSettings):
    """The first ``merge_check_items`` multiple-choice items, and a few open-ended ones."""
    from medinjection.evaluation.models import MERGE_CHECK_OEQ_ITEMS

    originals = [item for bench in todo for item in bench.originals]
    mc = [item for item in originals if item.is_mc][: settings.merge_check_items]
    oeq = [item for item in originals if item.type == "OEQ"][
        : min(MERGE_CHECK_OEQ_ITEMS, settings.merge_check_items)
    ]
    return mc, oeq


def _adapter(
    model: _Model, todo: list[PreparedBenchmark], settings: EvalSettings, loader: _Loader, merge: bool
):
    """The adapter loaded on the base (merged after the check when ``merge``), and what to record."""
    from medinjection.evaluation.models import load_adapter, merge_checked

    loaded = load_adapter(loader.base(), model.adapter)
    if loaded.info["adapter_sha256"] != model.adapter_sha256:
        raise EvaluationError(f"{model.adapter}: the adapter files changed while the run was starting")
    if merge:
        mc, oeq = _merge_check_items(todo, settings)
        loaded = merge_checked(
            loaded, loader.fresh_base(), loader.tokenizer, mc, oeq, letters_only=settings.letters_only
        )
    base_hint = loaded.info.get("adapter_base_model")
    if base_hint and base_hint not in (settings.model, loader.identity["hub_id"]):
        settings.log(f"note: {model.adapter} was trained on {base_hint!r}; scoring it on {settings.model!r}")
    recorded = ("merged", "dora_caching", "merge_check", "use_dora", "peft_type")
    return loaded, {k: v for k, v in loaded.info.items() if k in recorded}


def _engine(model: _Model, todo: list[PreparedBenchmark], settings: EvalSettings, loader: _Loader):
    """``(engine, backend info, loaded adapter or None)`` for one model (transformers backend)."""
    from medinjection.evaluation.engine import Engine

    scored = loader.base()
    info: dict[str, Any] = {
        "name": settings.backend,
        **loader.base_info,
        "merged": False,
        "dora_caching": False,
    }
    loaded = None
    if model.adapter is not None:
        loaded, recorded = _adapter(model, todo, settings, loader, merge=settings.merge)
        scored = loaded.model
        info.update(recorded)
    engine = Engine(
        scored, loader.tokenizer, batch_size=settings.batch_size, max_batch_tokens=settings.max_batch_tokens
    )
    return engine, info, loaded


def _vllm_engine(
    model: _Model, todo: list[PreparedBenchmark], settings: EvalSettings, loader: _Loader, resources
):
    """``(vLLM engine, backend info, None)`` for one model; ``resources`` closes the engine after scoring.

    The base model is given to vLLM as it is (a Hub id at its pinned ``--revision``, or a folder):
    transformers does not load it. vLLM cannot load DoRA adapters, so an adapter is merged with
    transformers after the merge check, saved to a temporary folder that is removed after scoring,
    and every transformers copy is freed before vLLM takes the GPU.
    """
    import tempfile

    from medinjection.evaluation.models import backend_info
    from medinjection.evaluation.vllm_backend import VLLMEngine, require_vllm

    require_vllm()  # before any weights are loaded
    model_settings = loader._model_settings()
    device = model_settings.device if model_settings.device != "auto" else "cuda"
    tokenizer = loader.tokenizer_only()
    info: dict[str, Any] = {
        "name": "vllm",
        **backend_info(model_settings, device),
        "merged": False,
        "dora_caching": False,
    }
    if model.adapter is None:
        local = Path(settings.model).expanduser().is_dir()
        weights, revision = settings.model, None if local else settings.revision
        info["vllm_weights"] = "base"
    else:
        loaded, recorded = _adapter(model, todo, settings, loader, merge=True)
        info.update(recorded)
        info["dtype"] = loader.base_info.get("dtype", info["dtype"])
        weights = resources.enter_context(tempfile.TemporaryDirectory(prefix="medinjection-vllm-"))
        loaded.model.save_pretrained(weights)
        tokenizer.save_pretrained(weights)
        del loaded  # the merged copy and the base: vLLM needs the memory
        loader.close()
        revision = None
        info["vllm_weights"] = "merged (temporary folder, removed after scoring)"
    engine = VLLMEngine(weights, tokenizer, dtype=info["dtype"], revision=revision)
    resources.callback(engine.close)
    return engine, info, None


def _score_benchmark(
    model: _Model,
    bench: PreparedBenchmark,
    settings: EvalSettings,
    engine,
    backend_info: dict,
    loaded,
    generation: dict,
    processes: _Processes,
    loader: _Loader,
) -> list[Path]:
    import contextlib

    def context(name: str) -> ScoringContext:
        return ScoringContext(engine, settings, bench.spec, settings.task_options.get(name, {}))

    start = time.perf_counter()
    rows: list[dict] = []
    caching = loaded.caching() if loaded is not None else contextlib.nullcontext()
    with caching:
        for name, items in bench.by_task.items():
            task = bench.tasks[name]
            shard = list(range(processes.rank, len(items), processes.world))
            scored = task.score(context(name), [items[i] for i in shard])
            if len(scored) != len(shard):
                raise EvaluationError(f"task {name!r} returned {len(scored)} rows for {len(shard)} items")
            gathered = processes.gather(list(zip(shard, scored, strict=True)))
            for index, row in sorted(gathered, key=lambda pair: pair[0]):
                item = items[index]
                rows.append(
                    {
                        "id": item.id,
                        "benchmark": bench.spec.name,
                        "type": item.type,
                        "source": item.source,
                        "permutation": item.permutation,
                        "task": name,
                        **row,
                    }
                )
    seconds = time.perf_counter() - start
    if not processes.main:
        return []
    folder = bench_dir(settings.output, model.tag, bench.spec.name)
    metrics = compute_metrics(
        rows,
        bench.tasks,
        context,
        permutations=bool(settings.permutations),
        resamples=settings.bootstrap_resamples,
        seed=settings.seed,
    )
    summary.round_trip_check(metrics)
    float_columns = tuple(c for t in bench.tasks.values() for c in t.metric_columns)
    predictions_sha = write_predictions(folder / PREDICTIONS, rows, float_columns)
    write_rejected(folder / REJECTED, bench.rejected)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "model": settings.model,
        "model_hub_id": loader.identity["hub_id"],
        "model_revision": loader.identity["revision"],
        "model_identity_source": loader.identity["source"],
        "model_tag": model.tag,
        "adapter": str(model.adapter.resolve()) if model.adapter else None,
        "adapter_sha256": model.adapter_sha256,
        "benchmark": bench.spec.name,
        "benchmark_spec": bench.spec.model_dump(mode="json"),
        "items_sha256": bench.items_sha256,
        "n_items": len(bench.originals),
        "n_by_type": dict(sorted(Counter(item.type for item in bench.originals).items())),
        "n_rejected": len(bench.rejected),
        "skipped_types": bench.skipped_types,
        "subsample": bench.spec.limit is not None,
        "protocol": protocol(settings, bench, generation),
        "backend": {**backend_info, "world_size": processes.world, "batch_size": settings.batch_size},
        "bootstrap": {
            "resamples": settings.bootstrap_resamples,
            "method": "percentile",
            "seed": settings.seed,
            "confidence": stats.CONFIDENCE,
        },
        "metric_columns": sorted({c for t in bench.tasks.values() for c in t.metric_columns}),
        "binary_metrics": sorted({c for t in bench.tasks.values() for c in t.binary_metrics}),
        "primary_metrics": [c for t in bench.tasks.values() for c in t.tested_metrics],
        "metrics": metrics,
        "aggregated": summary.AGGREGATED,
        "fingerprint": _fingerprint(model, bench, settings, generation),
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "predictions": PREDICTIONS,
        "predictions_sha256": predictions_sha,
        "wall_seconds": round(seconds, 3),
        "rows_per_second": round(len(rows) / seconds, 2) if seconds > 0 else None,
    }
    path = folder / SUMMARY
    write_json(path, doc)
    run_copy = write_run_copy(doc)
    figure = _headline(metrics.get("em_constrained"))
    settings.log(
        f"{model.tag} / {bench.spec.name}: {len(bench.originals)} items ({len(rows)} rows) in {seconds:.1f} s{figure}"
        + (f"; also {run_copy}" if run_copy else "")
    )
    return [path]


def _headline(entry: dict | None) -> str:
    """``: em_constrained 0.3731 [0.3510, 0.3952]`` for the log (``[n/a]``: no interval)."""
    if not entry or entry.get("value") is None:
        return ""
    ci = entry.get("ci95") or [None, None]
    interval = "[n/a]" if None in ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"
    return f": em_constrained {entry['value']:.4f} {interval}"


def compute_metrics(
    rows: list[dict],
    tasks: dict[str, TaskKind],
    context: Callable[[str], ScoringContext],
    *,
    permutations: bool,
    resamples: int,
    seed: int,
) -> dict[str, dict]:
    """The ``metrics`` mapping of a summary from its prediction rows (a task's ``summarize`` wins)."""
    metrics: dict[str, dict] = {}
    for name, task in tasks.items():
        task_rows = [row for row in rows if row["task"] == name]
        if not task_rows:
            continue
        metrics.update(summary.column_metrics(task_rows, task.metric_columns, resamples=resamples, seed=seed))
        if task.permutable and permutations:
            metrics.update(
                summary.permutation_metrics(
                    task_rows, tuple(sorted(task.binary_metrics)), resamples=resamples, seed=seed
                )
            )
        if task.summarize is not None:
            metrics.update(task.summarize(task_rows, context(name)))
    summary.round_trip_check(metrics)
    return metrics


def resummarize(folder: Path, task_options: dict[str, dict] | None = None) -> dict:
    """Recompute ``metrics`` of one ``OUTPUT/<tag>/<benchmark>/`` from its predictions.parquet (after
    another step added columns to it, e.g. ``medinjection judge``), and rewrite summary.json (its
    ``predictions_sha256`` too) and the run folder's copy. Comparisons and aggregates are refreshed by
    ``compare.update_comparisons`` and ``write_aggregate``."""
    import hashlib

    from medinjection.evaluation.tasks import load_task

    folder = Path(folder)
    doc = read_json(folder / SUMMARY)
    rows = read_predictions(folder / PREDICTIONS)
    tasks = {name: load_task(name) for name in sorted({row["task"] for row in rows})}
    options = task_options if task_options is not None else doc.get("protocol", {}).get("task_options", {})
    spec = BenchmarkSpec(**doc["benchmark_spec"]) if doc.get("benchmark_spec") else None
    boot = doc.get("bootstrap", {})
    doc["metrics"] = compute_metrics(
        rows,
        tasks,
        lambda name: ScoringContext(None, None, spec, options.get(name, {}), bootstrap=boot or None),
        permutations=bool(doc.get("protocol", {}).get("permutations")),
        resamples=int(boot.get("resamples", stats.RESAMPLES)),
        seed=int(boot.get("seed", stats.SEED)),
    )
    doc["predictions_sha256"] = hashlib.sha256((folder / PREDICTIONS).read_bytes()).hexdigest()
    write_json(folder / SUMMARY, doc)
    write_run_copy(doc)
    return doc


def write_aggregate(
    output: Path, tag: str, *, resamples: int = stats.RESAMPLES, seed: int = stats.SEED
) -> Path | None:
    """``OUTPUT/<tag>/aggregate.json``: micro and macro means of the primary metrics over its benchmarks."""
    benches = scored_outputs(output).get(tag, {})
    if not benches:
        return None
    per_benchmark, columns = {}, []
    for name, folder in sorted(benches.items()):
        doc = read_json(folder / SUMMARY)
        per_benchmark[name] = read_predictions(folder / PREDICTIONS)
        columns.extend(c for c in doc.get("primary_metrics", []) if c not in columns)
    metrics = summary.aggregate(per_benchmark, tuple(columns), resamples=resamples, seed=seed)
    path = Path(output) / tag / AGGREGATE
    write_json(
        path,
        {
            "model_tag": tag,
            "benchmarks": sorted(per_benchmark),
            "aggregated": summary.AGGREGATED,
            "metrics": metrics,
        },
    )
    return path


EVALUATION_PACKAGES = ("sacrebleu", "rouge_score", "nltk", "bert_score", "scipy", "numpy", "pyarrow")
"""Packages behind the figures of a summary, beside those every run records (``package_versions``)."""


def _versions() -> dict[str, str | None]:
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


__all__ = [
    "EvalSettings",
    "EvaluationError",
    "ItemError",
    "compute_metrics",
    "evaluate",
    "prepare",
    "resolve_benchmarks",
    "resummarize",
    "write_aggregate",
]
