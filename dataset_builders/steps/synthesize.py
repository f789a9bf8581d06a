"""Synthesis: new French MCQU/MCQ/OEQ items from French seed texts (clinical cases, abstracts),
one request per (seed, type) with a versioned prompt and JSON output. Accepted only when the
structure fits the type (lettered options, one correct letter for MCQU, at least one for MCQ, none
for OEQ), the text is French and non-empty, and it is not a copy of the seed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from medinjection.core.config import SourceSpec, SynthesizeConfig
from medinjection.core.schema import LETTERS, RecordError, format_letters, new_record, validate_record
from medinjection.dataset_builders.generation.checks import (
    check_synthetic,
    copy_of_seed,
    item_text,
    parse_json_object,
)
from medinjection.dataset_builders.generation.prompts import render
from medinjection.dataset_builders.generation.runner import Request
from medinjection.dataset_builders.generation.step import Job, LLMStep
from medinjection.dataset_builders.steps.language import language_probabilities, language_text, load_backend

SEED_KINDS = {"clinical_case": "cas clinique", "abstract": "résumé d'article"}


def synthesis_request(seed: dict[str, Any], kind: str, config: SynthesizeConfig) -> Request:
    label, messages = render(
        "synthesize",
        config.prompt_version,
        type=kind,
        n_options=config.n_options,
        last_letter=LETTERS[config.n_options - 1],
        seed_kind=SEED_KINDS.get(seed.get("subject") or "", seed.get("subject") or "texte"),
        seed_text=seed["context"],
    )
    return Request(messages, label)


class Synthesize(LLMStep):
    name = "synthesize"
    task = "synthesize"
    config: SynthesizeConfig

    def __init__(self, config: SynthesizeConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self._lang = None

    def specs(self) -> list[SourceSpec]:
        return self.config.seeds

    def jobs_for(self, adapter, seed: dict[str, Any]) -> Iterator[Job]:
        for kind in self.config.types:
            record = new_record(
                source=seed["source"],
                source_id=f"{seed['source_id']}:{kind}",
                source_split=seed.get("source_split") or "",
                origin=self.config.origin,
                provenance="synthetic",
                type=kind,
                subject=seed.get("subject") or "",
                language="fr",
            )
            yield Job(adapter.name, record, synthesis_request(seed, kind, self.config), extra={"seed": seed})

    def accept(self, job: Job, text: str) -> dict[str, Any]:
        record = dict(job.record)
        item = check_synthetic(parse_json_object(text), record["type"], self.config.n_options)
        record.update(item)
        record["answer"] = (
            item["answer"] if record["type"] == "OEQ" else format_letters(item["correct_letters"])
        )
        seed = job.extra["seed"]
        copied = copy_of_seed(
            item_text(record), seed["context"], self.config.max_common_chars, self.config.max_ngram_overlap
        )
        if copied:
            raise RecordError("copied_seed", copied)
        if self._lang is None:
            self._lang = load_backend("auto", 0)
        probs = language_probabilities(self._lang, language_text(record))
        score = probs.get("fr", 0.0)
        if score < self.config.language_threshold:
            raise RecordError("non_french", f"P(fr)={score:.3f} < {self.config.language_threshold}")
        record["language_score"] = score
        record["generation"] = {
            "model": self.config.backend.model,
            "prompt_version": job.request.prompt_version,
            "seed_id": seed["id"],
        }
        validate_record(record)
        return record
