"""The build: datatrove stages from declared sources to a Hub-shaped dataset folder.

Stages (each a datatrove pipeline run by the configured executor, chained with ``depends=``):

1. ``prepare`` (N tasks): read sources → normalise → validate → language filter → ``_build/prepared``
2. ``exact_dedup_index`` (1 task): decide which copy of each exact duplicate is kept
3. ``write`` (N tasks): drop duplicates → drop reviewers' exclusions (``filters.review``) → add chat messages → ``data/<provenance>/<split>-<rank>.parquet``
4. ``finalize`` (1 task): ``stats.json`` (checked: in = kept + rejected for every step), ``README.md``

Output folder::

    medinjection-fr/
      README.md              configs block that load_dataset reads (the dataset card in full later)
      stats.json             per step, per source, per reason, per split
      data/<config>/<split>-NNNNN.parquet
      rejects/<step>/NNNNN.jsonl     every rejected record with step, reason, detail, kept twin
      _build/                intermediate files and datatrove logs (completions make reruns free)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter

from medinjection.config import BuildConfig
from medinjection.dataset_builders import generate
from medinjection.dataset_builders.dedup import dedup_filters, dedup_stages
from medinjection.dataset_builders.layout import BUILD_DIR, Layout, Stage
from medinjection.dataset_builders.sources import get_adapter
from medinjection.dataset_builders.steps.exact_dedup import ExactDedupKeys
from medinjection.dataset_builders.steps.finalize import Finalize
from medinjection.dataset_builders.steps.language import LanguageFilter, load_backend
from medinjection.dataset_builders.steps.normalize import TextNormalizer
from medinjection.dataset_builders.steps.reader import SourceReader
from medinjection.dataset_builders.steps.review_exclusion import ReviewExclusionFilter, exclusion_digest
from medinjection.dataset_builders.steps.validate import SchemaValidator
from medinjection.dataset_builders.steps.writer import HubParquetWriter


class BuildError(RuntimeError):
    pass


def prepared_row(_writer, doc) -> dict:
    """A prepared record as JSON: datatrove's default adapter deep-copies the metadata (``asdict``) and
    gzip costs more than the disk it saves; both were a fifth of the prepare stage at 571K records."""
    return {"text": doc.text, "id": doc.id, "metadata": doc.metadata}


def prepare_stage(config: BuildConfig, layout: Layout, tasks: int, progress: bool) -> Stage:
    """Read every source, normalise, validate and language-filter; write ``_build/prepared``."""
    rejects = str(layout.rejects)
    lang = config.filters.language
    return Stage(
        "prepare",
        [
            SourceReader(
                [*config.sources, *generate.generated_specs(config, layout)],
                str(config.base_dir),
                config.split,
                config.seed,
                rejects,
                progress,
            ),
            TextNormalizer(),
            SchemaValidator(rejects_dir=rejects),
            LanguageFilter(lang.languages, lang.threshold, lang.backend, lang.seed, rejects_dir=rejects),
            ExactDedupKeys(str(layout.work("exact_dedup"))),
            JsonlWriter(
                str(layout.prepared), output_filename="${rank}.jsonl", compression=None, adapter=prepared_row
            ),
        ],
        tasks,
    )


def review_filters(config: BuildConfig, layout: Layout) -> list:
    """Reviewers' exclusion lists, applied after dedup so that an excluded item's duplicate goes too."""
    paths = [str(config.resolve(path)) for path in config.filters.review]
    return [ReviewExclusionFilter(paths, str(layout.rejects))] if paths else []


def write_stage(config: BuildConfig, layout: Layout, tasks: int) -> Stage:
    """Drop what the dedup stages decided, then write the Hub-layout parquet shards."""
    return Stage(
        "write",
        [
            JsonlReader(str(layout.prepared)),
            *dedup_filters(config, layout),
            *review_filters(config, layout),
            HubParquetWriter(str(layout.root)),
        ],
        tasks,
    )


def make_stages(config: BuildConfig, layout: Layout, tasks: int, progress: bool = True) -> list[Stage]:
    stages = [
        *generate.generation_stages(config, layout, tasks),
        prepare_stage(config, layout, tasks, progress),
        *dedup_stages(config, layout, tasks),
        write_stage(config, layout, tasks),
    ]
    stages.append(
        Stage(
            "finalize",
            [
                Finalize(
                    str(layout.root),
                    generate.with_generation_sources(config_snapshot(config), config),
                    counted_steps(stages),
                )
            ],
            1,
        )
    )
    return stages


def counted_steps(stages: list[Stage]) -> list[tuple[str, list[str]]]:
    """(stage, step names) of the steps that count records in/kept/rejected, in pipeline order."""
    return [
        (stage.name, [step.name for step in stage.pipeline if getattr(step, "counts_records", False)])
        for stage in stages
        if any(getattr(step, "counts_records", False) for step in stage.pipeline)
    ]


def config_snapshot(config: BuildConfig) -> dict:
    return json.loads(config.model_dump_json())


def config_fingerprint(config: BuildConfig) -> str:
    """What decides the build's content; a finished build with another fingerprint is not reused."""
    snapshot = config_snapshot(config)
    for key in ("executor", "output", "description"):
        snapshot.pop(key, None)
    if config.filters.review:  # the lists' content, not only their paths: a new pull changes the build
        snapshot["review_lists"] = exclusion_digest([str(config.resolve(p)) for p in config.filters.review])
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()


