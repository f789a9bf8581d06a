"""The quality screen: an LLM grades each translated and synthetic item 1-5 with a short reason.

A labelling step, like datatrove's language filter writing ``language_score``: every document goes
on, and the grade goes into its record as ``quality = {score, reason, model, prompt_version}``. What a
mix uses is decided later by a mix file's ``min_quality``, so one paid screening serves every threshold.

It sits in the ``write`` stage, after the dedup, decontamination and review filters (nothing is paid
for an item the build drops) and before the writer. Requests go through the generation steps'
machinery (``Generator``: the SQLite response cache, retries, cost, fail-fast on a broken endpoint).
A reply that does not parse leaves the item with ``score: null`` and the reason saying so (counted as
``unparseable``); a request the server refuses likewise (``refused``). A request that got no answer
after its retries leaves the task unfinished (``StageStopped``, after every other item was answered
and cached): running the build again asks exactly those.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from medinjection.core.config import QualityScreenConfig
from medinjection.core.schema import RecordError
from medinjection.dataset_builders.generation.backends import GenerationStageError, StageStopped
from medinjection.dataset_builders.generation.checks import parse_json_object
from medinjection.dataset_builders.generation.prompts import render
from medinjection.dataset_builders.generation.runner import Generator, Request
from medinjection.dataset_builders.generation.step import open_cache, write_usage

SCORES = (1, 2, 3, 4, 5)
REASON_CHARS = 300


def screen_item(record: dict[str, Any]) -> dict[str, Any]:
    """What the grader sees of a record: the item as trained on, and the English original of a translation."""
    item = {
        "type": record.get("type") or "",
        "instruction": record.get("instruction") or "",
        "context": record.get("context") or "",
        "options": [{"letter": o["letter"], "text": o["text"]} for o in record.get("options") or []],
        "answer": record.get("answer") or "",
    }
    original = record.get("original") or None
    if original and (original.get("instruction") or original.get("answer")):
        item["original_en"] = {
            "instruction": original.get("instruction") or "",
            "context": original.get("context") or "",
            "options": [{"letter": o["letter"], "text": o["text"]} for o in original.get("options") or []],
            "answer": original.get("answer") or "",
        }
    return item


def screen_request(record: dict[str, Any], version: str) -> Request:
    """The request that grades one record (the same record always gives the same cache key)."""
    item_json = json.dumps(screen_item(record), ensure_ascii=False, indent=1)
    label, messages = render("quality", version, item_json=item_json)
    return Request(messages, label)


def parse_grade(text: str) -> tuple[int, str]:
    """``(score, reason)`` of a reply ``{"score": 1-5, "reason": "..."}``; anything else is a ``RecordError``."""
    value = parse_json_object(text)
    score = value.get("score")
    if isinstance(score, str) and score.strip().isdigit():
        score = int(score.strip())
    if isinstance(score, bool) or not isinstance(score, int) or score not in SCORES:
        raise RecordError("invalid_structure", f"score {value.get('score')!r} is not an integer from 1 to 5")
    reason = value.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise RecordError("invalid_structure", "no reason given")
    return score, reason.strip()[:REASON_CHARS]


class QualityScreen(PipelineStep):
    name = "quality_screen"
    type = "🏷 - LABEL"

    def __init__(
        self, config: QualityScreenConfig, base_dir: str, cache_path: str, usage_dir: str | None = None
    ):
        super().__init__()
        self.config = config
        self.base_dir = base_dir
        self.cache_path = cache_path
        self.usage_dir = usage_dir

    def _batches(self, data: DocumentsPipeline) -> Iterator[list[Document]]:
        batch: list[Document] = []
        for doc in data:
            batch.append(doc)
            if len(batch) >= self.config.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def label(self, doc: Document, answer, version: str) -> None:
        meta = {"model": self.config.backend.model, "prompt_version": version}
        if answer.text is None:
            kind = "refused" if answer.refused else "failed"
            doc.metadata["quality"] = {
                "score": None,
                "reason": f"{kind}: {answer.error}"[:REASON_CHARS],
                **meta,
            }
            self.stat_update(kind)
            return
        try:
            score, reason = parse_grade(answer.text)
        except RecordError as err:
            reply = " ".join(answer.text.split())[:120]
            doc.metadata["quality"] = {
                "score": None,
                "reason": f"unparseable: {err.detail}; reply {reply!r}",
                **meta,
            }
            self.stat_update("unparseable")
            return
        doc.metadata["quality"] = {"score": score, "reason": reason, **meta}
        self.stat_update(f"score_{score}")

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data is None:
            return
        wanted = set(self.config.provenances)
        cache = open_cache(self.cache_path, self.config.cache_seed, self.base_dir)
        generator = Generator(self.config.backend, cache, self.config.max_failure_rate)
        try:
            for batch in self._batches(data):
                screened = [doc for doc in batch if doc.metadata.get("provenance") in wanted]
                requests = [screen_request(doc.metadata, self.config.prompt_version) for doc in screened]
                with self.track_time(unit="batch"):
                    try:
                        answers = generator.generate(requests)
                    except GenerationStageError as err:
                        raise type(err)(
                            f"{self.name} (task {rank}): {err}. {self._kept(generator)}"
                        ) from None
                for doc, request, answer in zip(screened, requests, answers, strict=True):
                    self.stat_update("screened")
                    self.label(doc, answer, request.prompt_version)
                yield from batch
            unanswered = generator.usage.failures - generator.refused
            if unanswered:
                raise StageStopped(
                    f"{self.name} (task {rank}): {unanswered} items got no grade after "
                    f"{self.config.backend.max_retries + 1} attempts each (last error: {generator.last_error}); "
                    f"the task is not marked complete. {self._kept(generator)}"
                )
        finally:
            usage = generator.usage.as_dict(self.config.backend.prices)
            write_usage(self.usage_dir, self.name, rank, self.config.backend.model, usage)
            generator.close()
            cache.close()

    def _kept(self, generator: Generator) -> str:
        usage = generator.usage
        return (
            f"The {usage.requests + usage.cache_hits} grades received are in the cache {self.cache_path}: "
            "run the same command again to ask only the items without one"
        )
