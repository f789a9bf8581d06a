"""FrenchMedMCQA: French pharmacy-exam MCQs with one or several correct answers (Labrak et al., 2022)."""

from __future__ import annotations

from typing import Any

from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter
from medinjection.schema import RecordError, format_letters

TYPES = {"simple": "MCQU", "single": "MCQU", "multiple": "MCQ"}


class FrenchMedMCQA(SourceAdapter):
    name = "frenchmedmcqa"
    origin = "FrenchMedMCQA"
    provenance = "native"
    license = "apache-2.0"
    homepage = "https://github.com/qanastek/FrenchMedMCQA"
    hub_id = "qanastek/frenchmedmcqa"
    citation = "Labrak et al., FrenchMedMCQA: A French Multiple-Choice Question Answering Dataset for Medical domain, LOUHI 2022"
    file_patterns = ("*.json",)
    id_field = "id"

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        answers: dict[str, str] = row["answers"]
        options = [{"letter": letter.upper(), "text": text} for letter, text in sorted(answers.items())]
        kind = str(row["type"]).lower()
        if kind not in TYPES:
            raise RecordError("malformed_row", f"{raw.location}: type {row['type']!r} is not simple/multiple")
        correct = [str(letter).upper() for letter in row["correct_answers"]]
        return self.record(
            row["id"],
            raw.split,
            type=TYPES[kind],
            instruction=row["question"],
            options=options,
            correct_letters=correct,
            answer=format_letters(correct) if correct else "",
            subject=row.get("subject_name") or "",
        )
