"""MMLU, medical subjects (Hendrycks et al., 2021): English four-option questions with one correct
answer. A source to translate (provenance ``translated``, language ``en``), type MCQU.

Local: the original CSV files, one per subject, WITHOUT a header row (question, A, B, C, D, answer
letter), named ``<subject>_<split>.csv`` (``anatomy_test.csv``): the subject and the split come from
the file name. Hub: ``cais/mmlu``, one config per subject (``question``, ``subject``, ``choices``,
``answer`` 0-3).

Split: the shared files are MMLU's *test* questions, and they keep split ``test``. That is
deliberate: MMLU (medical) is one of the English evaluation benchmarks, so its test questions,
translated or not, must never become training data; kept in ``test`` they stay out of every
training mix (the decontamination step checks the rest). To translate MMLU for training, use its
``dev``/``validation``/auxiliary-train files.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medinjection.core.schema import LETTERS, RecordError
from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter, read_text, split_from_name
from medinjection.dataset_builders.sources.textparse import hashed_id, number_repeats

COLUMNS = ("question", "A", "B", "C", "D", "answer")
MEDICAL_SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)
ID_KEYS = ("question", "A", "B", "C", "D", "choices")
_SPLIT_SUFFIX = re.compile(r"_(test|dev|val|validation|train|auxiliary_train)$")


class MMLUMedical(SourceAdapter):
    name = "mmlu_medical"
    origin = "MMLU"
    provenance = "translated"
    language = "en"
    license = "mit"
    homepage = "https://github.com/hendrycks/test"
    hub_id = "cais/mmlu"
    hub_configs = MEDICAL_SUBJECTS
    citation = "Hendrycks et al., Measuring Massive Multitask Language Understanding, ICLR 2021"
    file_patterns = ("*.csv",)

    def iter_raw(self) -> Iterator[RawRow]:
        yield from number_repeats(super().iter_raw(), ID_KEYS)

    def read_local(self) -> Iterator[RawRow]:
        # csv.DictReader would take the first question for a header: these files have none.
        for path in self.local_files():
            subject = _SPLIT_SUFFIX.sub("", path.stem)
            split = split_from_name(path.stem)
            count = 0
            for count, values in enumerate(csv.reader(io.StringIO(read_text(path), newline="")), 1):
                location = f"{path}:{count}"
                if len(values) != len(COLUMNS):
                    row = {
                        "_malformed": f"{location}: {len(values)} CSV fields, expected {len(COLUMNS)} {list(COLUMNS)}"
                    }
                else:
                    row = dict(zip(COLUMNS, values, strict=True))
                yield RawRow({**row, "_subject": subject, "_line": count}, split, location)
            if not count:
                self.notes.append(f"source {self.name!r}: {path} holds no row (an empty file?)")

    def check_file(self, path: Path) -> None:
        read_text(path)  # headerless CSV: any text is rows; only the encoding can be wrong

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        if "choices" in row:  # cais/mmlu on the Hub
            texts, answer = list(row["choices"]), row["answer"]
            letter = (
                LETTERS[int(answer)] if str(answer).isdigit() and int(answer) < len(texts) else str(answer)
            )
            subject = row.get("subject") or row.get("_config") or ""
        else:
            texts, letter, subject = (
                [row[k] for k in "ABCD"],
                str(row["answer"]).strip().upper(),
                row["_subject"],
            )
        if letter not in LETTERS[: len(texts)]:
            raise RecordError(
                "malformed_row", f"{raw.location}: answer {row['answer']!r} is not one of the option letters"
            )
        source_id = hashed_id(row, ID_KEYS, subject)
        return self.record(
            source_id,
            raw.split,
            type="MCQU",
            instruction=row["question"],
            options=[{"letter": LETTERS[i], "text": str(t)} for i, t in enumerate(texts)],
            correct_letters=[letter],
            answer=letter,
            subject=subject.replace("_", " "),
            language=self.language,
        )
