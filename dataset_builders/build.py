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
      _build/                intermediate files and datatrove logs (completions make reruns free);
                             _build/build.log: datatrove's console output when ``logs_to_file``
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter

from medinjection.core.config import BuildConfig
from medinjection.core.console import Silent, StageReporter, capture_logs, rebind_loguru
from medinjection.core.layout import BUILD_OUTPUTS, Layout, Stage
from medinjection.dataset_builders import generate
from medinjection.dataset_builders.dedup import dedup_filters, dedup_stages
from medinjection.dataset_builders.sources import get_adapter
from medinjection.dataset_builders.steps.decontaminate import check_eval_sets
from medinjection.dataset_builders.steps.exact_dedup import ExactDedupKeys
from medinjection.dataset_builders.steps.finalize import Finalize
from medinjection.dataset_builders.steps.language import LanguageFilter, load_backend
from medinjection.dataset_builders.steps.normalize import TextNormalizer
from medinjection.dataset_builders.steps.quality_screen import QualityScreen
from medinjection.dataset_builders.steps.reader import SourceReader
from medinjection.dataset_builders.steps.review_exclusion import ReviewExclusionFilter, exclusion_digest
from medinjection.dataset_builders.steps.validate import SchemaValidator
from medinjection.dataset_builders.steps.writer import HubParquetWriter
from medinjection.dataset_builders.translation_check import load_report


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
                max_field_chars=config.filters.max_field_chars,
                notes_dir=str(layout.work("read")),
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
            *quality_screen(config, layout),
            HubParquetWriter(str(layout.root)),
        ],
        tasks,
    )


def quality_screen(config: BuildConfig, layout: Layout) -> list:
    """The quality screen's labelling step, when the config has a ``quality_screen:`` section."""
    if config.quality_screen is None:
        return []
    return [
        QualityScreen(
            config.quality_screen,
            str(config.base_dir),
            str(generate.cache_path(config, "quality_screen")),
            str(layout.usage),
        )
    ]


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
                    {
                        **generate.with_generation_sources(config_snapshot(config), config),
                        "translation_checks": translation_checks(config),
                    },
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


# Settings that change how a build runs or how answers are fetched, never what it contains: a
# change of them alone resumes or reuses a folder (no --overwrite). The task count is recorded
# beside the fingerprint (a resumed build must keep it; see ``build``).
RUN_ONLY = ("executor", "output", "description")
GENERATION_RUN_ONLY = ("cache", "batch_size", "max_failure_rate")
BACKEND_RUN_ONLY = (
    "base_url",
    "base_url_env",
    "api_key_env",
    "concurrency",
    "timeout_s",
    "max_retries",
    "backoff_s",
    "max_backoff_s",
    "prices",
)
FINGERPRINT_FILE = "config.sha256"
LOG_FILE = "build.log"


def config_fingerprint(config: BuildConfig) -> str:
    """What decides the build's content; a finished build with another fingerprint is not reused."""
    snapshot = config_snapshot(config)
    for key in RUN_ONLY:
        snapshot.pop(key, None)
    for task in generate.LLM_SECTIONS:
        section = snapshot.get(task) or {}
        for key in GENERATION_RUN_ONLY:
            section.pop(key, None)
        for key in BACKEND_RUN_ONLY:
            section.get("backend", {}).pop(key, None)
    if config.translation_checks:  # the reports' content: a new check changes what the card states
        snapshot["translation_checks"] = [report["report_sha256"] for report in translation_checks(config)]
    if config.filters.review:  # the lists' content, not only their paths: a new pull changes the build
        snapshot["review_lists"] = exclusion_digest([str(config.resolve(p)) for p in config.filters.review])
    return hashlib.sha256(json.dumps(snapshot, sort_keys=True).encode()).hexdigest()


