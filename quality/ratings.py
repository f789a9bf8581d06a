"""Human ratings of model answers to open-ended questions, for judge-human correlation.

A second kind of Argilla dataset: each record shows a question, the reference answer, a model's
answer and the model (adapter) name; annotators rate the answer 1-5 and say whether it is
equivalent to the reference. Record ids are ``<item id>--<sha256(model)[:12]>``, so pushing the same
answers again updates them.

Input of ``push`` (JSONL, one answer a line): ``{"id", "question", "reference", "answer", "model"}``
(``id``: the dataset id of the item; extra keys are ignored), or the evaluation's own output:
``predictions.parquet`` files of ``medinjection evaluate`` (or folders holding them), whose
open-ended rows give ``id``, ``question``, ``reference`` and ``answer_text``, and whose
``summary.json`` gives the model (its ``model_tag``: ``base`` or the mix). ``sample_answers`` keeps
the same items for every model, so that the ratings compare models on equal questions.

Output of ``pull`` (the ratings table, JSONL or parquet; one row per submitted response)::

    record_id   str    the Argilla record id (<item id>--<model hash>)
    item_id     str    the dataset id of the question
    model       str    the model / adapter name
    annotator   str    the annotator's username (user id when unknown)
    rating      int    1-5, or null when not given
    equivalent  bool   true when the annotator said "yes", false for "no", null when not given

The evaluation recipe reads this table to correlate judge scores with human ratings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medinjection.quality.review import find_dataset, get_or_create, plain_records, usernames
from medinjection.quality.sampling import rank_key

if TYPE_CHECKING:
    import argilla as rg

INPUT_KEYS = ("id", "question", "reference", "answer", "model")
TABLE_COLUMNS = ("record_id", "item_id", "model", "annotator", "rating", "equivalent")
MIN_SUBMITTED = 2

GUIDELINES = """\
Rate the model's answer to the medical question (1 = wrong or harmful, 5 = complete and correct),
using the reference answer as a guide, and say whether it is equivalent to the reference
(same medical content, whatever the wording).
"""


class RatingsInputError(ValueError):
    pass


def ratings_settings(client: rg.Argilla, min_submitted: int = MIN_SUBMITTED) -> rg.Settings:
    import argilla as rg

    return rg.Settings(
        guidelines=GUIDELINES,
        fields=[
            rg.TextField(name="question", title="Question", use_markdown=True, client=client),
            rg.TextField(name="reference", title="Reference answer", use_markdown=True, client=client),
            rg.TextField(name="answer", title="Model answer", use_markdown=True, client=client),
            rg.TextField(name="model", title="Model / adapter", client=client),
        ],
        questions=[
            rg.RatingQuestion(
                name="rating", title="Quality of the answer (1-5)", values=[1, 2, 3, 4, 5], client=client
            ),
            rg.LabelQuestion(
                name="equivalent", title="Equivalent to the reference?", labels=["yes", "no"], client=client
            ),
        ],
        metadata=[
            rg.TermsMetadataProperty(name="model_name", title="model / adapter", client=client),
            rg.TermsMetadataProperty(name="item_id", client=client),
        ],
        distribution=rg.TaskDistribution(min_submitted=min_submitted),
    )


def record_id(item_id: str, model: str) -> str:
    return f"{item_id}--{hashlib.sha256(model.encode()).hexdigest()[:12]}"


def read_answers(path: str | Path) -> list[dict[str, Any]]:
    """The model answers of a JSONL file, checked: every line needs id, question, reference, answer, model."""
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise RatingsInputError(f"{path}:{number}: not JSON ({err})") from err
        missing = [key for key in INPUT_KEYS if not isinstance(row.get(key), str) or not row[key].strip()]
        if missing:
            raise RatingsInputError(
                f"{path}:{number}: missing or empty {missing} (each line needs {list(INPUT_KEYS)})"
            )
        rows.append(row)
    return rows


EMPTY_ANSWER = "(empty answer)"
"""Shown to raters for a model answer with no text (Argilla refuses empty fields); still rated."""


def prediction_files(path: str | Path) -> list[Path]:
    """``path`` itself (a predictions.parquet) or every ``predictions.parquet`` under a folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(path.rglob("predictions.parquet"))
        if found:
            return found
        raise RatingsInputError(f"{path}: no predictions.parquet under this folder")
    raise RatingsInputError(f"{path}: no such file or folder")


def _model_of(path: Path, model: str | None) -> str:
    if model:
        return model
    summary = path.parent / "summary.json"
    if summary.is_file():
        tag = json.loads(summary.read_text(encoding="utf-8")).get("model_tag")
        if tag:
            return str(tag)
    raise RatingsInputError(f"{path}: no summary.json with a model_tag beside it; name the model (--model)")


