"""MedMCQA (Pal et al., 2022): English four-option questions of Indian medical entrance exams
(AIIMS, NEET PG). A source to translate (provenance ``translated``, language ``en``).

Hub: ``openlifescienceai/medmcqa`` (parquet since the 2024 conversion; columns ``id``, ``question``,
``opa`` .. ``opd``, ``cop`` (0-3; -1 in the unlabelled test split), ``choice_type``
(``single``/``multi``), ``exp``, ``subject_name``, ``topic_name``). Every item has exactly one
correct option (``cop``), so every item is MCQU, ``multi`` ones included: MedMCQA's ``multi``
marks questions that combine several statements into one option ("all of the above"), not several
correct options. Test rows without an answer are rejected as ``no_correct_answer``.
"""

from __future__ import annotations

from typing import Any

from medinjection.core.schema import LETTERS, RecordError
from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter


class MedMCQA(SourceAdapter):
    name = "medmcqa"
    origin = "MedMCQA"
    provenance = "translated"
    language = "en"
    license = "apache-2.0"
    homepage = "https://medmcqa.github.io"
    hub_id = "openlifescienceai/medmcqa"
    citation = (
        "Pal, Umapathi, Sankarasubbu, MedMCQA: A Large-scale Multi-Subject Multi-Choice Dataset for Medical domain "
        "Question Answering, CHIL 2022"
    )

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        options = [
            {"letter": LETTERS[i], "text": row[key]} for i, key in enumerate(("opa", "opb", "opc", "opd"))
        ]
        cop = int(row["cop"])
        if cop < 0:
            raise RecordError(
                "no_correct_answer", f"{raw.location}: cop={cop} (unlabelled, as in MedMCQA's test split)"
            )
        if cop >= len(options):
            raise RecordError("malformed_row", f"{raw.location}: cop={cop} is not an option index 0-3")
        subject = " / ".join(str(row[k]) for k in ("subject_name", "topic_name") if row.get(k))
        return self.record(
            row["id"],
            raw.split,
            type="MCQU",
            instruction=row["question"],
            options=options,
            correct_letters=[LETTERS[cop]],
            answer=LETTERS[cop],
            subject=subject,
            language=self.language,
        )
