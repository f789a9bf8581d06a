"""Text normalisation: HTML entities decoded, Unicode NFC, whitespace collapsed (newlines kept in
contexts, where they separate paragraphs)."""

from __future__ import annotations

import html
import re
import unicodedata

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def normalize_text(text: str | None, keep_newlines: bool = False) -> str:
    if not text:
        return ""
    text = unicodedata.normalize("NFC", html.unescape(str(text)))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if keep_newlines:
        lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
        return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return _SPACES.sub(" ", text.replace("\n", " ")).strip()


def normalize_record(record: dict) -> dict:
    record["instruction"] = normalize_text(record.get("instruction"))
    record["context"] = normalize_text(record.get("context"), keep_newlines=True)
    record["answer"] = normalize_text(record.get("answer"), keep_newlines=True)
    record["options"] = [
        {"letter": str(opt.get("letter", "")).strip().upper(), "text": normalize_text(opt.get("text"))}
        for opt in record.get("options") or []
    ]
    record["correct_letters"] = sorted(
        {str(letter).strip().upper() for letter in record.get("correct_letters") or []}
    )
    return record


def dedup_text(record: dict) -> str:
    """The text two records share when they are the same item: question and options, case-folded."""
    options = " ".join(f"{opt['letter']} {opt['text']}" for opt in record.get("options") or [])
    return f"{record['instruction']} {options}".casefold().strip()


class TextNormalizer(PipelineStep):
    name = "normalize"
    counts_records = True
    type = "✂️ - FORMAT"

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            with self.track_time():
                normalize_record(doc.metadata)
                doc.text = dedup_text(doc.metadata)
            self.stat_update("total")
            self.stat_update("forwarded")
            yield doc