def read_prediction_answers(path: str | Path, model: str | None = None) -> list[dict[str, Any]]:
    """The open-ended answers of evaluation predictions files, as ``push`` rows.

    Args:
        path: a ``predictions.parquet`` of ``medinjection evaluate``, or a folder holding some.
        model: the model name for the raters' table (default: the ``model_tag`` of the
            ``summary.json`` beside each file).
    """
    import pyarrow.parquet as pq

    rows = []
    for file in prediction_files(path):
        table = pq.read_table(file)
        missing = [
            c for c in ("id", "type", "question", "reference", "answer_text") if c not in table.column_names
        ]
        if missing:
            if "type" in table.column_names and "OEQ" not in set(table.column("type").to_pylist()):
                continue  # a multiple-choice task: nothing to rate
            raise RatingsInputError(f"{file}: no column(s) {missing} (open-ended predictions need them)")
        name = _model_of(file, model)
        for number, row in enumerate(table.to_pylist()):
            if row["type"] != "OEQ" or (row.get("permutation") or 0) != 0:
                continue
            for key in ("id", "question", "reference"):
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise RatingsInputError(f"{file}: row {number} ({row.get('id')}): empty {key!r}")
            answer = row.get("answer_text") or ""
            rows.append(
                {
                    "id": row["id"],
                    "question": row["question"],
                    "reference": row["reference"],
                    "answer": answer if answer.strip() else EMPTY_ANSWER,
                    "model": name,
                }
            )
    return rows


def sample_answers(rows: Sequence[dict[str, Any]], items: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """The answers of ``items`` questions (the same ones for every model; ``None``: all of them).

    Questions are taken by smallest ``sha256(seed:id)``, those answered by every model first.
    """
    if items is None:
        return list(rows)
    models_of: dict[str, set[str]] = {}
    for row in rows:
        models_of.setdefault(row["id"], set()).add(row["model"])
    every = set().union(*models_of.values()) if models_of else set()

    def order(item: str) -> tuple[bool, str]:
        return (models_of[item] != every, rank_key(seed, item))

    chosen = set(sorted(models_of, key=order)[:items])
    return [row for row in rows if row["id"] in chosen]


def read_any_answers(paths: Sequence[str | Path], model: str | None = None) -> list[dict[str, Any]]:
    """Answers from JSONL files (``read_answers``) and predictions files or folders, in order."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        path = Path(path)
        if path.suffix == ".jsonl":
            rows.extend(read_answers(path))
        else:
            rows.extend(read_prediction_answers(path, model))
    seen: set[str] = set()
    for row in rows:
        key = record_id(row["id"], row["model"])
        if key in seen:
            raise RatingsInputError(f"answer of {row['model']!r} to {row['id']!r} given twice")
        seen.add(key)
    return rows


def to_rating_record(row: dict[str, Any]) -> rg.Record:
    import argilla as rg

    return rg.Record(
        id=record_id(row["id"], row["model"]),
        fields={key: row[key] for key in ("question", "reference", "answer", "model")},
        metadata={"model_name": row["model"], "item_id": row["id"]},
    )


def push_ratings(
    client: rg.Argilla,
    rows: list[dict[str, Any]],
    name: str,
    workspace: str | None = None,
    min_submitted: int = MIN_SUBMITTED,
) -> rg.Dataset:
    dataset = get_or_create(client, name, workspace, ratings_settings, min_submitted)
    dataset.records.log([to_rating_record(row) for row in rows])
    return dataset


def ratings_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per submitted response (columns ``TABLE_COLUMNS``), from ``plain_records`` output."""
    table = []
    for record in records:
        for response in record["responses"]:
            if response["status"] != "submitted":
                continue
            values = response["values"]
            equivalent = values.get("equivalent")
            table.append(
                {
                    "record_id": record["id"],
                    "item_id": record["metadata"].get("item_id", ""),
                    "model": record["metadata"].get("model_name", ""),
                    "annotator": response["user"],
                    "rating": int(values["rating"]) if values.get("rating") is not None else None,
                    "equivalent": None if equivalent is None else equivalent == "yes",
                }
            )
    return sorted(table, key=lambda row: (row["item_id"], row["model"], row["annotator"]))


def pull_ratings(client: rg.Argilla, name: str, workspace: str | None = None) -> list[dict[str, Any]]:
    return ratings_table(plain_records(find_dataset(client, name, workspace), usernames(client)))


def write_table(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write the ratings table as ``.jsonl`` or ``.parquet`` (chosen by the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("record_id", pa.string()),
                ("item_id", pa.string()),
                ("model", pa.string()),
                ("annotator", pa.string()),
                ("rating", pa.int64()),
                ("equivalent", pa.bool_()),
            ]
        )
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    else:
        raise ValueError(f"{path}: the ratings table is written as .jsonl or .parquet")
    return path
