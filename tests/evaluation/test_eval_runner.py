"""``medinjection evaluate`` end to end on the tiny Qwen3: base + DoRA run folders, permutations,
outputs and their schemas, the run-folder copy with the adapter hash, comparisons, reuse."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from test_eval_protocol import authors_scores
from test_eval_tasks import built_records, fmm_rows, write_built_folder
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.core.runs import RunLayout
from medinjection.evaluation import scorers
from medinjection.evaluation.runner import evaluate
from medinjection.evaluation.settings import EvalArguments

COLUMNS = {
    "id", "task", "type", "source", "origin", "gold_issues", "scorer", "permutation", "options", "order", "gold",
    "constrained_text", "constrained", "greedy_text", "greedy", "constrained_letters_text", "constrained_letters",
    "em_constrained", "em_greedy", "em_constrained_letters",
    "hamming_constrained", "hamming_greedy", "hamming_constrained_letters", "n_prompt_tokens",
}  # fmt: skip
SUMMARY_KEYS = {
    "model",
    "adapter",
    "adapter_sha256",
    "task",
    "n_items",
    "metrics",
    "items_sha256",
    "protocol",
}


@pytest.fixture()
def fmm_task(tmp_path):
    folder = tmp_path / "bench"
    folder.mkdir()
    (folder / "dev.json").write_text(json.dumps(fmm_rows(9), ensure_ascii=False))
    path = folder / "fmm-mini.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "fmm-mini", "source": {"adapter": "frenchmedmcqa", "path": "."}, "split": "validation"}
        )
    )
    return path


def invoke(*args):
    result = CliRunner().invoke(app, ["evaluate", *map(str, args)])
    assert result.exit_code == 0, result.output + (repr(result.exception) if result.exception else "")
    return result.output


def test_evaluate_base_and_adapters(tiny_path, dora_runs, fmm_task, tmp_path):
    out = tmp_path / "out"
    common = [
        "--model_name_or_path",
        tiny_path,
        "--tasks",
        fmm_task,
        "--output_dir",
        out,
        "--bootstrap_resamples",
        "200",
    ]
    invoke(*common, "--adapters", dora_runs, "--permutations", "2")

    for tag in ("base", "nat", "nat_trad"):
        table = pq.read_table(out / tag / "fmm-mini" / "predictions.parquet")
        assert COLUMNS <= set(table.column_names)
        rows = table.to_pylist()
        assert len(rows) == 9 * 3 and sorted({r["permutation"] for r in rows}) == [0, 1, 2]
        summary = json.loads((out / tag / "fmm-mini" / "summary.json").read_text())
        assert SUMMARY_KEYS <= set(summary) and summary["n_items"] == 9 and summary["model_tag"] == tag
        assert summary["n_by_type"] == {"MCQ": 3, "MCQU": 6}
        original = [r for r in rows if r["permutation"] == 0]
        for name in (
            "em_constrained",
            "em_greedy",
            "hamming_constrained",
            "em_constrained_perm",
            "em_constrained_robust",
        ):
            entry = summary["metrics"][name]
            assert (
                set(entry) == {"value", "ci95", "n"}
                and entry["ci95"][0] <= entry["value"] <= entry["ci95"][1]
            )
        em = [r["em_constrained"] for r in original]
        assert summary["metrics"]["em_constrained"]["value"] == pytest.approx(sum(em) / len(em))
        hamming = [r["hamming_constrained"] for r in original if r["type"] == "MCQ"]
        assert summary["metrics"]["hamming_constrained"]["n"] == 3
        assert summary["metrics"]["hamming_constrained"]["value"] == pytest.approx(sum(hamming) / 3)
        gold_options = {r["id"]: {r["order"][r["options"].index(g)] for g in r["gold"]} for r in original}
        for r in rows:  # gold re-mapped: the same original options are gold under every order
            assert {r["order"][r["options"].index(g)] for g in r["gold"]} == gold_options[r["id"]]
        assert (out / tag / "aggregate.json").is_file()

    for tag in ("nat", "nat_trad"):
        run = RunLayout(dora_runs / tag)
        in_run = json.loads(run.summary_path("fmm-mini").read_text())
        in_output = json.loads((out / tag / "fmm-mini" / "summary.json").read_text())
        assert in_run == in_output and in_run["adapter_sha256"] == run.adapter_sha256()
        assert in_run["adapter"] == str(run.root.resolve())
        assert set(in_run["vs_base"]) == {
            "em_constrained",
            "em_greedy",
            "hamming_constrained",
            "hamming_greedy",
        }
        assert {"diff", "ci95", "p_value", "p_adjusted", "significant", "verdict"} <= set(
            in_run["vs_base"]["em_constrained"]
        )
    base = json.loads((out / "base" / "fmm-mini" / "summary.json").read_text())
    assert base["adapter"] is None and base["adapter_sha256"] is None and "vs_base" not in base

    comparisons = json.loads((out / "comparisons.json").read_text())
    vs_base = comparisons["families"]["vs_base"]
    assert {(r["model"], r["task"]) for r in vs_base} >= {
        ("nat", "fmm-mini"),
        ("nat_trad", "_aggregate_macro"),
        ("nat", "_aggregate_halves"),  # the 0.5 MCQ + 0.5 MCQU aggregate, exact match only
    }
    assert {r["metric"] for r in vs_base if r["task"] == "_aggregate_halves"} == {
        "em_constrained",
        "em_greedy",
    }
    assert {(r["model"], r["baseline"]) for r in comparisons["families"]["pairwise"]} == {("nat", "nat_trad")}
    assert all(r["p_adjusted"] >= r["p_value"] for r in vs_base)

    # the same command again: everything reused, nothing rewritten
    stamp = (out / "nat" / "fmm-mini" / "predictions.parquet").stat().st_mtime_ns
    output = invoke(*common, "--adapters", dora_runs, "--permutations", "2")
    assert output.count("reused") == 3
    assert (out / "nat" / "fmm-mini" / "predictions.parquet").stat().st_mtime_ns == stamp
    # another protocol setting is another scoring
    output = invoke(*common, "--no_base", "--adapters", dora_runs / "nat", "--permutations", "1")
    assert "reused" not in output
    assert len(pq.read_table(out / "nat" / "fmm-mini" / "predictions.parquet")) == 9 * 2


def test_reference_engine_gives_the_same_predictions(tiny_path, fmm_task, tmp_path):
    common = ["--model_name_or_path", tiny_path, "--tasks", fmm_task, "--bootstrap_resamples", "100"]
    invoke(*common, "--output_dir", tmp_path / "batched", "--batch_size", "4")
    invoke(*common, "--output_dir", tmp_path / "reference", "--engine", "reference")
    keep = [
        "id",
        "constrained_text",
        "greedy_text",
        "constrained_letters_text",
        "em_constrained",
        "em_greedy",
    ]
    batched = pq.read_table(tmp_path / "batched/base/fmm-mini/predictions.parquet").select(keep).to_pylist()
    reference = (
        pq.read_table(tmp_path / "reference/base/fmm-mini/predictions.parquet").select(keep).to_pylist()
    )
    assert batched == reference


def test_every_item_is_scored_as_the_authors(tiny_path, tmp_path):
    """16.6: items whose gold is not among the options, or empty, are scored (as the authors' Eval.py
    scores every item of a file), counted by kind, and stay in the denominator; the authors' per-item
    loop (engine: reference) gives the same rows."""
    rows = fmm_rows(8)
    rows[2] |= {"correct_answers": ["f"], "nbr_correct_answers": 1, "type": "simple"}  # no option F
    rows[5] |= {"correct_answers": [], "nbr_correct_answers": 0, "type": "simple"}  # no gold at all
    (tmp_path / "dev.json").write_text(json.dumps(rows, ensure_ascii=False))
    task = tmp_path / "fmm-odd.yaml"
    task.write_text(
        yaml.safe_dump(
            {"name": "fmm-odd", "source": {"adapter": "frenchmedmcqa", "path": "."}, "split": "validation"}
        )
    )
    common = ["--model_name_or_path", tiny_path, "--tasks", task, "--bootstrap_resamples", "50"]
    output = invoke(*common, "--output_dir", tmp_path / "batched", "--permutations", "1")
    assert "1 item(s) gold_outside_options, 1 item(s) empty_gold" in output
    invoke(*common, "--output_dir", tmp_path / "reference", "--permutations", "1", "--engine", "reference")
    folder = tmp_path / "batched" / "base" / "fmm-odd"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_items"] == 8 and summary["n_rejected"] == 0
    assert summary["gold_issues"] == {
        "gold_outside_options": 1,
        "empty_gold": 1,
        "answer_disagrees_with_correct_letters": 0,
        "several_gold_single_answer": 0,
    }
    scored = pq.read_table(folder / "predictions.parquet").to_pylist()
    original = [r for r in scored if r["permutation"] == 0]
    assert len(original) == 8
    odd = [r for r in scored if r["gold_issues"] == "gold_outside_options"]
    assert len(odd) == 2 and all(
        r["gold"] == ["F"] and r["em_constrained"] == 0.0 for r in odd
    )  # both orders
    empty = [r for r in scored if r["gold_issues"] == "empty_gold"]
    assert len(empty) == 2 and all(r["gold"] == [] for r in empty)
    for row in scored:  # the authors' EM and Hamming of every prediction, from its gold
        answer = ", ".join(row["gold"])
        for name in ("constrained", "greedy"):
            em, hamming = authors_scores(answer, row[name], row["type"] == "MCQ")
            assert row[f"em_{name}"] == em and row[f"hamming_{name}"] == hamming, row
    em = [r["em_constrained"] for r in original]
    assert summary["metrics"]["em_constrained"]["value"] == pytest.approx(sum(em) / 8)  # the whole file
    keep = ["id", "permutation", "gold", "constrained_text", "greedy_text", "em_constrained", "em_greedy"]
    reference = (
        pq.read_table(tmp_path / "reference/base/fmm-odd/predictions.parquet").select(keep).to_pylist()
    )
    assert pq.read_table(folder / "predictions.parquet").select(keep).to_pylist() == reference

    # resummarize (after `medinjection judge` adds columns) recomputes the groups and the counts
    from medinjection.evaluation.scoring import resummarize

    flipped = [{**r, "em_constrained": 1.0 - r["em_constrained"]} for r in scored]
    pq.write_table(pa.Table.from_pylist(flipped), folder / "predictions.parquet")
    doc = resummarize(folder)
    for group in doc["groups"]:
        mine = [
            r
            for r in flipped
            if r["permutation"] == 0 and (r["origin"], r["type"]) == (group["origin"], group["type"])
        ]
        assert group["metrics"]["em_constrained"]["value"] == pytest.approx(
            sum(r["em_constrained"] for r in mine) / len(mine)
        )
    assert [g["origin"] for g in doc["groups"]] == ["FrenchMedMCQA", "FrenchMedMCQA"]
    assert doc["gold_issues"] == summary["gold_issues"]


def test_unknown_task_and_the_list(tiny_path, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model_name_or_path",
            str(tiny_path),
            "--tasks",
            "medqa-fr",
            "--output_dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1
    assert "unknown task 'medqa-fr'" in result.output and "'frenchmedmcqa'" in result.output
    listed = CliRunner().invoke(app, ["tasks"])
    assert listed.exit_code == 0, listed.output
    assert "frenchmedmcqa" in listed.output and "pubmedqa" in listed.output and "native-test" in listed.output


def test_types_without_a_scorer_are_counted_not_scored(tiny_path, tmp_path, monkeypatch):
    monkeypatch.setitem(scorers.SCORERS, "oeq", "medinjection.evaluation.no_such_scorer:SCORER")
    write_built_folder(tmp_path / "ds", {"test": built_records(4, 2)})
    logs = []
    evaluate(
        EvalArguments(
            model_name_or_path=str(tiny_path),
            dataset_name=str(tmp_path / "ds"),
            dataset_config="native",
            output_dir=str(tmp_path / "out"),
            bootstrap_resamples=100,
        ),
        log=logs.append,
    )
    summary = json.loads((tmp_path / "out/base/native-test/summary.json").read_text())
    assert summary["n_items"] == 4 and summary["skipped_types"]["OEQ"]["n"] == 2
    assert "no_such_scorer" in summary["skipped_types"]["OEQ"]["reason"]
    assert any("2 OEQ item(s) not scored" in line for line in logs)
    assert len(pq.read_table(tmp_path / "out/base/native-test/predictions.parquet")) == 4


def test_vllm_backend_says_how_to_get_it(tiny_path, fmm_task, tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:  # pragma: no cover - a machine with vLLM
        return
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model_name_or_path",
            str(tiny_path),
            "--tasks",
            str(fmm_task),
            "--output_dir",
            str(tmp_path),
            "--backend",
            "vllm",
        ],
    )
    assert result.exit_code == 1 and "pip install vllm" in result.output


@pytest.mark.slow
def test_data_parallel_with_accelerate_launch(tiny_path, fmm_task, tmp_path):
    """Two CPU processes, each a shard of the items: the same predictions as one process."""
    common = [
        "--model_name_or_path",
        str(tiny_path),
        "--tasks",
        str(fmm_task),
        "--bootstrap_resamples",
        "100",
        "--permutations",
        "1",
    ]
    invoke(*common, "--output_dir", tmp_path / "one")
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        # --multi_gpu picks accelerate's torchrun launcher (its --cpu launcher needs mpirun); without
        # CUDA the runner joins the two processes over gloo on the CPU.
        [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "medinjection.recipes.evaluate", *common, "--output_dir", str(tmp_path / "two")],
        check=True, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    one = (
        pq.read_table(tmp_path / "one/base/fmm-mini/predictions.parquet")
        .drop(["n_prompt_tokens"])
        .to_pylist()
    )
    two = (
        pq.read_table(tmp_path / "two/base/fmm-mini/predictions.parquet")
        .drop(["n_prompt_tokens"])
        .to_pylist()
    )
    assert one == two
    assert json.loads((tmp_path / "two/base/fmm-mini/summary.json").read_text())["backend"]["world_size"] == 2


def test_summary_names_the_base_and_versions_and_one_item_has_no_interval(tiny_path, fmm_task, tmp_path):
    """The summary says which Hub model (and commit) was scored, in the training manifest's terms."""
    from medinjection.models.tiny import TINY_HUB_ID

    logs = []
    evaluate(
        EvalArguments(
            model_name_or_path=str(tiny_path),
            tasks=[str(fmm_task)],
            output_dir=str(tmp_path / "out"),
            bootstrap_resamples=50,
            limit=1,
        ),
        log=logs.append,
    )
    summary = json.loads((tmp_path / "out/base/fmm-mini/summary.json").read_text())
    assert summary["model_hub_id"] == TINY_HUB_ID and summary["model_revision"] is None
    assert summary["model_identity_source"].startswith("marker")
    for name in (
        "trl",
        "datasets",
        "transformers",
        "peft",
        "sacrebleu",
        "rouge_score",
        "nltk",
        "bert_score",
        "scipy",
    ):
        assert summary["versions"].get(name), name
    assert summary["n_items"] == 1 and summary["metrics"]["em_constrained"]["ci95"] == [None, None]
    assert any(line.endswith("[n/a]") and "em_constrained" in line for line in logs), logs


