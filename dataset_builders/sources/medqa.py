"""MedQA (USMLE, English, four options; Jin et al., 2021): US medical licensing exam questions
with one correct answer. A source to translate (provenance ``translated``, language ``en``), type MCQU.

Hub: ``GBaker/MedQA-USMLE-4-options`` (JSON Lines ``phrases_no_exclude_{train,test}.jsonl``;
columns ``question``, ``options`` {A..D: text}, ``answer_idx`` (letter), ``answer`` (text),
``meta_info`` (``step1`` / ``step2&3``), ``metamap_phrases``). A local copy of those files reads the
same (the split comes from the file name). The rows have no id: the source id is a hash of the
question and options.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from medinjection.core.schema import RecordError
from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter
from medinjection.dataset_builders.sources.textparse import hashed_id, number_repeats


class MedQA(SourceAdapter):
    name = "medqa"
    origin = "MedQA"
    provenance = "translated"
    language = "en"
    license = "cc-by-4.0"
    homepage = "https://github.com/jind11/MedQA"
    hub_id = "GBaker/MedQA-USMLE-4-options"
    citation = (
        "Jin et al., What Disease does this Patient Have? A Large-scale Open Domain Question Answering Dataset "
        "from Medical Exams, Applied Sciences 2021"
    )

    def iter_raw(self) -> Iterator[RawRow]:
        yield from number_repeats(super().iter_raw(), ("question", "options"))

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        options_map = row["options"]
        if not isinstance(options_map, dict):
            raise RecordError("malformed_row", f"{raw.location}: options is not a mapping letter -> text")
        options = [
            {"letter": str(k).upper(), "text": v} for k, v in sorted(options_map.items()) if v is not None
        ]
        letter = str(row["answer_idx"]).strip().upper()
        return self.record(
            hashed_id(row, ("question", "options")),
            raw.split,
            type="MCQU",
            instruction=row["question"],
            options=options,
            correct_letters=[letter],
            answer=letter,
            subject=str(row.get("meta_info") or ""),
            language=self.language,
        )
