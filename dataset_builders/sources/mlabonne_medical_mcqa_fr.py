"""mlabonne/medical-mcqa-fr: French multiple-choice questions from medical exam preparation material
(splits ``train`` and ``eval``). Native.

The Hub repository is spelled ``mlabonne/medical-mqca-fr`` (sic); the MedInjection-FR card links
``medical-mcqa-fr``. ASSUMED COLUMNS (the card documents none; see README.md (Sources)): the
question (``Question``/``Enonce``/``question``), the options either as columns (``answer_a`` ..,
or ``A`` .. ``E``), as a list/mapping (``options``/``choices``), or as lettered lines inside the
question, and the correct letters (``Reponse``/``correct_answers``/``answer``: ``"A, C"``,
``"B. texte"``). A row where any of these cannot be found is rejected as ``malformed_row`` naming the
columns it has. Type: MCQ (one or more correct options), since the rows carry no single-answer
flag; an item with one correct letter is still a valid MCQ.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from medinjection.core.schema import LETTERS, RecordError, format_letters
from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter
from medinjection.dataset_builders.sources.textparse import (
    first_present,
    hashed_id,
    number_repeats,
    parse_answer_letters,
    split_options,
)

QUESTION = ("question", "Question", "Enonce", "Énoncé", "enonce", "instruction", "input")
ANSWER = ("correct_answers", "correct_answer", "Reponse", "Réponse", "reponse", "réponse", "answer", "output")
CONTEXT = ("clinical_case", "context", "Cas")
SUBJECT = ("Specialite", "Spécialité", "specialite", "subject", "medical_subject")


def _column_options(row: dict[str, Any]) -> list[dict[str, str]]:
    for pattern in ("answer_{}", "{}", "option_{}"):
        found = [(L, row.get(pattern.format(L.lower())) or row.get(pattern.format(L))) for L in LETTERS[:10]]
        texts = [(L, t) for L, t in found if t is not None]
        if len(texts) >= 2:
            return [{"letter": L, "text": str(t)} for L, t in texts]
    listed = row.get("options", row.get("choices"))
    if isinstance(listed, dict):
        return [{"letter": str(k).upper(), "text": str(v)} for k, v in sorted(listed.items())]
    if isinstance(listed, list | tuple):
        return [{"letter": LETTERS[i], "text": str(t)} for i, t in enumerate(listed)]
    return []


class MlabonneMedicalMcqaFr(SourceAdapter):
    name = "mlabonne_medical_mcqa_fr"
    origin = "mlabonne/medical-mcqa-fr"
    provenance = "native"
    license = "unknown"  # no licence on the dataset card; check before redistributing
    homepage = "https://huggingface.co/datasets/mlabonne/medical-mqca-fr"
    hub_id = "mlabonne/medical-mqca-fr"
    citation = "Labonne, medical-mqca-fr (Hugging Face dataset), 2023"

    def iter_raw(self) -> Iterator[RawRow]:
        yield from number_repeats(super().iter_raw(), None)

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        question = next(
            (str(row[k]) for k in QUESTION if row.get(k) is not None and not str(row[k]).strip().isdigit()),
            None,
        )
        if question is None:
            question = str(first_present(row, QUESTION, "question text", raw.location))
        options = _column_options(row)
        if not options:
            question, options = split_options(question)
        if not options:
            raise RecordError(
                "malformed_row",
                f"{raw.location}: no options (no answer_a.. / A.. / options column, no 'A. …' lines in the question)",
            )
        answer = first_present(row, ANSWER, "answer", raw.location)
        try:
            correct = parse_answer_letters(answer, options)
        except RecordError as err:
            raise RecordError("malformed_row", f"{raw.location}: {err.detail}") from err
        return self.record(
            row.get("id") or hashed_id(row, None),
            raw.split,
            type="MCQ",
            instruction=question,
            context=str(next((row[k] for k in CONTEXT if row.get(k)), "")),
            options=options,
            correct_letters=correct,
            answer=format_letters(correct),
            subject=str(next((row[k] for k in SUBJECT if row.get(k)), "")),
        )
