"""The one record schema of MedInjection-FR, for every provenance.

The released MedInjection-FR columns (``instruction``, ``context``, ``answer``, ``type``, ``origin``)
are kept as they are, so our rows compare with the published ones; the other columns are what the
toolkit needs: a stable id, the provenance, structured options and answer letters, the source split,
the detected language, generation metadata and the chat ``messages`` that training consumes.

``validate_record`` is the single place that decides whether a record is well formed; every pipeline
step and every adapter goes through it.
"""

from __future__ import annotations

import hashlib
import string
from typing import Any

from datasets import Features, List, Value

PROVENANCES = ("native", "translated", "synthetic")
TYPES = ("MCQ", "MCQU", "OEQ")
"""``MCQU``: exactly one correct option; ``MCQ``: one or more (as in MediQAl); ``OEQ``: open-ended."""
SPLITS = ("train", "validation", "test")
LETTERS = tuple(string.ascii_uppercase)

OPTION = {"letter": Value("string"), "text": Value("string")}
MESSAGE = {"role": Value("string"), "content": Value("string")}

FEATURES = Features(
    {
        "id": Value("string"),
        "provenance": Value("string"),
        "source": Value("string"),
        "source_id": Value("string"),
        "source_split": Value("string"),
        "origin": Value("string"),
        "type": Value("string"),
        "instruction": Value("string"),
        "context": Value("string"),
        "options": List(OPTION),
        "correct_letters": List(Value("string")),
        "answer": Value("string"),
        "subject": Value("string"),
        "language": Value("string"),
        "language_score": Value("float32"),
        # Set when an LLM produced the row (translated, synthetic); null for native rows.
        "generation": {
            "model": Value("string"),
            "prompt_version": Value("string"),
            "seed_id": Value("string"),
        },
        # The English original of a translated row, shown side by side to reviewers.
        "original": {
            "language": Value("string"),
            "instruction": Value("string"),
            "context": Value("string"),
            "options": List(OPTION),
            "answer": Value("string"),
        },
        # The quality screen's grade of a translated or synthetic row (null when not screened): a 1-5
        # score (null when the grader's reply could not be read), its short reason, who graded, how.
        "quality": {
            "score": Value("int32"),
            "reason": Value("string"),
            "model": Value("string"),
            "prompt_version": Value("string"),
        },
        "messages": List(MESSAGE),
    }
)
COLUMNS = tuple(FEATURES)
RELEASE_COLUMNS = ("instruction", "context", "answer", "type", "origin")


class RecordError(ValueError):
    """A record that cannot enter the dataset; ``reason`` is a short stable code counted in the stats."""

    def __init__(self, reason: str, detail: str, record_id: str | None = None):
        self.reason = reason
        self.detail = detail
        self.record_id = record_id
        where = f"record {record_id}: " if record_id else ""
        super().__init__(f"{where}{reason}: {detail}")


REJECT_REASONS = {
    "malformed_row": "the source row could not be read or mapped (missing or ill-typed field)",
    "field_too_long": "a field of the source row is longer than the build's filters.max_field_chars",
    "missing_field": "a required field is absent",
    "empty_text": "the question (or the answer of an open-ended item) is empty after normalisation",
    "invalid_type": "type is not one of MCQ, MCQU, OEQ",
    "invalid_provenance": "provenance is not one of native, translated, synthetic",
    "too_few_options": "a multiple-choice item with fewer than two options",
    "duplicate_option_letters": "two options share a letter",
    "empty_option": "an option has no text",
    "no_correct_answer": "a multiple-choice item without any correct letter",
    "letter_not_in_options": "a correct letter is not among the option letters",
    "type_mismatch": "an MCQU item with more than one correct letter, an OEQ item with options, or a source's single/multiple flag that disagrees with its number of correct answers",
    "non_french": "the language filter did not detect French above the threshold",
    "exact_duplicate": "same normalised question and options as a kept item",
    "generation_failed": "the LLM request failed for good (after its retries); nothing was cached",
    "invalid_json": "the LLM answer is not a JSON object",
    "invalid_structure": "the LLM answer lacks a field, has an ill-typed one, or drops/invents a context",
    "options_changed": "a translation changed the number or the letters of the options",
    "answer_key_changed": "a translation changed the correct letters",
    "length_ratio": "translation length / original length outside the configured bounds",
    "copied_seed": "a synthetic item copies its seed text (long common run or most of its word 8-grams)",
    "conflicting_answer": "same normalised question and options as another item, with a different answer",
    "review": "judged incorrect by reviewers (an exclusion list named in filters.review)",
    "near_duplicate": "nearly the same question and options (MinHash, checked Jaccard) as a kept item of higher priority",
    "contamination": "shares enough word n-grams with an evaluation item (its id is the reject's kept_id)",
}