def test_base_identity_of_hub_ids_snapshots_and_bare_folders(tiny_path, tmp_path):
    """Offline, against a Hub cache laid out as huggingface_hub writes it (no download)."""
    sha = "cdbee75f17c01a7cc42f958dc650907174af0554"
    repo = tmp_path / "hub" / "models--Qwen--Qwen3-4B-Instruct-2507"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True)
    (repo / "snapshots" / sha / "config.json").write_text("{}")
    (tmp_path / "bare").mkdir()
    script = (
        "import json, sys\n"
        "from medinjection.models.identity import base_identity\n"
        "print(json.dumps([base_identity(m, r) for m, r in json.loads(sys.argv[1])]))\n"
    )
    cases = [
        ["Qwen/Qwen3-4B-Instruct-2507", "main"],  # a branch: the commit it resolves to
        ["Qwen/Qwen3-4B-Instruct-2507", None],
        ["Qwen/Other-Model", "v1.0"],  # not in the cache: the revision as given
        [str(repo / "snapshots" / sha), None],
        [str(tmp_path / "bare"), "main"],
        [str(tiny_path), None],
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cases)], env=env, capture_output=True, text=True, check=True
    )
    found = [(i["hub_id"], i["revision"]) for i in json.loads(out.stdout.splitlines()[-1])]
    assert found == [
        ("Qwen/Qwen3-4B-Instruct-2507", sha),
        ("Qwen/Qwen3-4B-Instruct-2507", sha),
        ("Qwen/Other-Model", "v1.0"),
        ("Qwen/Qwen3-4B-Instruct-2507", sha),
        (None, None),
        ("medinjection/tiny-random-qwen3", None),
    ]


