"""Model answers straight from evaluation predictions files to Argilla and back, then calibrated:
push the open-ended answers of two models (the same questions for both), two annotators rate them,
pull the table, and the judge-human correlations come out as designed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from review_case import unique_name, user_ids
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.quality.ratings import (
    EMPTY_ANSWER,
    RatingsInputError,
    find_dataset,
    read_any_answers,
    read_prediction_answers,
    record_id,
    sample_answers,
)

N = 6
# the judge's grade of each answer, by model; the annotators will agree with it exactly (design)
GRADES = {"base": [1, 2, 3, 1, 2, 3], "nat": [5, 4, 5, 3, 4, 5]}


def write_predictions(root: Path) -> Path:
    """An evaluation output folder: two models, four MCQ rows and N open-ended rows each."""
    for tag, grades in GRADES.items():
        folder = root / tag / "demo-oeq"
        folder.mkdir(parents=True)
        rows = [
            {"id": f"mc-{i}", "task": "demo-oeq", "type": "MCQU", "scorer": "mcq", "permutation": 0}
            for i in range(4)
        ]
        for i, grade in enumerate(grades):
            rows.append(
                {
                    "id": f"oeq-{i}",
                    "task": "demo-oeq",
                    "type": "OEQ",
                    "scorer": "oeq",
                    "permutation": 0,
                    "question": f"Question : quel traitement pour le cas {i} ?",
                    "reference": f"L'amoxicilline pendant {i + 5} jours.",
                    "answer_text": "" if (tag, i) == ("base", 0) else f"Réponse de {tag} au cas {i}.",
                    "answer_tokens": 5 + i,
                    "judge_graded": float(grade),
                    "judge_graded_status": "ok",
                }
            )
        columns = list(dict.fromkeys(key for row in rows for key in row))  # the union, null where absent
        pq.write_table(
            pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows]),
            folder / "predictions.parquet",
        )
        (folder / "summary.json").write_text(
            json.dumps({"schema_version": 2, "model_tag": tag, "task": "demo-oeq", "metrics": {}})
        )
    return root


def test_answers_from_predictions(tmp_path):
    root = write_predictions(tmp_path / "eval-out")
    rows = read_prediction_answers(root)
    assert len(rows) == 2 * N and {r["model"] for r in rows} == {"base", "nat"}
    empty = next(r for r in rows if r["model"] == "base" and r["id"] == "oeq-0")
    assert empty["answer"] == EMPTY_ANSWER  # an empty answer is rated (as wrong), not dropped
    assert next(r for r in rows if r["model"] == "nat" and r["id"] == "oeq-2")["question"].endswith("cas 2 ?")
    sample = sample_answers(rows, 3, seed=0)
    assert len(sample) == 6 and len({r["id"] for r in sample}) == 3  # the same 3 questions for both models
    assert sample == sample_answers(rows, 3, seed=0) and sample_answers(rows, None) == rows
    single = read_prediction_answers(root / "nat" / "demo-oeq" / "predictions.parquet", model="my-name")
    assert {r["model"] for r in single} == {"my-name"}
    with pytest.raises(RatingsInputError, match="given twice"):
        read_any_answers([root, root / "nat" / "demo-oeq" / "predictions.parquet"])
    (root / "nat" / "demo-oeq" / "summary.json").unlink()
    with pytest.raises(RatingsInputError, match="no summary.json with a model_tag beside it; name the model"):
        read_prediction_answers(root / "nat" / "demo-oeq" / "predictions.parquet")


@pytest.mark.slow
def test_ratings_round_trip_and_calibration(argilla_client, argilla_server, tmp_path, monkeypatch):
    import argilla as rg

    from medinjection.evaluation.calibration import calibrate
    from medinjection.evaluation.report import read_ratings

    root = write_predictions(tmp_path / "eval-out")
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server["url"])
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server["owner_api_key"])
    name, workspace = unique_name("answer-ratings"), argilla_server["workspace"]
    pushed = CliRunner().invoke(
        app,
        ["quality", "ratings", "push", str(root), "--items", "4", "--name", name, "--workspace", workspace],
    )
    assert pushed.exit_code == 0, pushed.output
    assert "pushed 8 answers" in pushed.output
    dataset = find_dataset(argilla_client, name, workspace)
    records = dataset.records.to_list(flatten=True)
    assert len(records) == 8
    items = sorted({r["metadata.item_id"] if "metadata.item_id" in r else r["item_id"] for r in records})
    assert len(items) == 4
    shown = {r["id"]: r["answer"] for r in records}
    if record_id("oeq-0", "base") in shown:
        assert shown[record_id("oeq-0", "base")] == EMPTY_ANSWER

    # two annotators rate each answer as the judge graded it (the second one point lower on nat's)
    annotators = [a["username"] for a in argilla_server["annotators"][:2]]
    first, second = user_ids(argilla_client, annotators)
    logged = []
    for item in items:
        i = int(item.split("-")[1])
        for tag, grades in GRADES.items():
            record = rg.Record(
                id=record_id(item, tag),
                fields={
                    "question": f"Question : quel traitement pour le cas {i} ?",
                    "reference": f"L'amoxicilline pendant {i + 5} jours.",
                    "answer": shown[record_id(item, tag)],
                    "model": tag,
                },
                metadata={"model_name": tag, "item_id": item},
            )
            for user, delta in ((first, 0), (second, -1 if tag == "nat" else 0)):
                record.responses.add(rg.Response("rating", max(1, grades[i] + delta), user, "submitted"))
                record.responses.add(
                    rg.Response("equivalent", "yes" if grades[i] >= 4 else "no", user, "submitted")
                )
            logged.append(record)
    dataset.records.log(logged)

    table = tmp_path / "ratings.parquet"
    pulled = CliRunner().invoke(
        app, ["quality", "ratings", "pull", name, "--workspace", workspace, "--output", str(table)]
    )
    assert pulled.exit_code == 0, pulled.output
    ratings = read_ratings(table)
    assert len(ratings) == 16  # 8 answers x 2 annotators

    predictions = {
        tag: [
            r
            for r in pq.read_table(root / tag / "demo-oeq" / "predictions.parquet").to_pylist()
            if r["type"] == "OEQ"
        ]
        for tag in GRADES
    }
    result = calibrate(ratings, predictions, resamples=200)
    assert result["n"] == 8 and result["n_annotators"] == 2
    judge = next(e for e in result["judges"] if e["name"] == "judge_graded" and e["label"] == "human_rating")
    # human mean = grade for base, grade - 0.5 for nat: a linear map within each model, not overall
    import numpy as np

    chosen = [int(i.split("-")[1]) for i in items]
    judge_scores = [float(GRADES[t][i]) for i in chosen for t in sorted(GRADES)]
    human = [GRADES[t][i] - (0.5 if t == "nat" else 0.0) for i in chosen for t in sorted(GRADES)]
    assert judge["n"] == 8
    assert judge["pearson"]["value"] == pytest.approx(float(np.corrcoef(judge_scores, human)[0, 1]))
    assert judge["pearson"]["value"] > 0.9

    report = CliRunner().invoke(
        app,
        [
            "report",
            str(root),
            "--output",
            str(tmp_path / "report"),
            "--ratings",
            str(table),
            "--resamples",
            "100",
        ],
    )
    assert report.exit_code == 0, report.output
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "8 rated answers (16 ratings by 2 annotators)" in markdown
    ranked = markdown.split("### Agreement with the human rating (1-5)")[1]
    line = next(x for x in ranked.splitlines() if "| judge_graded |" in x)
    assert "| judge | 8 |" in line and f"{judge['pearson']['value']:.2f} [" in line
    assert (tmp_path / "report" / "score_vs_human_rating.png").is_file()
