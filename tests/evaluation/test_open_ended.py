"""Open-ended questions in ``medinjection evaluate``: batched greedy answers, their metrics, the judge,
and the report and ``medinjection judge`` on the outputs of a real run on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from judge_server import JudgeServer
from test_eval_report import tables
from test_text_metrics import make_tiny_bert
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.evaluation.items import EvalItem
from medinjection.evaluation.judge import judge_prompt
from medinjection.evaluation.open_ended import (
    SCORER,
    OEQOptions,
    score,
    scorer_options,
    summarize,
)
from medinjection.evaluation.scorers import ScoringContext, load_scorer

SAMPLES = Path(__file__).resolve().parents[2] / "dataset_builders" / "samples" / "native" / "mediqal"
SYSTEM = {"role": "system", "content": "Tu es un assistant médical expert."}


@pytest.fixture(scope="module")
def engine(tiny_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medinjection.evaluation.engine import Engine

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    return Engine(AutoModelForCausalLM.from_pretrained(tiny_path), tokenizer, batch_size=3)


def oeq_item(i: int, question: str) -> EvalItem:
    return EvalItem(
        id=f"oeq-{i}",
        type="OEQ",
        source="mediqal",
        messages=(SYSTEM, {"role": "user", "content": f"Question : {question}"}),
        reference="Une antibiothérapie probabiliste par amoxicilline.",
    )


QUESTIONS = [
    "Quel est le traitement de la pneumonie ?",
    "Quelle est la prise en charge d'une fièvre chez l'enfant de deux ans avec une otite ?",
    "Que faire ?",
    "Quel examen demander devant une douleur thoracique ?",
]
PER_ITEM_METRICS = (
    "bleu_sentence",
    "rouge2",
    "meteor",
    "bertscore_f1",
    "judge_binary",
    "judge_graded",
)


def test_scorer_is_registered():
    assert load_scorer("oeq") is SCORER
    assert SCORER.types == frozenset({"OEQ"}) and "judge_binary" in SCORER.binary_metrics
    assert SCORER.tested_metrics == PER_ITEM_METRICS


def test_batched_answers_equal_per_item_generate(engine):
    import torch

    from medinjection.evaluation.engine import pinned_generation_config

    items = [oeq_item(i, q) for i, q in enumerate(QUESTIONS)]
    options = {"max_new_tokens": 20, "bertscore_model": None}
    rows = score(ScoringContext(engine, None, None, options), items)
    config = pinned_generation_config(engine.tokenizer, max_new_tokens=20)
    for item, row in zip(items, rows, strict=True):
        ids = torch.tensor([engine.encode(item.messages)])
        with torch.no_grad():
            out = engine.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config
            )
        new = out[0, ids.shape[1] :].tolist()
        finished = new[-1] == engine.stop_id
        assert row["answer_text"] == engine.tokenizer.decode(new, skip_special_tokens=True).strip()
        assert row["answer_tokens"] == len(new) - finished and row["finished"] == finished
        assert row["answer_tokens"] <= 20 and (row["finished"] or row["answer_tokens"] == 20)
        assert row["question"] == item.messages[1]["content"] and row["reference"] == item.reference
        assert row["bertscore_f1"] is None and row["bertscore_missing"].startswith("no BERTScore model")
        assert row["judge_binary"] is None and row["judge_binary_status"] is None  # not judged
    metrics = summarize(rows)
    assert metrics["bertscore_f1"] == {
        "value": None,
        "ci95": None,
        "n": 0,
        "missing": "no BERTScore model given (bertscore_model; the paper recipe names bert-base-multilingual-cased)",
    }
    assert metrics["bleu"]["n"] == 4 and metrics["bleu"]["signature"].startswith("nrefs:1|case:mixed|eff:no")
    assert metrics["meteor"]["value"] == pytest.approx(sum(r["meteor"] for r in rows) / 4)
    assert "judge_binary" not in metrics  # not judged: no entry, never 0


def test_options_travel_as_json(tmp_path):
    options = scorer_options(
        tmp_path, judge="judge-model", judge_base_url="http://127.0.0.1:1/v1", bertscore_model="none"
    )
    assert json.loads(json.dumps(options)) == options
    assert options["bertscore_model"] is None and options["judge"]["cache"] == str(
        tmp_path / "judge-cache.sqlite"
    )
    parsed = OEQOptions.of(options)
    assert parsed.judge.backend.model == "judge-model" and parsed.judge.prompts == (
        "binary-lenient-v1",
        "graded-v1",
    )
    with pytest.raises(ValueError, match=r"unknown OEQ options \['bertscore'\]"):
        OEQOptions.of({"bertscore": "x"})
    with pytest.raises(ValueError, match="unknown judge prompt version 'binary-v7'"):
        scorer_options(tmp_path, judge="m", judge_prompts=["binary-v7"])


def test_an_edited_prompt_file_gives_another_fingerprint(tmp_path):
    """The evaluation's options (part of the reuse fingerprint) carry each prompt's hash: a prompt file
    edited between two runs is judged again, not reused."""
    from test_judge import OWN_PROMPT, own_prompt

    from medinjection.dataset_builders.generation.prompts import load_prompt

    path = own_prompt(tmp_path)
    first = scorer_options(tmp_path, judge="m", judge_prompts=[path])
    own_prompt(tmp_path, text=OWN_PROMPT.replace("Second line", "2nd line"))
    judge_prompt.cache_clear()  # a new process reads the file again
    load_prompt.cache_clear()
    second = scorer_options(tmp_path, judge="m", judge_prompts=[path])
    assert first["judge"]["prompts"] == second["judge"]["prompts"] == [path]
    assert first["judge"]["prompts_sha256"] != second["judge"]["prompts_sha256"]
    assert second["judge"]["prompts_sha256"] == [judge_prompt(path).sha256]


# --- a real run: evaluate -> judge -> report ---------------------------------------------------------


@pytest.fixture(scope="module")
def run(tiny_path, tmp_path_factory):
    """``evaluate`` the tiny model and a random DoRA adapter on the demo's MediQAl-shaped items, with
    BERTScore on a tiny local BERT and the judge answered by the fault server."""
    from eval_fixtures import make_dora_run

    from medinjection.evaluation.runner import evaluate
    from medinjection.evaluation.settings import EvalArguments

    tiny = tiny_path
    root = tmp_path_factory.mktemp("run")
    (root / "runs" / "nat").mkdir(parents=True)
    make_dora_run(tiny, root / "runs" / "nat", seed=1)
    bench = root / "demo-mediqal.yaml"
    bench.write_text(
        "name: demo-mediqal\nsource: {adapter: mediqal, path: "
        + str(SAMPLES)
        + "}\nsplit: all\ntypes: [MCQ, MCQU, OEQ]\n"
    )
    bert = make_tiny_bert(root / "bert")
    out = root / "eval-out"
    with JudgeServer() as server:
        evaluate(
            EvalArguments(
                model_name_or_path=str(tiny),
                adapters=[str(root / "runs")],
                tasks=[str(bench)],
                output_dir=str(out),
                permutations=1,
                bootstrap_resamples=200,
                oeq_max_new_tokens=16,
                bertscore_model=str(bert),
                judge="judge-model",
                judge_base_url=server.url,
                judge_concurrency=4,
            ),
            log=lambda _: None,
        )
        requests = sum(server.requests.values())
    return {"root": root, "out": out, "tiny": tiny, "requests": requests}


def read(out: Path, tag: str) -> tuple[dict, list[dict]]:
    folder = out / tag / "demo-mediqal"
    summary = json.loads((folder / "summary.json").read_text())
    rows = pq.read_table(folder / "predictions.parquet").to_pylist()
    return summary, [r for r in rows if r["type"] == "OEQ"]


@pytest.mark.slow
def test_evaluate_scores_open_ended_items(run):
    for tag in ("base", "nat"):
        summary, rows = read(run["out"], tag)
        assert len(rows) == 30 and summary["n_by_type"]["OEQ"] == 30
        assert "OEQ" not in summary.get("skipped_types", {})
        metrics = summary["metrics"]
        for name in ("bleu", *PER_ITEM_METRICS):
            assert metrics[name]["value"] is not None, name
        assert metrics["bertscore_f1"]["n"] == 30 and all(
            0 < r["bertscore_f1"] <= 1 for r in rows if r["answer_text"]
        )
        assert metrics["bertscore_f1"]["settings"].startswith(str(run["root"] / "bert") + "_L2_")
        # random answers never equal the reference: the fault server says 0 / 2 to every one
        assert metrics["judge_binary"]["value"] == 0.0 and metrics["judge_binary"]["n"] == 30
        assert metrics["judge_graded"]["value"] == 2.0 and metrics["judge_binary"]["n_unparseable"] == 0
        assert metrics["rouge2"]["value"] == pytest.approx(sum(r["rouge2"] for r in rows) / 30)
        # every verdict, summary entry and the summary's judge say which prompt, by version and hash
        for name, metric in (("binary-lenient-v1", "judge_binary"), ("graded-v1", "judge_graded")):
            prompt = judge_prompt(name)
            assert {(r[f"{metric}_prompt"], r[f"{metric}_prompt_sha256"]) for r in rows} == {
                (prompt.version, prompt.sha256)
            }
            assert (metrics[metric]["prompt_version"], metrics[metric]["prompt_sha256"]) == (
                prompt.version,
                prompt.sha256,
            )
    assert run["requests"] == 2 * 30 * 2  # two models x 30 answers x two prompts, each asked once
    # the adapter's OEQ metrics are compared with the base model's, in the evaluation's own family
    comparisons = json.loads((run["out"] / "comparisons.json").read_text())["families"]["vs_base"]
    assert {r["metric"] for r in comparisons if r["task"] == "demo-mediqal"} >= {
        "rouge2",
        "meteor",
        "bertscore_f1",
        "judge_binary",
        "judge_graded",
    }
    judge_row = next(r for r in comparisons if r["metric"] == "judge_binary" and r["task"] == "demo-mediqal")
    assert judge_row["test"] == "mcnemar"


@pytest.mark.slow
def test_judge_command_and_report_on_the_run(run, tmp_path):
    out = run["out"]
    # judge again with the tiny model in process, graded prompt only: its random verdicts mostly do not parse
    result = CliRunner().invoke(
        app,
        [
            "judge",
            str(out / "nat" / "demo-mediqal" / "predictions.parquet"),
            "--judge-model",
            str(run["tiny"]),
            "--judge-backend",
            "transformers",
            "--prompt",
            "graded-v1",
            "--cache",
            str(tmp_path / "tiny-judge.sqlite"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "nat / demo-mediqal: 30 answers; judge_binary: 30 verdicts, 0 unparseable, 0 failed; judge_graded: "
        in result.output
    )
    summary, rows = read(out, "nat")
    entry = summary["metrics"]["judge_graded"]
    statuses = [r["judge_graded_status"] for r in rows]
    assert entry["n"] == statuses.count("ok") and entry["n_unparseable"] == statuses.count("unparseable")
    assert entry["n_judged"] == 30 and entry["judge_model"] == str(run["tiny"])
    assert summary["judge"]["prompts"] == {"judge_graded": "judge-graded-v1"}
    assert (
        summary["metrics"]["judge_binary"]["judge_model"] == "judge-model"
    )  # the other prompt's verdicts stay
    import hashlib

    folder = out / "nat" / "demo-mediqal"
    assert (
        summary["predictions_sha256"]
        == hashlib.sha256((folder / "predictions.parquet").read_bytes()).hexdigest()
    )
    run_copy = json.loads(
        (run["root"] / "runs" / "nat" / "eval" / "demo-mediqal" / "summary.json").read_text()
    )
    assert run_copy["metrics"]["judge_graded"] == entry

    report_dir = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(out), "--output", str(report_dir), "--resamples", "200"])
    assert result.exit_code == 0, result.output
    markdown = (report_dir / "report.md").read_text()
    oeq = markdown[markdown.index("## Open-ended answers") :]
    row = next(r for r in tables(oeq)["demo-mediqal"] if r["model"] == "NAT")
    metrics = summary["metrics"]
    for column, name, scale in (
        ("BLEU", "bleu", 1),
        ("BLEU (sent.)", "bleu_sentence", 1),
        ("ROUGE-2", "rouge2", 100),
        ("METEOR", "meteor", 100),
        ("BERTScore-F1", "bertscore_f1", 100),
        ("Judge 0/1", "judge_binary", 100),
        ("Judge 1-5", "judge_graded", 1),
    ):
        if metrics[name]["value"] is None:  # e.g. the tiny judge's grades: none parses
            assert row[column] == "missing" and metrics[name]["n"] == 0, name
        else:
            assert row[column].startswith(f"{scale * metrics[name]['value']:.2f} ["), (name, row[column])
    again = tmp_path / "again"
    CliRunner().invoke(app, ["report", str(out), "--output", str(again), "--resamples", "200"])
    for path in sorted(report_dir.iterdir()):
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.slow
def test_the_judge_command_with_a_prompt_file_of_ones_own(run, tmp_path):
    """`medinjection judge --prompt FILE` (e.g. the authors' own text put in the bundled format):
    the verdicts, the summaries and the report record the file's version and hash."""
    import shutil

    from test_judge import own_prompt

    out = tmp_path / "eval-out"
    shutil.copytree(run["out"], out, ignore=shutil.ignore_patterns("*.sqlite*"))
    path = own_prompt(tmp_path)
    prompt = judge_prompt(path)
    with JudgeServer() as server:
        result = CliRunner().invoke(
            app,
            ["judge", str(out), "--judge-model", "judge-model", "--base-url", server.url, "--prompt", path],
        )
        systems = {m[0]["content"] for m in server.seen}
    assert result.exit_code == 0, result.output
    assert systems == {prompt_text_of(path)}
    for tag in ("base", "nat"):
        summary, rows = read(out, tag)
        assert {(r["judge_binary_prompt"], r["judge_binary_prompt_sha256"]) for r in rows} == {
            ("own-binary-v1", prompt.sha256)
        }
        entry = summary["metrics"]["judge_binary"]
        assert (entry["prompt_version"], entry["prompt_sha256"]) == ("own-binary-v1", prompt.sha256)
        assert summary["judge"]["prompts_sha256"] == {"judge_binary": prompt.sha256}
        # the graded verdicts of the evaluation stay, with their own prompt
        assert summary["metrics"]["judge_graded"]["prompt_sha256"] == judge_prompt("graded-v1").sha256
    report = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(out), "--output", str(report), "--resamples", "50"])
    assert result.exit_code == 0, result.output
    assert (
        f"NAT, judge_binary: judge `judge-model`, prompt `own-binary-v1` (sha256 {prompt.sha256[:12]}): "
        in (report / "report.md").read_text()
    )