def test_merged_scoring_is_checked_through_evaluate(tiny_path, dora_runs, fmm_task, tmp_path):
    from medinjection.evaluation.models import ModelLoadError

    common = dict(
        model_name_or_path=str(tiny_path),
        adapters=[str(dora_runs / "nat")],
        base=False,
        tasks=[str(fmm_task)],
        bootstrap_resamples=50,
        merge=True,
    )
    quiet = dict(log=lambda line: None)
    evaluate(EvalArguments(**common, output_dir=str(tmp_path / "merged"), merge_check_items=4), **quiet)
    backend = json.loads((tmp_path / "merged/nat/fmm-mini/summary.json").read_text())["backend"]
    assert backend["merged"] and backend["merge_check"]["mc_items"] == 4
    assert backend["merge_check"]["compared"] == "decoded predictions (all tokens)"
    unmerged = tmp_path / "unmerged"
    evaluate(EvalArguments(**{**common, "merge": False}, output_dir=str(unmerged)), **quiet)
    keep = ["id", "constrained_text", "greedy_text", "constrained_letters_text"]
    assert (
        pq.read_table(tmp_path / "merged/nat/fmm-mini/predictions.parquet").select(keep).to_pylist()
        == pq.read_table(unmerged / "nat/fmm-mini/predictions.parquet").select(keep).to_pylist()
    )
    with pytest.raises(ModelLoadError, match="merge check has no item"):
        evaluate(EvalArguments(**common, output_dir=str(tmp_path / "none"), merge_check_items=0), **quiet)