def make_id(source: str, source_id: str) -> str:
    """A stable id from the source name and the source's own id: ``<source>-<16 hex>``."""
    digest = hashlib.sha256(f"{source}\x00{source_id}".encode()).hexdigest()[:16]
    return f"{source}-{digest}"


def format_letters(letters: list[str] | tuple[str, ...]) -> str:
    """The one written form of a set of answer letters: sorted, upper case, ``", "``-separated."""
    return ", ".join(sorted({letter.strip().upper() for letter in letters}))


def empty_record() -> dict[str, Any]:
    return {
        "id": "",
        "provenance": "",
        "source": "",
        "source_id": "",
        "source_split": "",
        "origin": "",
        "type": "",
        "instruction": "",
        "context": "",
        "options": [],
        "correct_letters": [],
        "answer": "",
        "subject": "",
        "language": "",
        "language_score": 0.0,
        "generation": None,
        "original": None,
        "quality": None,
        "messages": [],
    }


def new_record(**fields: Any) -> dict[str, Any]:
    """A record with every column present, the given ones filled; unknown keys are an error."""
    unknown = set(fields) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown record field(s) {sorted(unknown)}; the schema has {list(COLUMNS)}")
    record = empty_record()
    record.update(fields)
    if not record["id"] and record["source"] and record["source_id"]:
        record["id"] = make_id(record["source"], record["source_id"])
    return record


def validate_record(record: dict[str, Any], *, answer_key: bool = True) -> None:
    """Raise ``RecordError`` with a stable reason if ``record`` breaks the schema's rules.

    ``answer_key=False`` leaves the correct letters unchecked (none, outside the options, several on
    an MCQU item): the evaluation scores such items as the authors did instead of refusing them.
    """
    rid = record.get("id") or None
    for key in ("id", "provenance", "source", "type", "instruction"):
        if key not in record or record[key] is None:
            raise RecordError("missing_field", f"field {key!r} is missing", rid)
    if record["provenance"] not in PROVENANCES:
        raise RecordError("invalid_provenance", f"{record['provenance']!r} not in {PROVENANCES}", rid)
    if record["type"] not in TYPES:
        raise RecordError("invalid_type", f"{record['type']!r} not in {TYPES}", rid)
    if not str(record["instruction"]).strip():
        raise RecordError("empty_text", "the question is empty", rid)
    options = record.get("options") or []
    correct = record.get("correct_letters") or []
    if record["type"] == "OEQ":
        if options or correct:
            raise RecordError("type_mismatch", "an open-ended item carries options or answer letters", rid)
        if not str(record.get("answer") or "").strip():
            raise RecordError("empty_text", "the answer of an open-ended item is empty", rid)
        return
    if len(options) < 2:
        raise RecordError("too_few_options", f"{len(options)} option(s)", rid)
    letters = [opt.get("letter") for opt in options]
    if len(set(letters)) != len(letters):
        raise RecordError("duplicate_option_letters", f"letters {letters}", rid)
    for opt in options:
        if not str(opt.get("text") or "").strip():
            raise RecordError("empty_option", f"option {opt.get('letter')!r} is empty", rid)
    if not answer_key:
        return
    if not correct:
        raise RecordError("no_correct_answer", "no correct letter", rid)
    missing = sorted(set(correct) - set(letters))
    if missing:
        raise RecordError(
            "letter_not_in_options", f"correct letter(s) {missing} not in options {letters}", rid
        )
    if record["type"] == "MCQU" and len(set(correct)) != 1:
        raise RecordError("type_mismatch", f"MCQU with {len(set(correct))} correct letters {correct}", rid)


def options_text(options: list[dict[str, str]]) -> str:
    return "\n".join(f"{opt['letter']}. {opt['text']}" for opt in options)


def release_row(record: dict[str, Any]) -> dict[str, str]:
    """The five released MedInjection-FR columns of a record."""
    return {key: record[key] for key in RELEASE_COLUMNS}