def prompt_text_of(path: str) -> str:
    import yaml

    return yaml.safe_load(Path(path).read_text())["system"]


def test_corpus_bleu_difference_on_few_items_is_not_significant():
    """Three segments allow 2**3 swaps of the two systems: the approximate randomization p-value of a
    corpus BLEU difference cannot fall below 1/4, whatever the bootstrap interval says."""
    from medinjection.evaluation.open_ended import paired_corpus_bleu

    refs = [
        "la fièvre est due à une infection",
        "le traitement repose sur les antibiotiques",
        "une radio du thorax",
    ]

    def rows(answers, references=refs):
        return [
            {"id": f"q{i}", "type": "OEQ", "permutation": 0, "answer_text": a, "reference": r}
            for i, (a, r) in enumerate(zip(answers, references, strict=True))
        ]

    good = rows(refs)
    bad = rows(["rien", "aucun", "non"])
    result = paired_corpus_bleu(good, bad, resamples=200, seed=0)
    assert result["diff"] > 50 and result["n"] == 3
    assert result["p_value"] == pytest.approx(0.25)  # exact: 2 of the 8 swap patterns
    many_refs = refs * 8
    good_many = rows(many_refs, many_refs)
    bad_many = [{**row, "answer_text": "rien du tout"} for row in good_many]
    assert paired_corpus_bleu(good_many, bad_many, resamples=200, seed=0)["p_value"] < 0.01


def test_resummarized_intervals_use_the_runs_bootstrap_settings():
    """After `medinjection judge`, summaries are recomputed without EvalArguments: the bootstrap settings
    recorded in the summary reach the open-ended scorer through the scoring context."""
    from medinjection.evaluation.open_ended import _bootstrap_options

    recorded = {"resamples": 17, "method": "percentile", "seed": 3, "confidence": 0.9}
    context = ScoringContext(None, None, None, {}, bootstrap=recorded)
    assert _bootstrap_options(context) == {"resamples": 17, "seed": 3, "confidence": 0.9}
