"""Translation: English MCQ/MCQU/OEQ items (read through their source adapters) to French with a
versioned prompt and JSON output, accepted only when the JSON is valid, the options keep their
number and letters, the answer key is unchanged, the text is French and its length is plausible.
Rejects keep the reason and the raw model output; accepted rows carry ``generation`` and the English
``original``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from medinjection.core.config import SourceSpec, TranslateConfig
from medinjection.core.schema import RecordError, validate_record
from medinjection.dataset_builders.generation.checks import check_translation, parse_json_object
from medinjection.dataset_builders.generation.prompts import render
from medinjection.dataset_builders.generation.runner import Request
from medinjection.dataset_builders.generation.step import Job, LLMStep
from medinjection.dataset_builders.steps.language import language_probabilities, language_text, load_backend

ITEM_KEYS = ("type", "instruction", "context", "options", "correct_letters", "answer")


def translation_request(record: dict[str, Any], version: str) -> Request:
    """The request that translates one English record (the same record always gives the same key)."""
    item = {
        key: record.get(key) or ([] if key in ("options", "correct_letters") else "") for key in ITEM_KEYS
    }
    label, messages = render("translate", version, item_json=json.dumps(item, ensure_ascii=False, indent=1))
    return Request(messages, label)


class Translate(LLMStep):
    name = "translate"
    task = "translate"
    config: TranslateConfig

    def __init__(self, config: TranslateConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self._lang = None

    def specs(self) -> list[SourceSpec]:
        return self.config.sources

    def jobs_for(self, adapter, record: dict[str, Any]) -> Iterator[Job]:
        yield Job(adapter.name, record, translation_request(record, self.config.prompt_version))

    def accept(self, job: Job, text: str) -> dict[str, Any]:
        english = job.record
        french = check_translation(
            english, parse_json_object(text), self.config.min_length_ratio, self.config.max_length_ratio
        )
        record = {key: value for key, value in english.items() if key != "split"}
        record.update(french)
        record["provenance"] = "translated"
        if self._lang is None:
            self._lang = load_backend("auto", 0)
        probs = language_probabilities(self._lang, language_text(record))
        score = probs.get("fr", 0.0)
        if score < self.config.language_threshold:
            found = ", ".join(f"{k}:{v:.2f}" for k, v in sorted(probs.items(), key=lambda x: -x[1]))
            raise RecordError(
                "non_french",
                f"P(fr)={score:.3f} < {self.config.language_threshold}; detected {found or 'nothing'}",
            )
        record["language"], record["language_score"] = "fr", score
        record["generation"] = {
            "model": self.config.backend.model,
            "prompt_version": job.request.prompt_version,
            "seed_id": english["id"],
        }
        record["original"] = {
            "language": english.get("language") or "en",
            "instruction": english.get("instruction") or "",
            "context": english.get("context") or "",
            "options": english.get("options") or [],
            "answer": english.get("answer") or "",
        }
        validate_record(record)
        return record
