"""Human ratings of model answers: push answers, two annotators rate, pull the ratings table."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from review_case import unique_name, user_ids
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.quality.ratings import (
    TABLE_COLUMNS,
    RatingsInputError,
    find_dataset,
    pull_ratings,
    push_ratings,
    read_answers,
    record_id,
    to_rating_record,
    write_table,
)

ANSWERS = [
    {
        "id": "pubmedqa-1",
        "question": "L'aspirine réduit-elle le risque ?",
        "reference": "Oui, modestement.",
        "answer": "Oui.",
        "model": "qwen3-4b-dora",
    },
    {
        "id": "pubmedqa-1",
        "question": "L'aspirine réduit-elle le risque ?",
        "reference": "Oui, modestement.",
        "answer": "Non.",
        "model": "qwen3-4b-base",
    },
    {
        "id": "pubmedqa-2",
        "question": "Quel est le traitement ?",
        "reference": "L'amoxicilline.",
        "answer": "Amoxicilline.",
        "model": "qwen3-4b-dora",
    },
]


def write_answers(path, rows) -> str:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return str(path)


def test_read_answers_checks_every_line(tmp_path):
    assert read_answers(write_answers(tmp_path / "a.jsonl", ANSWERS)) == ANSWERS
    bad = [ANSWERS[0], {**ANSWERS[1], "model": ""}]
    with pytest.raises(RatingsInputError, match=r"a\.jsonl:2: missing or empty \['model'\]"):
        read_answers(write_answers(tmp_path / "a.jsonl", bad))


def test_record_ids_differ_per_model_and_are_stable():
    ids = [to_rating_record(row).id for row in ANSWERS]
    assert len(set(ids)) == 3 and ids[0] == record_id("pubmedqa-1", "qwen3-4b-dora")
    assert ids[0].startswith("pubmedqa-1--")


def test_table_formats(tmp_path):
    rows = [
        {"record_id": "r", "item_id": "i", "model": "m", "annotator": "a", "rating": 4, "equivalent": None}
    ]
    assert pq.read_table(write_table(rows, tmp_path / "t.parquet")).to_pylist() == rows
    assert [json.loads(x) for x in write_table(rows, tmp_path / "t.jsonl").read_text().splitlines()] == rows
    with pytest.raises(ValueError, match=".jsonl or .parquet"):
        write_table(rows, tmp_path / "t.csv")


@pytest.mark.slow
def test_push_rate_pull(argilla_client, argilla_server, tmp_path, monkeypatch):
    import argilla as rg

    name, workspace = unique_name("ratings"), argilla_server["workspace"]
    annotators = [a["username"] for a in argilla_server["annotators"][:2]]
    dataset = push_ratings(argilla_client, ANSWERS, name, workspace)
    push_ratings(argilla_client, ANSWERS, name, workspace)
    assert len(dataset.records.to_list()) == 3
    settings = find_dataset(argilla_client, name, workspace).settings
    assert [f.name for f in settings.fields] == ["question", "reference", "answer", "model"]
    assert {q.name: type(q).__name__ for q in settings.questions} == {
        "rating": "RatingQuestion",
        "equivalent": "LabelQuestion",
    }
    assert settings.distribution.min_submitted == 2

    first, second = user_ids(argilla_client, annotators)
    given = {
        0: [(first, 5, "yes"), (second, 4, "yes")],
        1: [(first, 1, "no"), (second, 2, "no")],
        2: [(first, 4, "yes")],
    }
    records = []
    for i, row in enumerate(ANSWERS):
        record = to_rating_record(row)
        for user, rating, equivalent in given[i]:
            record.responses.add(rg.Response("rating", rating, user, "submitted"))
            record.responses.add(rg.Response("equivalent", equivalent, user, "submitted"))
        records.append(record)
    # a draft from the second annotator on the third answer is not in the table
    records[2].responses.add(rg.Response("rating", 2, second, "draft"))
    dataset.records.log(records)

    table = pull_ratings(argilla_client, name, workspace)
    assert all(tuple(row) == TABLE_COLUMNS for row in table)
    got = sorted((r["item_id"], r["model"], r["annotator"], r["rating"], r["equivalent"]) for r in table)
    a, b = annotators
    assert got == sorted(
        [
            ("pubmedqa-1", "qwen3-4b-dora", a, 5, True),
            ("pubmedqa-1", "qwen3-4b-dora", b, 4, True),
            ("pubmedqa-1", "qwen3-4b-base", a, 1, False),
            ("pubmedqa-1", "qwen3-4b-base", b, 2, False),
            ("pubmedqa-2", "qwen3-4b-dora", a, 4, True),
        ]
    )

    monkeypatch.setenv("ARGILLA_API_URL", argilla_server["url"])
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server["owner_api_key"])
    out = tmp_path / "ratings.parquet"
    result = CliRunner().invoke(
        app, ["quality", "ratings", "pull", name, "--workspace", workspace, "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).to_pylist() == table
    result = CliRunner().invoke(
        app,
        [
            "quality",
            "ratings",
            "push",
            write_answers(tmp_path / "a.jsonl", ANSWERS),
            "--name",
            name,
            "--workspace",
            workspace,
        ],
    )
    assert result.exit_code == 0 and "pushed 3 answers" in result.output
    assert len(find_dataset(argilla_client, name, workspace).records.to_list()) == 3
