"""French seed texts for synthesis (clinical cases, abstracts): JSON/JSONL rows ``{id, text, kind}``
(``kind``: ``clinical_case`` or ``abstract``; optional ``title``, ``split``, ``license``). Not items
themselves: the synthesize step reads them and writes ``synthetic`` items with source ``seed_texts``.
A seed maps to a record holding its text in ``context`` (and its kind in ``subject``)."""

from __future__ import annotations

from typing import Any

from medinjection.core.schema import RecordError
from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter


class SeedTexts(SourceAdapter):
    name = "seed_texts"
    origin = "MedInjection-FR synthetic"
    provenance = "synthetic"
    license = "mit"
    homepage = "https://github.com/medinjection"
    file_patterns = ("*.json", "*.jsonl")

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        text = str(row["text"]).strip()
        if not text:
            raise RecordError("empty_text", f"{raw.location}: seed text is empty")
        return self.record(
            row["id"],
            row.get("split") or raw.split,
            type="OEQ",
            instruction=str(row.get("title") or row.get("kind") or "seed"),
            context=text,
            answer=text,
            subject=str(row.get("kind") or ""),
            language="fr",
        )
