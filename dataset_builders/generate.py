"""The generation stages of a build: ``translate`` and ``synthesize`` run before ``prepare``.

Each reads its sources through their adapters (English items; French seed texts), asks the LLM
through the response cache, checks every answer and writes the accepted records (our schema, JSONL)
to ``_build/generated/<task>/<source>/<rank>.jsonl``; rejects go to ``rejects/<task>/``. The
``prepare`` stage then reads those records like any source (``generated_specs``), so they are
normalised, validated, language-filtered and deduplicated with the rest.

The cache (``default_cache_path``: ``$MEDINJECTION_GENERATION_CACHE``, else
``~/.cache/medinjection/generation-cache.sqlite``; or the config's ``cache``) makes a re-run free: a
killed build resumes with every answer it had received, and since the cache lives outside the build
folder, ``build --overwrite`` (a changed filter, a new review exclusion list) pays for nothing again.
Its keys name the model, prompt version, parameters and input, so one file serves every build.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datatrove.pipeline.writers.jsonl import JsonlWriter

from medinjection.core.config import BuildConfig, ConfigError, GenerationConfig, SourceSpec
from medinjection.core.layout import Layout, Stage
from medinjection.dataset_builders.generation.backends import base_url
from medinjection.dataset_builders.generation.cache import ResponseCache
from medinjection.dataset_builders.generation.runner import Generator, estimate_tokens
from medinjection.dataset_builders.sources import get_adapter
from medinjection.dataset_builders.steps.synthesize import Synthesize
from medinjection.dataset_builders.steps.translate import Translate

STEPS = {"translate": Translate, "synthesize": Synthesize}
LLM_SECTIONS = (*STEPS, "quality_screen")
"""Every section of a build config that asks an LLM (and so has a backend and a response cache)."""
INPUTS = {"translate": "sources", "synthesize": "seeds"}
"""The generation steps' inputs, read through source adapters (the quality screen reads the build's records)."""


def _record_only(_writer, doc) -> dict:
    return {key: value for key, value in doc.metadata.items() if key != "split"}


def task_config(config: BuildConfig, task: str) -> GenerationConfig | None:
    return getattr(config, task)


CACHE_ENV = "MEDINJECTION_GENERATION_CACHE"
OLD_CACHE_NAME = "generation-cache.sqlite"  # where earlier versions kept it: <output>/_build/


def default_cache_path() -> Path:
    """``$MEDINJECTION_GENERATION_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/medinjection/generation-cache.sqlite``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().resolve()
    home = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return (home / "medinjection" / "generation-cache.sqlite").resolve()


def cache_path(config: BuildConfig, task: str, layout: Layout | None = None) -> Path:
    """The response cache of ``task``: the config's ``cache``, else the default (never in the build folder)."""
    section = task_config(config, task)
    return config.resolve(section.cache) if section.cache else default_cache_path()


def cache_paths(config: BuildConfig) -> list[Path]:
    return sorted(
        {cache_path(config, task) for task in LLM_SECTIONS if task_config(config, task) is not None}
    )


def move_old_cache(config: BuildConfig, layout: Layout) -> int:
    """Move the answers of a cache an earlier version kept in ``_build/`` into the current cache (so
    that neither ``--overwrite`` nor the new default place loses them); returns how many moved."""
    old = layout.build / OLD_CACHE_NAME
    targets = [path for path in cache_paths(config) if path != old.resolve()]
    if not old.is_file() or not targets:
        return 0
    source = ResponseCache(old)
    try:
        rows = list(source.dump())
    finally:
        source.close()
    for path in targets:
        target = ResponseCache(path)
        try:
            target.put_many(rows)
        finally:
            target.close()
    for suffix in ("", "-wal", "-shm"):
        old.with_name(old.name + suffix).unlink(missing_ok=True)
    return len(rows)


def generated_dir(layout: Layout, task: str) -> Path:
    return layout.build / "generated" / task


def make_step(config: BuildConfig, task: str, layout: Layout, limit: int | None = None):
    section = task_config(config, task)
    if limit is not None:
        section = section.model_copy(update={"limit": limit})
    return STEPS[task](
        section,
        str(config.base_dir),
        str(cache_path(config, task, layout)),
        rejects_dir=str(layout.rejects),
        usage_dir=str(layout.usage),
    )


def generation_stage(
    config: BuildConfig, task: str, layout: Layout, tasks: int, limit: int | None = None
) -> Stage:
    writer = JsonlWriter(
        str(generated_dir(layout, task)),
        output_filename="${source}/${rank}.jsonl",
        compression=None,
        adapter=_record_only,
    )
    return Stage(task, [make_step(config, task, layout, limit), writer], tasks)


