"""``medinjection calibrate`` on a labelled French answer set: reading and checking the labels (JSONL,
CSV, Parquet), the metrics and figures against direct computations, the same bytes twice, and real
judges: the project's fault server (known verdicts, unparseable and failed ones), the tiny Qwen3 in
process, and a ``transformers serve`` of it."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from judge_server import JudgeServer
from scipy import stats
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.evaluation import text_metrics
from medinjection.evaluation.calibrate import (
    JudgeSpec,
    calibration_result,
    judge_specs,
    read_labelled,
    run_calibration,
)
from medinjection.evaluation.calibration import CalibrationError
from medinjection.evaluation.judge import judge_prompt

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "calibration" / "answers.jsonl"


def fixture_rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def entry(result: dict, name: str, label: str) -> dict:
    return next(
        e for e in (*result["judges"], *result["metrics"]) if e["name"] == name and e["label"] == label
    )


# --- reading ----------------------------------------------------------------------------------


def test_the_fixture_is_read_and_labels_averaged():
    labelled = read_labelled(FIXTURE)
    assert (len(labelled.answers), labelled.rows, labelled.annotators) == (36, 61, 2)
    assert {a["model"] for a in labelled.answers} == {"concis", "verbeux", "approx"}
    by_key = {(a["id"], a["model"]): a for a in labelled.answers}
    # two annotators who disagree: "oui"/"non" spelled as the file has them, ratings 4 and 3
    split = by_key[("q11", "concis")]
    assert (split["human_equivalent"], split["human_rating"], split["n_annotators"]) == (0.5, 3.5, 2)
    # every spelling in the file (oui, yes, 1, true, Oui / non, no, 0, false, NON) read as 0/1
    spellings = {str(r["human_equivalent"]) for r in fixture_rows()}
    assert {"oui", "yes", "1", "True", "Oui", "non", "no", "0", "False", "NON"} <= spellings
    for (item, model), answer in by_key.items():
        rows = [r for r in fixture_rows() if (r["id"], r["model"]) == (item, model)]
        yes = [str(r["human_equivalent"]).lower() in ("oui", "yes", "1", "true") for r in rows]
        assert answer["human_equivalent"] == pytest.approx(sum(yes) / len(yes))
        assert answer["human_rating"] == pytest.approx(np.mean([r["human_rating"] for r in rows]))
        assert answer["length"] == len(answer["answer"].split())  # no answer_tokens column: words
    assert labelled.length_unit.startswith("words")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"human_rating": 9}, "line 3: field 'human_rating': 9 is not a rating from 1 to 5"),
        ({"human_rating": -1}, "line 3: field 'human_rating': -1 is not a rating from 1 to 5"),
        (
            {"human_equivalent": "peut-être"},
            "line 3: field 'human_equivalent': 'peut-être' is not a yes/no label",
        ),
        ({"human_equivalent": None, "human_rating": None}, "line 3: no human label"),
        ({"reference": ""}, "line 3: field 'reference': missing or empty"),
        ({"answer_tokens": "beaucoup"}, "line 3: field 'answer_tokens': 'beaucoup' is not a count of tokens"),
        ({"annotator": "dr_martin", "id": "q01", "model": "concis"}, "labelled twice by 'dr_martin'"),
        (
            {"id": "q01", "model": "concis", "annotator": "dr_x", "answer": "Autre texte."},
            "field 'answer': differs",
        ),
    ],
)
def test_a_bad_row_is_named_with_its_line_and_field(tmp_path, change, message):
    rows = fixture_rows()
    rows[2] = {**rows[2], **change}
    with pytest.raises(CalibrationError, match=re.escape(message)):
        read_labelled(write_jsonl(tmp_path / "answers.jsonl", rows))


def test_bad_files(tmp_path):
    with pytest.raises(CalibrationError, match="no such file"):
        read_labelled(tmp_path / "none.jsonl")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(CalibrationError, match=r"a labelled answer set is \.jsonl, \.csv, \.parquet"):
        read_labelled(tmp_path / "a.txt")
    (tmp_path / "b.jsonl").write_text('{"id": "q"}\n{oops\n')
    with pytest.raises(CalibrationError, match=r"b.jsonl, line 2: not valid JSON"):
        read_labelled(tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl").write_text("[1, 2]\n")
    with pytest.raises(CalibrationError, match=r"c.jsonl, line 1: not a JSON object"):
        read_labelled(tmp_path / "c.jsonl")


def test_csv_and_parquet_give_the_same_figures(tmp_path):
    rows = fixture_rows()
    csv_path = tmp_path / "answers.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    parquet_path = tmp_path / "answers.parquet"
    normalised = [{**r, "human_equivalent": str(r["human_equivalent"])} for r in rows]  # one column type
    pq.write_table(pa.Table.from_pylist(normalised), parquet_path)
    results = [
        calibration_result(path, tmp_path / "cache.sqlite", resamples=50)[0]
        for path in (FIXTURE, csv_path, parquet_path)
    ]
    for result in results[1:]:
        assert result["metrics"] == results[0]["metrics"] and result["labels"] == results[0]["labels"]
    # a bad CSV row is named by its line in the file (the header is line 1)
    rows[4]["human_rating"] = "cinq"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(CalibrationError, match=r"answers.csv, line 6: field 'human_rating': 'cinq'"):
        read_labelled(csv_path)


# --- metrics only -----------------------------------------------------------------------------


def test_metrics_and_figures_against_direct_computations(tmp_path):
    result = run_calibration(FIXTURE, tmp_path / "calib", resamples=200, seed=0)
    labelled = read_labelled(FIXTURE)
    answers, references = [a["answer"] for a in labelled.answers], [a["reference"] for a in labelled.answers]
    direct = {
        "rouge2": text_metrics.rouge2(answers, references).per_item,
        "meteor": text_metrics.meteor(answers, references).per_item,
        "bleu_sentence": text_metrics.sentence_bleu(answers, references).per_item,
    }
    assert result["n"] == 36 and result["judges"] == []
    assert {(e["name"], e["label"]) for e in result["metrics"]} == {
        (m, label) for m in direct for label in ("human_equivalent", "human_rating")
    }
    for name, values in direct.items():
        for label in ("human_equivalent", "human_rating"):
            human = [a[label] for a in labelled.answers]
            found = entry(result, name, label)
            assert found["n"] == 36
            assert found["pearson"]["value"] == pytest.approx(stats.pearsonr(values, human).statistic)
            assert found["spearman"]["value"] == pytest.approx(stats.spearmanr(values, human).statistic)
            assert found["kendall"]["value"] == pytest.approx(stats.kendalltau(values, human).statistic)
            length = np.log2(1 + np.array([a["length"] for a in labelled.answers]))
            bias = found["bias"]["verbosity"]
            assert bias["with_length"]["value"] == pytest.approx(stats.pearsonr(values, length).statistic)
            per = found["bias"]["per_generator"]["models"]
            for model in ("concis", "verbeux", "approx"):
                mine = [i for i, a in enumerate(labelled.answers) if a["model"] == model]
                r = stats.pearsonr([values[i] for i in mine], [human[i] for i in mine]).statistic
                assert per[model]["value"] == pytest.approx(r) and per[model]["n"] == 12
    assert result["labels"]["human_equivalent"] == {
        "n": 36,
        "equivalent": 19,
        "not_equivalent": 15,
        "split": 2,
    }
    assert result["labels"]["human_rating"]["n"] == 36
    assert result["source"]["annotators"] == 2 and result["source"]["rows"] == 61
    assert result["metric_settings"]["bleu_sentence"]["signature"].startswith("nrefs:1")
    assert "bertscore_f1" not in result["metric_settings"]  # not asked for: no column, no entry


def test_same_answers_same_bytes_and_the_command(tmp_path):
    runner = CliRunner()
    outputs = []
    for name in ("one", "two"):
        done = runner.invoke(
            app, ["calibrate", str(FIXTURE), "--output", str(tmp_path / name), "--resamples", "100"]
        )
        assert done.exit_code == 0, done.output
        outputs.append(tmp_path / name)
    assert "best against human_rating: meteor" in done.output
    files = sorted(p.name for p in outputs[0].iterdir())
    assert files == [
        "agreement_by_generator_human_equivalent.png",
        "agreement_by_generator_human_rating.png",
        "calibration.json",
        "calibration.md",
        "score_vs_human_equivalent.png",
        "score_vs_human_rating.png",
        "score_vs_length.png",
    ]
    for name in files:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
    markdown = (outputs[0] / "calibration.md").read_text()
    result = json.loads((outputs[0] / "calibration.json").read_text())
    assert set(result) >= {"n", "labels", "metrics", "judges"}
    # the ranked table: best Pearson r first, interval beside it, the paper's figure for ROUGE-2
    table = markdown.split("## Agreement with the human rating (1-5)")[1].split("\n\n")[1].splitlines()[2:]
    names = [row.split(" | ")[1] for row in table]
    best = sorted(
        (e for e in result["metrics"] if e["label"] == "human_rating"), key=lambda e: -e["pearson"]["value"]
    )
    assert names == [e["name"] for e in best]
    rouge = entry(result, "rouge2", "human_rating")["pearson"]
    assert f"{rouge['value']:.2f} [{rouge['ci95'][0]:.2f}, {rouge['ci95'][1]:.2f}]" in markdown
    assert "0.36 (ROUGE-2)" in markdown and "MedGemma-27B 0.61" in markdown
    for png in (p for p in files if p.endswith(".png")):
        assert f"]({png})" in markdown
    # a bad row: exit 1 with the line and field, no traceback
    rows = fixture_rows()
    rows[0]["human_rating"] = 9
    bad = runner.invoke(
        app, ["calibrate", str(write_jsonl(tmp_path / "bad.jsonl", rows)), "-o", str(tmp_path / "x")]
    )
    assert bad.exit_code == 1
    assert "bad.jsonl, line 1: field 'human_rating': 9 is not a rating from 1 to 5" in bad.output
    assert "Traceback" not in bad.output


def test_judge_options_pair_by_position(tmp_path):
    specs = judge_specs(["a", "b"], ["openai"], ["http://x/v1", "http://y/v1"], ["binary-strict-v1"])
    assert [(s.model, s.backend, s.base_url, s.prompts) for s in specs] == [
        ("a", "openai", "http://x/v1", ("binary-strict-v1",)),
        ("b", "openai", "http://y/v1", ("binary-strict-v1",)),
    ]
    with pytest.raises(CalibrationError, match="3 --judge-base-url values for 2 --judge"):
        judge_specs(["a", "b"], None, ["u", "v", "w"])
    with pytest.raises(ValueError, match="unknown judge prompt version 'binary-v9'"):
        judge_specs(["a"], prompts=["binary-v9"])
    with pytest.raises(ValueError, match="no such judge prompt file"):
        judge_specs(["a"], prompts=[str(tmp_path / "mine.yaml")])
    (tmp_path / "mine.yaml").write_text("version: x\nsystem: s\nuser: u\n")
    with pytest.raises(ValueError, match=re.escape(f"prompt {tmp_path / 'mine.yaml'} has no 'metric'")):
        judge_specs(["a"], prompts=[str(tmp_path / "mine.yaml")])


# --- judges -----------------------------------------------------------------------------------


def judged_set(path: Path) -> Path:
    """Ten answers of two generators to five cases ("du cas N": the fault server's plan by number).
    copie repeats the reference (the server's judges say 1 / 5), autre does not (0 / 2); the
    annotators agree with the judge except on autre's case 4."""
    rows = []
    for i in range(5):
        question = f"Question : quel est le traitement du cas {i} ?"
        reference = f"L'amoxicilline pendant {i + 5} jours."
        for model, answer in (
            ("copie", reference),
            ("autre", "Le paracétamol, puis on verra selon la fièvre."),
        ):
            good = model == "copie" or i == 4
            for annotator in ("dr_a", "dr_b"):
                rows.append(
                    {
                        "id": f"cas-{i}",
                        "question": question,
                        "reference": reference,
                        "answer": answer,
                        "model": model,
                        "annotator": annotator,
                        "human_equivalent": "oui" if good else "non",
                        "human_rating": 5 if good else (2 if annotator == "dr_a" else 1),
                    }
                )
    return write_jsonl(path, rows)


STRICT = """\
version: judge-binary-strict-fr-v1
metric: judge_binary
scale: [0, 1]
max_tokens: 1
system: >-
  Vous êtes médecin. Dites si la réponse candidate donne le même contenu médical que la réponse de
  référence. Répondez par un seul chiffre : 1 si oui, 0 si non.
user: |-
  Question: {question}
  Candidate_answer: {answer}
  Ground_truth: {reference}
"""


def test_judges_against_the_fault_server(tmp_path):
    labelled = judged_set(tmp_path / "answers.jsonl")
    fast = {"max_retries": 2, "backoff_s": 0.0, "timeout_s": 10}
    strict = tmp_path / "strict-fr.yaml"  # a prompt file of one's own, beside the bundled binary one
    strict.write_text(STRICT, encoding="utf-8")
    with JudgeServer() as server:
        prompts = ("binary-lenient-v1", "graded-v1", str(strict))
        specs = [JudgeSpec("judge-model", "openai", server.url, prompts, fast)]
        result = run_calibration(labelled, tmp_path / "calib", judges=specs, resamples=200)
        asked = sum(server.requests.values())
        again, _ = calibration_result(
            labelled, tmp_path / "calib" / "judge-cache.sqlite", judges=specs, resamples=200
        )
        asked_again = sum(server.requests.values()) - asked
    binary = entry(result, "judge-model / judge-binary-lenient-v1", "human_equivalent")
    # case 1: an unparseable reply, case 3: a request that fails for good (both generators, both prompts)
    assert binary["verdicts"] == {"ok": 6, "unparseable": 2, "failed": 2}
    assert (
        binary["n"] == 6
        and binary["model"] == "judge-model"
        and binary["prompt"] == "judge-binary-lenient-v1"
    )
    # each entry names its prompt by version and by the hash of its texts
    assert binary["prompt_sha256"] == judge_prompt("binary-lenient-v1").sha256
    # the scored answers: cases 0, 2, 4 of both generators; the judge says 1 for copie, 0 for autre;
    # the annotators say yes for copie and for autre's case 4
    judge = [1, 0, 1, 0, 1, 0]
    human = [1, 0, 1, 0, 1, 1]
    accuracy = 5 / 6
    expected = ((3 / 6) * (4 / 6)) + ((3 / 6) * (2 / 6))
    assert binary["accuracy"]["value"] == pytest.approx(accuracy)
    assert binary["cohen_kappa"]["value"] == pytest.approx((accuracy - expected) / (1 - expected))
    assert binary["f1"]["value"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))
    assert binary["confusion"] == {"tp": 3, "fp": 0, "fn": 1, "tn": 2}
    assert binary["pearson"]["value"] == pytest.approx(stats.pearsonr(judge, human).statistic)
    graded = entry(result, "judge-model / judge-graded-v1", "human_rating")
    ratings = [5, 1.5, 5, 1.5, 5, 5]
    assert graded["pearson"]["value"] == pytest.approx(stats.pearsonr([5, 2, 5, 2, 5, 2], ratings).statistic)
    assert "accuracy" not in graded
    # nothing paid twice: the second run asks only for the failed requests again
    assert asked_again == 2 * 3 * 3  # 2 generators x 3 prompts x 3 attempts of case 3
    own = entry(result, "judge-model / judge-binary-strict-fr-v1", "human_equivalent")
    assert own["prompt_file"] == str(strict) and own["accuracy"] == binary["accuracy"]
    assert own["prompt_sha256"] == judge_prompt(str(strict)).sha256 != binary["prompt_sha256"]
    assert again["judges"] == result["judges"]
    assert result["judge_usage"]["judge1: judge-model"]["failures"] == 6
    markdown = (tmp_path / "calib" / "calibration.md").read_text()
    assert (
        "| judge-model / judge-binary-lenient-v1 | human_equivalent | 6 | 2 | 2 | TP 3, FP 0, FN 1, TN 2 |"
        in markdown
    )


def test_the_tiny_judge_in_process(tiny_path, tmp_path):
    labelled = judged_set(tmp_path / "answers.jsonl")
    specs = judge_specs([str(tiny_path)], ["transformers"], prompts=["binary-strict-v1"])
    result = run_calibration(labelled, tmp_path / "calib", judges=specs, resamples=50)
    found = entry(result, f"{tiny_path.name} / judge-binary-strict-v1", "human_equivalent")
    # a random model: each verdict is parsed or counted unparseable, never scored 0 by default
    counts = found["verdicts"]
    assert counts["ok"] + counts["unparseable"] == 10 and counts["failed"] == 0
    assert found["n"] == counts["ok"]
    assert result["judge_usage"][f"judge1: {tiny_path}"]["requests"] == 10


@pytest.fixture(scope="module")
def served(tiny_path, tmp_path_factory, serve_with_transformers):
    yield from serve_with_transformers(tiny_path, tmp_path_factory)


@pytest.mark.slow
def test_a_served_judge_through_the_command(served, tiny_path, tmp_path):
    labelled = judged_set(tmp_path / "answers.jsonl")
    command = [
        "calibrate",
        str(labelled),
        "-o",
        str(tmp_path / "calib"),
        "--judge",
        str(tiny_path),
        "--judge-base-url",
        served,
        "--prompt",
        "graded-v1",
        "--max-tokens",
        "2",
        "--resamples",
        "50",
    ]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    assert "10 requests, 0 from the cache" in first.output
    second = CliRunner().invoke(app, command)
    assert "0 requests, 10 from the cache" in second.output  # a rerun (or a killed run) pays nothing twice
    result = json.loads((tmp_path / "calib" / "calibration.json").read_text())
    found = entry(result, f"{tiny_path.name} / judge-graded-v1", "human_rating")
    assert (
        found["verdicts"]["ok"] + found["verdicts"]["unparseable"] == 10
        and found["n"] == found["verdicts"]["ok"]
    )


def test_bertscore_when_a_model_is_given(tmp_path, monkeypatch):
    from test_text_metrics import make_tiny_bert

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = str(make_tiny_bert(tmp_path / "bert"))
    result, answers = calibration_result(
        FIXTURE, tmp_path / "cache.sqlite", bertscore_model=model, resamples=50
    )
    direct = text_metrics.bertscore_f1(
        [a["answer"] for a in answers], [a["reference"] for a in answers], model=model
    )
    found = entry(result, "bertscore_f1", "human_rating")
    human = [a["human_rating"] for a in answers]
    assert found["pearson"]["value"] == pytest.approx(stats.pearsonr(direct.per_item, human).statistic)
    assert result["metric_settings"]["bertscore_f1"]["model"] == model
    # a model that cannot be loaded: no entry, and the reason said, never a score of 0
    missing = run_calibration(
        FIXTURE, tmp_path / "calib", bertscore_model=str(tmp_path / "none"), resamples=20
    )
    assert not any(e["name"] == "bertscore_f1" for e in missing["metrics"])
    assert "unavailable" in missing["metric_settings"]["bertscore_f1"]["missing"]
    assert "Left out: bertscore_f1: BERTScore model" in (tmp_path / "calib" / "calibration.md").read_text()