def make_executors(stages: list[Stage], config: BuildConfig, layout: Layout, workers: int):
    executor = config.executor
    previous = None
    executors = []
    for stage in stages:
        common = dict(
            pipeline=stage.pipeline,
            tasks=stage.tasks,
            logging_dir=str(layout.logs(stage.name)),
            depends=previous,
        )
        if executor.type == "local":
            from datatrove.executor import LocalPipelineExecutor

            current = LocalPipelineExecutor(
                **common, workers=min(workers, stage.tasks) if workers > 0 else -1
            )
        elif executor.type == "slurm":
            from datatrove.executor import SlurmPipelineExecutor

            opts = executor.slurm
            current = SlurmPipelineExecutor(
                **common,
                workers=workers,
                time=opts.time,
                partition=opts.partition,
                cpus_per_task=opts.cpus_per_task,
                mem_per_cpu_gb=opts.mem_per_cpu_gb,
                qos=opts.qos or "normal",
                job_name=f"{opts.job_name}-{stage.name}",
                sbatch_args=dict(opts.sbatch_args),
                env_command=opts.env_command,
                slurm_logs_folder=str(layout.logs(stage.name) / "slurm"),
            )
        elif executor.type == "ray":
            from datatrove.executor import RayPipelineExecutor

            opts = executor.ray
            current = RayPipelineExecutor(
                **common,
                workers=workers,
                cpus_per_task=opts.cpus_per_task if opts else 1,
                mem_per_cpu_gb=opts.mem_per_cpu_gb if opts else 2,
            )
        else:  # pragma: no cover - the config validates the type
            raise BuildError(f"unknown executor type {executor.type!r}")
        executors.append(current)
        previous = current
    return executors


def check_sources(config: BuildConfig) -> None:
    """Fail before any work when a declared source or the language backend is missing."""
    for spec in config.sources:
        adapter = get_adapter(spec.adapter)(spec, config.base_dir)
        adapter.check_available()
    generate.check_generation_sources(config)
    load_backend(config.filters.language.backend, config.filters.language.seed)


def build(
    config: BuildConfig,
    output: str | Path | None = None,
    *,
    tasks: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Run the build of ``config`` into ``output`` and return the folder.

    Re-running a finished build does no work again (datatrove completions) and leaves identical
    files; a build folder made from a different config is refused unless ``overwrite``.
    """
    layout = Layout(Path(output or config.output).resolve())
    check_sources(config)
    fingerprint_file = layout.build / "config.sha256"
    n_tasks = tasks or config.executor.tasks
    fingerprint = f"{config_fingerprint(config)} tasks={n_tasks}"
    if layout.build.exists():
        previous = fingerprint_file.read_text().strip() if fingerprint_file.exists() else ""
        if previous != fingerprint:
            if not overwrite:
                raise BuildError(
                    f"{layout.root} holds a build of another config (or an unknown one); "
                    "pass --overwrite to rebuild it from scratch"
                )
            for child in ("data", "rejects", BUILD_DIR, "stats.json", "README.md", "dedup_report.md"):
                path = layout.root / child
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    layout.build.mkdir(parents=True, exist_ok=True)
    fingerprint_file.write_text(fingerprint + "\n")
    n_workers = workers if workers is not None else config.executor.workers
    stages = make_stages(config, layout, n_tasks, progress)
    executors = make_executors(stages, config, layout, n_workers)
    if config.executor.type == "ray":
        connect_ray(config)
    elif config.executor.type == "local":
        preload_workers()
    executors[-1].run()
    return layout.root


def preload_workers() -> None:
    """Import the build once in the forkserver that datatrove's local workers fork from, instead of in
    every worker of every stage: a few seconds per stage, most of a small build's time."""
    import multiprocess

    multiprocess.get_context("forkserver").set_forkserver_preload(["medinjection.dataset_builders.build"])


def connect_ray(config: BuildConfig) -> None:
    """Join the cluster at ``executor.ray.address`` (or start a local one) unless Ray is connected."""
    import ray

    if not ray.is_initialized():
        options = config.executor.ray
        ray.init(address=options.address if options else None)