def test_corrupt_files_are_named(tiny_path, dora_runs, fmm_task, tmp_path):
    import shutil

    from medinjection.core.outputs import OutputError, read_json, read_predictions
    from medinjection.evaluation.compare import update_comparisons
    from medinjection.evaluation.items import ItemError, dataset_chat_version
    from medinjection.evaluation.models import ModelLoadError, adapter_info
    from medinjection.evaluation.tasks import TaskError, load_task

    out = tmp_path / "out"
    common = [
        "--model_name_or_path",
        tiny_path,
        "--tasks",
        fmm_task,
        "--output_dir",
        out,
        "--bootstrap_resamples",
        "50",
    ]
    invoke(*common)
    summary = out / "base" / "fmm-mini" / "summary.json"
    summary.write_text('{"model": ')
    with pytest.raises(OutputError, match=re.escape(f"{summary}: not valid JSON")):
        read_json(summary)
    with pytest.raises(OutputError, match=re.escape(str(summary))):
        update_comparisons(out)
    result = CliRunner().invoke(app, ["evaluate", *map(str, common)])
    assert result.exit_code == 1 and f"{summary}: not valid JSON" in result.output
    assert "--overwrite" in result.output and "Traceback" not in result.output
    invoke(*common, "--overwrite")  # rescoring replaces the broken file
    predictions = out / "base" / "fmm-mini" / "predictions.parquet"
    predictions.write_bytes(b"PAR1 not parquet")
    with pytest.raises(OutputError, match=re.escape(f"{predictions}: not a readable Parquet file")):
        read_predictions(predictions)

    run = tmp_path / "run"
    shutil.copytree(dora_runs / "nat", run)
    (run / "adapter_config.json").write_text("{")
    with pytest.raises(ModelLoadError, match=re.escape(f"{run / 'adapter_config.json'}: not valid JSON")):
        adapter_info(run)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "mixes.json").write_text("[1, 2")
    with pytest.raises(ItemError, match=re.escape(f"{tmp_path / 'ds' / 'mixes.json'}: not valid JSON")):
        dataset_chat_version(tmp_path / "ds")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(TaskError, match=re.escape(f"{bad}: not valid YAML")):
        load_task(str(bad))
