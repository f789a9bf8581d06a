"""What the translate and synthesize steps share: jobs read from sources through their adapters,
answered in batches through the cache, checked, and either yielded or rejected with the raw output.

Counting follows ``SourceReader``: every job is one record in (``total``, ``source:<name>:total``)
and ends ``forwarded`` or ``dropped_<reason>``, so the build's integrity checks hold with generation.

A task whose requests did not all get an answer is not marked complete: it ends in
``GenerationStageError`` once every other item is answered (and cached), so running the build again
asks exactly the failed ones. A request the server refused (a 4xx other than 401/403/404) is a
``generation_failed`` reject instead: asking again would get the same refusal.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from medinjection.core.config import GenerationConfig, SourceSpec
from medinjection.core.schema import RecordError, make_id
from medinjection.dataset_builders.generation.backends import GenerationStageError, StageStopped
from medinjection.dataset_builders.generation.cache import ResponseCache
from medinjection.dataset_builders.generation.runner import Generator, Request
from medinjection.dataset_builders.sources import get_adapter
from medinjection.dataset_builders.steps.rejects import mark_rejected, reject_writer


def open_cache(cache_path: str, cache_seed: list[str], base_dir: str) -> ResponseCache:
    """The response cache, with the answers of its seed files (paths relative to ``base_dir``) loaded."""
    cache = ResponseCache(cache_path)
    for seed in cache_seed:
        cache.load_jsonl(Path(base_dir, seed) if not Path(seed).is_absolute() else seed)
    return cache


def write_usage(usage_dir: str | None, step: str, rank: int, model: str, usage: dict[str, Any]) -> None:
    """``<usage_dir>/<step>-<rank>.json``: requests, cache hits, tokens and cost of one task."""
    if not usage_dir:
        return
    path = Path(usage_dir) / f"{step}-{rank:05d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"step": step, "rank": rank, "model": model, **usage}, indent=2) + "\n")


@dataclass
class Job:
    """One request to make (or a row that failed before any request) and what it is for."""

    source: str
    record: dict[str, Any]
    request: Request | None = None
    error: RecordError | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class LLMStep(PipelineStep):
    counts_records = True
    type = "🤖 - GENERATE"
    task = ""  # prompt folder: translate | synthesize

    def __init__(
        self,
        config: GenerationConfig,
        base_dir: str,
        cache_path: str,
        rejects_dir: str | None = None,
        usage_dir: str | None = None,
    ):
        super().__init__()
        self.config = config
        self.base_dir = base_dir
        self.cache_path = cache_path
        self.rejects_dir = rejects_dir
        self.usage_dir = usage_dir

    # ---- what a subclass says --------------------------------------------------------------------
    @abstractmethod
    def specs(self) -> list[SourceSpec]: ...

    @abstractmethod
    def jobs_for(self, adapter, record: dict[str, Any]) -> Iterator[Job]: ...

    @abstractmethod
    def accept(self, job: Job, text: str) -> dict[str, Any]:
        """The generated record from an answer, or ``RecordError``."""

    # ---- shared machinery ------------------------------------------------------------------------
    def open_cache(self) -> ResponseCache:
        return open_cache(self.cache_path, self.config.cache_seed, self.base_dir)

    def iter_jobs(self, rank: int = 0, world_size: int = 1) -> Iterator[Job]:
        for spec in self.specs():
            if self.config.limit is not None:
                spec = spec.model_copy(
                    update={"limit": min(spec.limit or self.config.limit, self.config.limit)}
                )
            adapter = get_adapter(spec.adapter)(spec, Path(self.base_dir))
            for index, raw in enumerate(adapter.iter_raw()):
                if index % world_size != rank:
                    continue
                try:
                    record = adapter.map_row(raw)
                except RecordError as err:
                    rid = make_id(adapter.name, f"{raw.location}#{index}")
                    record = {
                        "id": rid,
                        "source": adapter.name,
                        "provenance": adapter.provenance_value,
                        "raw": raw.row,
                    }
                    yield Job(
                        adapter.name, record, error=RecordError(err.reason, f"{raw.location}: {err.detail}")
                    )
                    continue
                yield from self.jobs_for(adapter, record)

    def batches(self, rank: int, world_size: int) -> Iterator[list[Job]]:
        batch: list[Job] = []
        for job in self.iter_jobs(rank, world_size):
            batch.append(job)
            if len(batch) >= self.config.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        if self.rejects_dir:  # a failed attempt of this task may have rejected items that get an answer now
            Path(self.rejects_dir, self.name, f"{rank:05d}.jsonl").unlink(missing_ok=True)
        writer = reject_writer(self.rejects_dir, self.name) if self.rejects_dir else None
        cache = self.open_cache()
        generator = Generator(self.config.backend, cache, self.config.max_failure_rate)
        try:
            for batch in self.batches(rank, world_size):
                asked = [job for job in batch if job.request is not None]
                with self.track_time(unit="batch"):
                    try:
                        answered = generator.generate([job.request for job in asked])
                    except GenerationStageError as err:
                        raise type(err)(
                            f"{self.name} (task {rank}): {err}. {self._kept(generator)}"
                        ) from None
                    answers = dict(zip(map(id, asked), answered, strict=True))
                for job in batch:
                    self.stat_update("total")
                    self.stat_update(f"source:{job.source}:total")
                    answer = answers.get(id(job))
                    raw_output = answer.text if answer else None
                    try:
                        if job.error is not None:
                            raise job.error
                        if answer.text is None:
                            raise RecordError("generation_failed", answer.error)
                        record = self.accept(job, answer.text)
                    except RecordError as err:
                        self._reject(job, err, raw_output, writer, rank)
                        continue
                    self.stat_update("forwarded")
                    yield Document(text="", id=record["id"], metadata=record)
            unanswered = generator.usage.failures - generator.refused
            if unanswered:
                raise StageStopped(
                    f"{self.name} (task {rank}): {unanswered} requests got no answer after "
                    f"{self.config.backend.max_retries + 1} attempts each (last error: {generator.last_error}); "
                    f"the task is not marked complete. {self._kept(generator)}"
                )
        finally:
            if writer:
                writer.close()
            usage = generator.usage.as_dict(self.config.backend.prices)
            for key in (
                "requests",
                "cache_hits",
                "failures",
                "retries",
                "prompt_tokens",
                "completion_tokens",
            ):
                if usage[key]:
                    self.stat_update(f"usage_{key}", value=usage[key])
            write_usage(self.usage_dir, self.name, rank, self.config.backend.model, usage)
            generator.close()
            cache.close()

    def _kept(self, generator: Generator) -> str:
        usage = generator.usage
        return (
            f"The {usage.requests + usage.cache_hits} answers received are in the cache {self.cache_path}: "
            "run the same command again to ask only the items without an answer"
        )

    def _reject(self, job: Job, err: RecordError, raw_output: str | None, writer, rank: int) -> None:
        meta = {k: v for k, v in job.record.items() if k != "raw"}
        meta["raw"] = {"output": raw_output, **({"row": job.record["raw"]} if "raw" in job.record else {})}
        doc = Document(text="", id=job.record["id"], metadata=meta)
        mark_rejected(doc, self.name, err.reason, err.detail)
        self.stat_update("dropped")
        self.stat_update(f"dropped_{err.reason}")
        self.stat_update(f"source:{job.source}:dropped_{err.reason}")
        if writer:
            writer.write(doc, rank)