def generation_stages(config: BuildConfig, layout: Layout, tasks: int) -> list[Stage]:
    """The translate and synthesize stages the config declares (none when it declares neither)."""
    return [
        generation_stage(config, task, layout, tasks)
        for task in STEPS
        if task_config(config, task) is not None
    ]


def source_names(config: BuildConfig, task: str) -> list[str]:
    section = task_config(config, task)
    specs = section.sources if task == "translate" else section.seeds
    return sorted({get_adapter(spec.adapter).name for spec in specs})


def generated_specs(config: BuildConfig, layout: Layout) -> list[SourceSpec]:
    """What the ``prepare`` stage reads of the generated records: one spec per generated source."""
    specs = []
    for task in STEPS:
        if task_config(config, task) is None:
            continue
        provenance = "translated" if task == "translate" else "synthetic"
        for name in source_names(config, task):
            path = generated_dir(layout, task) / name
            specs.append(
                SourceSpec(
                    adapter="generated", path=str(path), provenance=provenance, options={"source": name}
                )
            )
    return specs


def with_generation_sources(snapshot: dict[str, Any], config: BuildConfig) -> dict[str, Any]:
    """The config snapshot for the card and stats, with the generation sources declared too."""
    extra = []
    if config.translate is not None:
        extra += [json.loads(s.model_dump_json()) for s in config.translate.sources]
    if config.synthesize is not None:
        extra += [json.loads(s.model_dump_json()) for s in config.synthesize.seeds]
    return {**snapshot, "sources": [*snapshot["sources"], *extra]}


def check_generation_sources(config: BuildConfig) -> None:
    """Fail before any work: a missing source or seed, or an OpenAI-compatible backend without an endpoint."""
    for task in LLM_SECTIONS:
        section = task_config(config, task)
        if section is None:
            continue
        for spec in getattr(section, INPUTS[task]) if task in INPUTS else []:
            get_adapter(spec.adapter)(spec, config.base_dir).check_available()
        backend = section.backend
        if backend.type == "openai" and base_url(backend) is None:
            raise ConfigError(
                f"{task}.backend (model {backend.model!r}) has no endpoint: set {task}.backend.base_url "
                f"or ${backend.base_url_env} (there is no default; OpenAI itself is https://api.openai.com/v1)"
            )


@dataclass
class DryRun:
    task: str
    items: int
    requests: int
    cached: int
    failed_rows: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model: str
    cache: str = ""

    def line(self) -> str:
        return (
            f"{self.task}: {self.items} items, {self.cached} answers in the cache, {self.requests} requests to make "
            f"to {self.model} (~{self.prompt_tokens} prompt + ~{self.completion_tokens} completion tokens, "
            f"estimated cost ${self.cost_usd:.4f}); {self.failed_rows} source rows unreadable; cache {self.cache}"
        )


def dry_run(config: BuildConfig, task: str, layout: Layout, limit: int | None = None) -> DryRun:
    """How many requests a run would make (cache misses) and what they would cost; asks nothing."""
    step = make_step(config, task, layout, limit)
    section = step.config
    cache = step.open_cache()
    generator = Generator(section.backend, cache)
    jobs = list(step.iter_jobs())
    asked = [job.request for job in jobs if job.request is not None]
    misses = generator.misses(asked)
    cache.close()
    prompt = sum(estimate_tokens(r.messages) for r in misses)
    if task == "translate":  # a translation is about as long as its input item
        completion = sum(estimate_tokens(r.messages[1:]) for r in misses)
    else:
        completion = section.expected_output_tokens * len(misses)
    completion = min(completion, section.backend.max_tokens * len(misses))
    price = section.backend.prices.get(section.backend.model)
    cost = (prompt * price.input + completion * price.output) / 1e6 if price else 0.0
    failed = Counter(job.error is not None for job in jobs)[True]
    return DryRun(
        task,
        len(jobs),
        len(misses),
        len(asked) - len(misses),
        failed,
        prompt,
        completion,
        cost,
        section.backend.model,
        str(step.cache_path),
    )


def run_generation(
    config: BuildConfig, task: str, output: Path, tasks: int = 1, limit: int | None = None, workers: int = 1
) -> dict:
    """Run one generation stage on its own (``medinjection translate|synthesize``) into ``output``:
    generated/, rejects/, usage/ and datatrove logs; returns the summed usage."""
    from datatrove.executor import LocalPipelineExecutor

    layout = Layout(output.resolve())
    stage = generation_stage(config, task, layout, tasks, limit)
    executor = LocalPipelineExecutor(
        pipeline=stage.pipeline,
        tasks=tasks,
        workers=workers,
        logging_dir=str(layout.logs(task)),
        skip_completed=False,
    )
    executor.run()
    usage: Counter = Counter()
    for path in sorted(layout.usage.glob(f"{task}-*.json")):
        row = json.loads(path.read_text())
        usage.update({k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "rank"})
    return dict(usage)
