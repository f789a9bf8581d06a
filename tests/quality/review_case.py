"""Shared material of the quality tests: a small dataset folder and a review with known verdicts.

The design (two annotators, A and B; ``-`` no response, ``(draft)`` not submitted):

    row  provenance  source   A           B                  verdict
    0    native      src_a    incorrect   incorrect          incorrect (2 of 2)
    1    native      src_a    correct     correct            ok
    2    native      src_b    incorrect   correct            ok (1 of 2 is not a majority)
    3    translated  src_c    incorrect   incorrect          incorrect
    4    translated  src_c    correct     unsure             ok
    5    translated  src_c    incorrect   correct (draft)    incorrect (1 of 1 submitted)
    6    translated  src_c    -           -                  not reviewed
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medinjection.core.schema import FEATURES, new_record

DESIGN = [
    # (provenance, source, A, B): each a (label, status, error types) or None
    (
        "native",
        "src_a",
        ("incorrect", "submitted", ["factual_error", "wrong_answer_key"]),
        ("incorrect", "submitted", ["factual_error"]),
    ),
    ("native", "src_a", ("correct", "submitted", []), ("correct", "submitted", [])),
    ("native", "src_b", ("incorrect", "submitted", ["other"]), ("correct", "submitted", [])),
    (
        "translated",
        "src_c",
        ("incorrect", "submitted", ["bad_translation"]),
        ("incorrect", "submitted", ["bad_translation"]),
    ),
    ("translated", "src_c", ("correct", "submitted", []), ("unsure", "submitted", [])),
    ("translated", "src_c", ("incorrect", "submitted", ["bad_translation"]), ("correct", "draft", ["other"])),
    ("translated", "src_c", None, None),
]
LANGUAGE_QUALITY = {"A": 4, "B": 3}


def make_row(index: int, provenance: str, source: str, split: str = "train") -> dict:
    options = [
        {"letter": "A", "text": f"Proposition {index} a"},
        {"letter": "B", "text": f"Proposition {index} b"},
    ]
    original = None
    if provenance == "translated":
        original = {
            "language": "en",
            "instruction": f"Which drug is indicated in case {index}?",
            "context": "",
            "options": [{"letter": "A", "text": "first"}, {"letter": "B", "text": "second"}],
            "answer": "A",
        }
    return new_record(
        source=source,
        source_id=f"q{index}",
        source_split=split,
        provenance=provenance,
        origin="test",
        type="MCQU",
        instruction=f"Quel médicament est indiqué dans le cas numéro {index} ?",
        options=options,
        correct_letters=["A"],
        answer="A",
        language="fr",
        language_score=0.99,
        generation=None if provenance == "native" else {"model": "m", "prompt_version": "v1", "seed_id": ""},
        original=original,
        messages=[],
    )


def design_rows() -> list[dict]:
    return [make_row(i, provenance, source) for i, (provenance, source, _a, _b) in enumerate(DESIGN)]


def write_dataset(folder: Path, rows: list[dict]) -> Path:
    """A dataset folder in the build's layout: ``data/<provenance>/<split>-00000.parquet``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["provenance"], row.get("source_split") or "train"), []).append(row)
    for (provenance, split), items in groups.items():
        path = folder / "data" / provenance / f"{split}-00000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(items, schema=FEATURES.arrow_schema), path)
    return folder


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def user_ids(client, usernames: list[str]) -> list:
    known = {user.username: user.id for user in client.users}
    return [known[name] for name in usernames]


def log_design_responses(client, dataset, rows: list[dict], annotators: list[str]) -> None:
    """Log the DESIGN's responses as the owner, each with its annotator's user id."""
    import argilla as rg

    from medinjection.quality.review import to_review_record

    ids = dict(zip("AB", user_ids(client, annotators), strict=True))
    records = []
    for row, (_p, _s, *answers) in zip(rows, DESIGN, strict=True):
        record = to_review_record(row)
        for who, answer in zip("AB", answers, strict=True):
            if answer is None:
                continue
            label, status, errors = answer
            record.responses.add(rg.Response("answer_correct", label, ids[who], status))
            record.responses.add(rg.Response("language_quality", LANGUAGE_QUALITY[who], ids[who], status))
            if errors:
                record.responses.add(rg.Response("error_types", errors, ids[who], status))
        records.append(record)
    dataset.records.log(records)
