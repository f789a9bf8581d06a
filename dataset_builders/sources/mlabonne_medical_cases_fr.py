"""mlabonne/medical-cases-fr: French clinical cases from medical exam preparation material, each with
a question and a written answer (about 8,100 rows; splits ``train`` and ``eval``). Native, OEQ.

ASSUMED COLUMNS (the dataset card documents none; see README.md (Sources)): a case text
(``Enonce``), a question (``Question``), an answer (``Reponse``/``Correction``), a specialty
(``Specialite``) and a series number (``Serie``). Each role is looked up among a few spellings; a
row that has none of them is rejected as ``malformed_row`` with the columns it does have, so a
different layout shows at once in ``rejects/``. When ``Question`` holds only a question number, the
case text is the instruction. The rows have no id: the source id is a hash of the row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter
from medinjection.dataset_builders.sources.textparse import first_present, hashed_id, number_repeats

CASE = ("Enonce", "Énoncé", "enonce", "énoncé", "clinical_case", "case", "context", "Cas")
QUESTION = ("Question", "question", "instruction", "input")
ANSWER = (
    "Reponse",
    "Réponse",
    "reponse",
    "réponse",
    "Correction",
    "correction",
    "answer",
    "output",
    "Explication",
)
SUBJECT = ("Specialite", "Spécialité", "specialite", "specialty", "subject")


class MlabonneMedicalCasesFr(SourceAdapter):
    name = "mlabonne_medical_cases_fr"
    origin = "mlabonne/medical-cases-fr"
    provenance = "native"
    license = "unknown"  # no licence on the dataset card; check before redistributing
    homepage = "https://huggingface.co/datasets/mlabonne/medical-cases-fr"
    hub_id = "mlabonne/medical-cases-fr"
    citation = "Labonne, medical-cases-fr (Hugging Face dataset), 2023"

    def iter_raw(self) -> Iterator[RawRow]:
        yield from number_repeats(super().iter_raw(), None)

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        case = next((str(row[k]) for k in CASE if row.get(k) is not None), "")
        question = str(first_present(row, QUESTION, "question", raw.location)).strip()
        if question.isdigit() or not question:  # a question number, not a question
            instruction, context = case, ""
        else:
            instruction, context = question, case
        return self.record(
            row.get("id") or hashed_id(row, None),
            raw.split,
            type="OEQ",
            instruction=instruction,
            context=context,
            answer=str(first_present(row, ANSWER, "answer", raw.location)),
            subject=str(next((row[k] for k in SUBJECT if row.get(k)), "")),
        )
