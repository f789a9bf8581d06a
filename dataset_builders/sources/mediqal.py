"""MediQAl: questions of the French national medical exams (ECN/EDN), in three configs: ``mcqu``
(one correct option), ``mcqm`` (several correct options) and ``oeq`` (open-ended), many with a
clinical case (Bazoge et al., 2025).

Hub: ``ANR-MALADES/MediQAl``, files ``<config>/<split>.json``; columns ``id``, ``clinical_case``,
``question``, ``answer_a`` .. ``answer_e``, ``correct_answers`` ("A,C"), ``task``,
``medical_subject``, ``question_type`` (``oeq``: ``answer`` instead of options). A local copy keeps
the same layout (a folder per config); its folder name gives the config, and so the type:
``mcqu`` → MCQU, ``mcqm`` → MCQ, ``oeq`` → OEQ. The bundled demo's native samples use this shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from medinjection.core.schema import LETTERS, RecordError, format_letters
from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter, split_from_name

TYPES = {"mcqu": "MCQU", "mcqm": "MCQ", "oeq": "OEQ"}


class MediQAl(SourceAdapter):
    name = "mediqal"
    origin = "MediQAl"
    provenance = "native"
    license = "cc-by-4.0"
    homepage = "https://github.com/abazoge/MediQAl"
    hub_id = "ANR-MALADES/MediQAl"
    hub_configs = ("mcqu", "mcqm", "oeq")
    citation = "Bazoge et al., MediQAl: A French Medical Question Answering Dataset for Knowledge and Reasoning Evaluation, 2025"
    file_patterns = ("**/*.json", "**/*.jsonl", "**/*.parquet")

    def read_local(self) -> Iterator[RawRow]:
        root = self.local_path
        for path in self.local_files():
            parts = path.relative_to(root).parts[:-1] if root.is_dir() else ()
            config = next((p.lower() for p in parts if p.lower() in TYPES), self.spec.hub_config or "")
            split = split_from_name(path.stem)
            for index, row in self.rows_of(path):
                row.setdefault("_config", config)
                yield RawRow(row, split, f"{path}:{index}")

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        config = str(row.get("_config") or "").lower()
        if config not in TYPES:
            raise RecordError(
                "malformed_row",
                f"{raw.location}: MediQAl config unknown (put the file under mcqu/, mcqm/ or oeq/, or set hub_config)",
            )
        common = dict(
            instruction=row["question"],
            context=row.get("clinical_case") or "",
            subject=row.get("medical_subject") or "",
        )
        if config == "oeq":
            return self.record(row["id"], raw.split, type="OEQ", answer=row["answer"], **common)
        options = [
            {"letter": letter, "text": row[f"answer_{letter.lower()}"]}
            for letter in LETTERS[:5]
            if row.get(f"answer_{letter.lower()}") is not None
        ]
        correct = sorted(
            {letter for letter in re.split(r"[\s,;]+", str(row["correct_answers"]).upper()) if letter}
        )
        return self.record(
            row["id"],
            raw.split,
            type=TYPES[config],
            options=options,
            correct_letters=correct,
            answer=format_letters(correct) if correct else "",
            **common,
        )