class FileLoggingExecutor(LocalPipelineExecutor):
    """Datatrove's local executor, with what each task writes to stderr (loguru's console sink,
    which datatrove re-creates in every task, tqdm bars, warnings) appended to ``console_log``.

    The override wraps ``_launch_run_for_rank``, the method datatrove runs for a task both in its
    worker processes and in-process (``workers=1``): a worker's stderr is its own, so redirecting
    the parent's is not enough. Errors are re-raised unchanged (and logged in the file too).
    """

    def __init__(self, *args, console_log: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.console_log = console_log

    def _launch_run_for_rank(self, *args, **kwargs):
        if not self.console_log:
            return super()._launch_run_for_rank(*args, **kwargs)
        previous = sys.stderr
        with open(self.console_log, "a", encoding="utf-8", buffering=1) as handle:
            try:
                with contextlib.redirect_stderr(handle):
                    return super()._launch_run_for_rank(*args, **kwargs)
            finally:
                with contextlib.redirect_stderr(previous):  # loguru must not keep the closed file
                    rebind_loguru()


def make_executors(
    stages: list[Stage], config: BuildConfig, layout: Layout, workers: int, console_log: Path | None = None
):
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
            current = FileLoggingExecutor(
                **common,
                workers=min(workers, stage.tasks) if workers > 0 else -1,
                console_log=str(console_log) if console_log else None,
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


def translation_checks(config: BuildConfig) -> list[dict]:
    """What the card states of each translation check report the config names (``translation_checks``)."""
    return [load_report(config.resolve(path)) for path in config.translation_checks]


def check_sources(config: BuildConfig) -> None:
    """Fail before any work when a declared source, an evaluation set (missing, unreachable, or
    without any item to index) or the language backend is missing."""
    for spec in config.sources:
        adapter = get_adapter(spec.adapter)(spec, config.base_dir)
        adapter.check_available()
    check_eval_sets(config)
    generate.check_generation_sources(config)
    try:
        translation_checks(config)
    except ValueError as err:
        raise BuildError(f"translation_checks: {err}") from None
    load_backend(config.filters.language.backend, config.filters.language.seed)


def build(
    config: BuildConfig,
    output: str | Path | None = None,
    *,
    tasks: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    reporter: StageReporter | None = None,
    logs_to_file: bool = False,
) -> Path:
    """Run the build of ``config`` into ``output`` and return the folder.

    Re-running a finished build does no work again (datatrove completions) and leaves identical
    files; a build folder made from a different config is refused unless ``overwrite``, which
    starts it again (the generation cache lives elsewhere and is kept). The executor (type, tasks,
    workers) is not part of the config's identity: a finished build run again with another task
    count is left as it is, an unfinished one starts again with the new count (its work cannot be
    resumed by a different number of tasks).

    Args:
        progress: the per-source progress bars of the read step (on stderr).
        reporter: told about each stage as it runs (``medinjection.core.console.Console`` prints a line per
            stage); default: nothing printed.
        logs_to_file: datatrove's console logs (and anything else written to stderr during the build)
            go to ``_build/build.log`` instead of the terminal.
    """
    layout = Layout(Path(output or config.output).resolve())
    reporter = reporter or Silent()
    check_sources(config)
    n_tasks = tasks or config.executor.tasks
    fingerprint = config_fingerprint(config)
    if layout.build.exists():
        generate.move_old_cache(config, layout)
        previous, previous_tasks = read_fingerprint(layout)
        if previous != fingerprint:
            if not overwrite:
                raise BuildError(
                    f"{layout.root} holds a build of another config (or an unknown one); "
                    "pass --overwrite to rebuild it from scratch"
                )
            clear_build(config, layout)
        elif previous_tasks is not None and previous_tasks != n_tasks:
            if is_finished(layout) and not overwrite:
                reporter.note(
                    f"{layout.root} is built (with {previous_tasks} tasks, not {n_tasks}); the records do "
                    "not depend on the task count, so there is nothing to redo (--overwrite rebuilds it)"
                )
                n_tasks = previous_tasks
            else:
                reporter.note(
                    f"the unfinished build in {layout.root} ran with {previous_tasks} tasks; it cannot be "
                    f"resumed with {n_tasks}: starting it again (LLM answers come from the cache)"
                )
                clear_build(config, layout)
    layout.build.mkdir(parents=True, exist_ok=True)
    (layout.build / FINGERPRINT_FILE).write_text(f"{fingerprint} tasks={n_tasks}\n")
    n_workers = workers if workers is not None else config.executor.workers
    console_log = layout.build / LOG_FILE if logs_to_file else None
    stages = make_stages(config, layout, n_tasks, progress and not logs_to_file)
    executors = make_executors(stages, config, layout, n_workers, console_log)
    with capture_logs(console_log):
        if config.executor.type == "ray":
            connect_ray(config, log_to_driver=console_log is None)
        elif config.executor.type == "local":
            preload_workers()
        run_stages(stages, executors, config, layout, reporter)
    return layout.root


def read_fingerprint(layout: Layout) -> tuple[str, int | None]:
    """The content fingerprint and task count a folder was built with (``"", None`` when unknown)."""
    path = layout.build / FINGERPRINT_FILE
    words = path.read_text().split() if path.exists() else []
    tasks = next((int(w.split("=", 1)[1]) for w in words[1:] if w.startswith("tasks=")), None)
    return (words[0] if words else ""), tasks


def is_finished(layout: Layout) -> bool:
    return (layout.logs("finalize") / "completions" / "00000").exists()


def clear_build(config: BuildConfig, layout: Layout) -> None:
    """Delete what a build wrote, except the response caches a config may keep in the folder."""
    keep = {
        path.with_name(path.name + suffix)
        for path in generate.cache_paths(config)
        for suffix in ("", "-wal", "-shm")
    }
    for child in BUILD_OUTPUTS:
        _remove(layout.root / child, keep)


def _remove(path: Path, keep: set[Path]) -> None:
    if path.resolve() in keep or not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink():
        if any(k.is_relative_to(path.resolve()) for k in keep):
            for child in path.iterdir():
                _remove(child, keep)
        else:
            shutil.rmtree(path)
    else:
        path.unlink()


def stage_detail(layout: Layout, stage: Stage) -> str:
    """``N records[, M rejected]`` from the stage's per-task stats files (datatrove's)."""
    records = rejected = 0
    counted = False
    for path in sorted((layout.logs(stage.name) / "stats").glob("*.json")):
        steps = [step.get("stats", {}) for step in json.loads(path.read_text())]
        first = next((st for st in steps if "total" in st), None)
        if first is not None:
            counted = True
            records += _stat(first["total"])
        rejected += sum(_stat(st.get("dropped", 0)) for st in steps)
    if not counted:
        return ""
    return f"{records:,} records" + (f", {rejected:,} rejected" if rejected else "")


def _stat(value) -> int:
    return int(value.get("total", 0) if isinstance(value, dict) else value)


def run_stages(
    stages: list[Stage], executors: list, config: BuildConfig, layout: Layout, reporter: StageReporter
) -> None:
    """Run the stages in order, one reporter line each (Slurm: submit the chained jobs and return)."""
    if config.executor.type == "slurm":
        executors[-1].run()  # one sbatch array job per stage, chained with afterok
        reporter.note(f"submitted {len(stages)} Slurm jobs; their logs: {layout.build / 'logs'}")
        return
    for index, (stage, executor) in enumerate(zip(stages, executors, strict=True), 1):
        done = _completions_counter(layout.logs(stage.name) / "completions")
        with reporter.stage(stage.name, index, len(stages), stage.tasks, done) as line:
            before = done()
            executor.run()  # its dependency ran just before: datatrove does not run it again
            line.detail = "done before" if before >= stage.tasks else stage_detail(layout, stage)


def _completions_counter(folder: Path) -> Callable[[], int]:
    return lambda: sum(1 for _ in folder.iterdir()) if folder.is_dir() else 0


def preload_workers() -> None:
    """Import the build once in the forkserver that datatrove's local workers fork from, instead of in
    every worker of every stage: a few seconds per stage, most of a small build's time."""
    import multiprocess

    multiprocess.get_context("forkserver").set_forkserver_preload(["medinjection.dataset_builders.build"])


def connect_ray(config: BuildConfig, log_to_driver: bool = True) -> None:
    """Join the cluster at ``executor.ray.address`` (or start a local one) unless Ray is connected;
    ``log_to_driver=False`` leaves the workers' output in Ray's own logs."""
    import ray

    if not ray.is_initialized():
        options = config.executor.ray
        ray.init(address=options.address if options else None, log_to_driver=log_to_driver)
