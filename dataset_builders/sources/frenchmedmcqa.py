"""FrenchMedMCQA: French pharmacy-exam MCQs with one or several correct answers (Labrak et al., 2022).

The GitHub release (https://github.com/qanastek/FrenchMedMCQA) has three JSON files, two shapes:

- ``train.json``, ``dev.json``: ``id``, ``question``, ``answers`` {a..e}, ``correct_answers``
  [letters], ``subject_name``, ``type`` (``simple``: exactly one correct answer; ``multiple``:
  more than one) and ``nbr_correct_answers``;
- ``test.json`` (622 items): the same without ``type``.

The type is the flag when there is one (``simple`` → MCQU, ``multiple`` → MCQ) and otherwise the
number of correct answers (one → MCQU, more → MCQ), which is what the flag means in train and dev.
A row whose flag disagrees with its correct answers is rejected (``type_mismatch``), and so is a row
whose ``nbr_correct_answers`` is not the number of its correct answers (``malformed_row``).
"""

from __future__ import annotations

from typing import Any

from medinjection.core.schema import RecordError, format_letters
from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter

TYPES = {"simple": "MCQU", "single": "MCQU", "multiple": "MCQ"}


def type_from_count(n_correct: int) -> str:
    """What ``simple``/``multiple`` mean in train and dev: one correct answer, or more."""
    return "MCQ" if n_correct > 1 else "MCQU"


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
        answers = row["answers"]
        if not isinstance(answers, dict):
            raise RecordError("malformed_row", f"{raw.location}: answers is not a mapping letter -> text")
        options = [{"letter": letter.upper(), "text": text} for letter, text in sorted(answers.items())]
        correct = [str(letter).upper() for letter in row["correct_answers"]]
        declared = row.get("nbr_correct_answers")
        if declared is not None and int(declared) != len(correct):
            raise RecordError(
                "malformed_row",
                f"{raw.location}: nbr_correct_answers is {declared} but correct_answers has {len(correct)} {correct}",
            )
        if "type" in row:
            flag = str(row["type"]).lower()
            if flag not in TYPES:
                raise RecordError(
                    "malformed_row", f"{raw.location}: type {row['type']!r} is not simple/multiple"
                )
            kind = TYPES[flag]
            if correct and kind != type_from_count(len(correct)):
                raise RecordError(
                    "type_mismatch",
                    f"{raw.location}: type {row['type']!r} but {len(correct)} correct answer(s) {correct}",
                )
        else:  # the test split's shape: no flag
            kind = type_from_count(len(correct))
        return self.record(
            row["id"],
            raw.split,
            type=kind,
            instruction=row["question"],
            options=options,
            correct_letters=correct,
            answer=format_letters(correct) if correct else "",
            subject=row.get("subject_name") or "",
        )
