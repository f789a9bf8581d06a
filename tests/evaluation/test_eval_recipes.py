"""Evaluation as recipes (issue 18): one dataclass of settings read by TRL's parser from a flat YAML,
command-line overrides, unknown keys refused; the bundled recipes; ``medinjection evaluate --config``
end to end on a demo-like folder; and the issue-17 fixes of the evaluation (17.3, 17.4, 17.6, 17.10,
17.13)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.evaluation.judge import judge_prompt
from medinjection.evaluation.settings import (
    EvalArguments,
    EvaluationError,
    known_recipes,
    parse_args,
    recipe_path,
    settings_from,
)

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "recipes" / "evaluation" / "tiny.yaml"
PAPER_RECIPE = REPO / "recipes" / "evaluation" / "qwen3-4b-instruct-2507.yaml"
TASKS = ("native-test", "translated-test", "synthetic-test")


def invoke(*args, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["evaluate", *map(str, args)])
    assert result.exit_code == code, result.output + (repr(result.exception) if result.exception else "")
    return result.output


# ---- the settings: one dataclass, TRL's parser -----------------------------------------------------


def test_every_setting_has_help_and_the_command_is_a_shell():
    for field in dataclasses.fields(EvalArguments):
        assert field.metadata.get("help"), f"{field.name}: no help text"
    from medinjection.evaluation.cli import evaluate_command

    # the typer command lists no option of its own: everything goes to the parser
    assert list(inspect.signature(evaluate_command).parameters) == ["ctx"]
    shown = CliRunner().invoke(app, ["evaluate", "--help"]).output
    for field in dataclasses.fields(EvalArguments):
        assert f"--{field.name}" in shown, field.name
    assert "tiny" in shown and "qwen3-4b-instruct-2507" in shown  # the bundled recipes


def test_the_file_sets_the_command_line_overrides_and_unknown_keys_fail(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(
        "model_name_or_path: tiny-qwen3\ntasks: [native-test]\npermutations: 2\nadapters: [runs]\n"
    )
    args = parse_args(["--config", str(recipe), "--permutations", "3", "--no_base"])
    assert args.model_name_or_path == "tiny-qwen3" and args.tasks == ["native-test"]
    assert args.permutations == 3 and args.base is False and args.adapters == ["runs"]
    assert args.oeq_max_new_tokens == 512 and args.bertscore_model is None  # the defaults

    recipe.write_text("model_name_or_path: tiny-qwen3\nbenchmark: native-test\n")
    with pytest.raises(
        ValueError, match=r"mine.yaml: unknown key\(s\) \['benchmark'\]; allowed: \[.*'tasks'"
    ):
        parse_args(["--config", str(recipe)])
    with pytest.raises(ValueError, match=r"not used by the HfArgumentParser: \['--benchmark', 'x'\]"):
        parse_args(["--model_name_or_path", "m", "--benchmark", "x"])
    for line, message in (
        ("permutations: -1", "permutations must be 0 or more"),
        ("backend: tf", "backend 'tf': expected one of"),
        ("engine: reference\nbackend: vllm", "engine reference runs transformers"),
        ("dataset_name: medinjection-fr", "dataset_name needs dataset_config"),
        ("alpha: 2", "alpha must be between 0 and 1"),
    ):
        recipe.write_text(f"model_name_or_path: m\n{line}\n")
        with pytest.raises(ValueError, match=message):
            parse_args(["--config", str(recipe)])
    # the command and the recipe script refuse the same way, naming the key
    recipe.write_text("model_name_or_path: m\ntasks: [native-test]\n")
    output = invoke("--config", recipe, "--bogus_key", "1", code=2)
    assert "--bogus_key" in output and "allowed" in output
    script = subprocess.run(
        [sys.executable, "-m", "medinjection.recipes.evaluate", "--config", str(recipe), "--bogus_key", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 2 and "--bogus_key" in script.stderr and "Traceback" not in script.stderr


def test_bundled_recipes(tmp_path, monkeypatch):
    assert set(known_recipes()) >= {"tiny", "qwen3-4b-instruct-2507"}
    assert recipe_path("tiny").read_bytes() == TINY_RECIPE.read_bytes()  # by name, from the package
    monkeypatch.chdir(tmp_path)  # the README's path works from any folder (a pip install has no recipes/)
    assert recipe_path("recipes/evaluation/tiny.yaml").read_bytes() == TINY_RECIPE.read_bytes()
    with pytest.raises(ValueError, match=r"nope.yaml: no such recipe file; bundled recipes: \['"):
        recipe_path("nope.yaml")

    paper = parse_args(["--config", str(PAPER_RECIPE)])
    training = {
        yaml.safe_load(path.read_text())["model_revision"]
        for path in (REPO / "trl_configs" / "qwen3-4b-instruct-2507").glob("*.yaml")
    }
    assert training == {paper.model_revision}  # scored on the revision the adapters were trained on
    assert paper.model_name_or_path == "Qwen/Qwen3-4B-Instruct-2507"
    assert paper.adapters == ["runs/qwen3-4b-instruct-2507"] and paper.base
    assert paper.tasks == ["native-test", "translated-test"]
    assert paper.oeq_max_new_tokens == 512 and paper.bertscore_model == "bert-base-multilingual-cased"
    # the paper recipe names its judge prompts: the authors' criterion in our words, and our graded one
    assert paper.judge_prompts == ["binary-lenient-v1", "graded-v1"]
    assert [judge_prompt(p).version for p in paper.judge_prompts] == [
        "judge-binary-lenient-v1",
        "judge-graded-v1",
    ]

    tiny = parse_args(["--config", "tiny"])
    assert tiny.oeq_max_new_tokens < 512 and tiny.bertscore_model is None  # 17.13; offline, no Hub model
    for key in ("permutations", "seed", "letters_only", "engine", "backend", "bootstrap_resamples", "alpha"):
        assert getattr(tiny, key) == getattr(paper, key), key  # the same protocol on the demo
    assert tiny.tasks == list(TASKS)

    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"medinjection.recipes" = ["evaluation/*.yaml"]' in pyproject
    assert '"medinjection.evaluation.tasks" = ["*.yaml"]' in pyproject


def test_tasks_live_in_the_evaluation_package_not_in_trl_configs():
    from medinjection.evaluation.tasks import bundled_dir, known_tasks

    assert bundled_dir() == REPO / "medinjection" / "evaluation" / "tasks"
    assert not (REPO / "trl_configs" / "benchmarks").exists()
    for path in (REPO / "trl_configs").rglob("*.yaml"):
        assert yaml.safe_load(path.read_text()).get("name") not in known_tasks(), path


def test_the_demo_evaluates_through_the_tiny_recipe(tmp_path):
    from medinjection.demo import evaluation_settings

    demo = evaluation_settings(tmp_path, tmp_path / "eval", seed=3)
    recipe = parse_args(["--config", str(TINY_RECIPE)])
    changed = {"model_name_or_path", "adapters", "data_dir", "judge", "output_dir", "seed"}
    for field in dataclasses.fields(EvalArguments):
        if field.name not in changed:
            assert getattr(demo, field.name) == getattr(recipe, field.name), field.name
    assert demo.model_name_or_path == str(tmp_path / "tiny-qwen3") and demo.seed == 3
    assert demo.adapters == [str(tmp_path / "runs")] and demo.judge == str(tmp_path / "tiny-qwen3")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['benchmarks'\]"):
        settings_from({"benchmarks": ["x"]}, recipe=TINY_RECIPE)


# ---- end to end: `medinjection evaluate --config recipes/evaluation/tiny.yaml` on a demo folder -------


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory, tiny_path, dora_runs):
    """What `medinjection demo` leaves for the recipe: ./medinjection-fr (the bundled demo built and mixed,
    as the training tests build it), ./tiny-qwen3 and ./runs/<mix>/ (two DoRA run folders)."""
    from medinjection.core.config import load_build_config
    from medinjection.dataset_builders.build import build
    from medinjection.dataset_builders.mixes import build_mixes

    root = tmp_path_factory.mktemp("demo-folder")
    build(load_build_config("demo"), root / "medinjection-fr", progress=False)
    build_mixes(root / "medinjection-fr", seed=0, allow_smaller=True)
    shutil.copytree(tiny_path, root / "tiny-qwen3")
    shutil.copytree(dora_runs / "nat", root / "runs" / "nat", ignore=shutil.ignore_patterns("eval"))
    return root


@pytest.fixture(scope="module")
def recipe_run(demo_folder, tmp_path_factory):
    """The tiny recipe run from the demo folder (only the bootstrap made smaller, for time)."""
    hashes = tmp_path_factory.mktemp("hashes") / "file-hashes.json"
    cwd = os.getcwd()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDINJECTION_HASH_CACHE", str(hashes))
        os.chdir(demo_folder)
        try:
            output = invoke("--config", "recipes/evaluation/tiny.yaml", "--bootstrap_resamples", "50")
        finally:
            os.chdir(cwd)
    return demo_folder, output


@pytest.mark.slow
def test_the_tiny_recipe_runs_on_the_demo_outputs(recipe_run):
    root, output = recipe_run
    assert f"wrote eval (comparisons: {Path('eval') / 'comparisons.json'})" in output
    for tag in ("base", "nat"):
        for task in TASKS:
            folder = root / "eval" / tag / task
            summary = json.loads((folder / "summary.json").read_text())
            assert summary["schema_version"] == 2 and summary["task"] == task
            assert summary["task_spec"]["dataset"]["config"] == task.split("-")[0]
            assert summary["subsample"] is False and summary["model_files_sha256"]
            rows = pq.read_table(folder / "predictions.parquet").to_pylist()
            assert {r["task"] for r in rows} == {task}
            assert {r["scorer"] for r in rows} <= {"mcq", "oeq"}
            options = summary["protocol"]["scorer_options"]["oeq"]
            assert options["max_new_tokens"] == 48 and options["bertscore_model"] is None
            oeq = [r for r in rows if r["scorer"] == "oeq"]
            assert all(r["answer_tokens"] <= 48 for r in oeq)  # 17.13: the demo's answers are capped
            if oeq:  # 17.10: BERTScore only when asked, reported missing with the reason
                entry = summary["metrics"]["bertscore_f1"]
                assert entry["value"] is None and entry["missing"].startswith("no BERTScore model given")
    run_copy = root / "runs" / "nat" / "eval" / "native-test" / "summary.json"
    assert json.loads(run_copy.read_text()) == json.loads(
        (root / "eval" / "nat" / "native-test" / "summary.json").read_text()
    )
    # what `medinjection demo` runs (the recipe with DIR's absolute folders) is the same scoring: reused
    from medinjection.demo import evaluation_settings
    from medinjection.evaluation.runner import evaluate

    logs: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDINJECTION_HASH_CACHE", str(root / "hashes.json"))
        evaluate(evaluation_settings(root, root / "eval"), log=logs.append)
    assert sum("reused" in line for line in logs) == 2 * len(TASKS), logs


@pytest.mark.slow
def test_a_smoke_run_leaves_the_run_folder_alone(recipe_run, monkeypatch, tmp_path):
    """17.6: `evaluate --limit 3 -o scratch` must not replace runs/<mix>/eval/<task>/summary.json."""
    root, _ = recipe_run
    copies = {p: p.read_bytes() for p in sorted((root / "runs" / "nat" / "eval").glob("*/summary.json"))}
    assert len(copies) == len(TASKS)
    monkeypatch.setenv("MEDINJECTION_HASH_CACHE", str(tmp_path / "hashes.json"))
    monkeypatch.chdir(root)
    output = invoke(
        "--config", "tiny", "--limit", "3", "--output_dir", tmp_path / "scratch", "--no_base",
        "--bootstrap_resamples", "20",
    )  # fmt: skip
    assert "; also " not in output  # no run-folder copy announced
    scratch = json.loads((tmp_path / "scratch" / "nat" / "native-test" / "summary.json").read_text())
    assert scratch["subsample"] is True and scratch["n_items"] == 3
    for path, before in copies.items():
        assert path.read_bytes() == before, path


# ---- 16.2: the paper's table, by (origin, type) ----------------------------------------------------


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


@pytest.mark.slow
def test_groups_of_a_demo_like_evaluation_match_its_predictions(recipe_run, tmp_path):
    """Each summary's ``groups`` (one per (origin, type) of the items) against the same means computed
    here from predictions.parquet; the halves aggregate against its formula over those groups; and
    the report's table has a row per group."""
    from medinjection.evaluation.report import build_report

    root, _ = recipe_run
    for tag in ("base", "nat"):
        halves_by_hand: dict[str, list[float]] = {"MCQ": [], "MCQU": []}
        for task in TASKS:
            folder = root / "eval" / tag / task
            summary = json.loads((folder / "summary.json").read_text())
            rows = pq.read_table(folder / "predictions.parquet").to_pylist()
            original = [r for r in rows if r["permutation"] == 0]
            assert all(r["origin"] for r in rows), task  # every item names its source dataset
            keys = sorted({(r["origin"], r["type"]) for r in original})
            assert [(g["origin"], g["type"]) for g in summary["groups"]] == keys
            assert sum(g["n"] for g in summary["groups"]) == summary["n_items"]
            for group in summary["groups"]:
                mine = [r for r in rows if (r["origin"], r["type"]) == (group["origin"], group["type"])]
                first = [r for r in mine if r["permutation"] == 0]
                assert group["n"] == len(first)
                columns = (
                    "em_constrained",
                    "em_greedy",
                    "hamming_constrained",
                    "hamming_greedy",
                    "rouge2",
                    "meteor",
                )
                for column in columns:
                    expected = _mean([r.get(column) for r in first])
                    entry = group["metrics"].get(column)
                    if expected is None:
                        assert entry is None, (task, group["origin"], column)
                    else:
                        assert entry["value"] == pytest.approx(expected), (task, group["origin"], column)
                        assert entry["n"] == sum(r.get(column) is not None for r in first)
                if group["type"] in ("MCQ", "MCQU"):  # permuted copies: the mean over each item's copies
                    permuted: dict[str, list[float]] = {}
                    for r in mine:
                        if r["permutation"] > 0:
                            permuted.setdefault(r["id"], []).append(r["em_constrained"])
                    expected = _mean([_mean(v) for v in permuted.values()])
                    assert group["metrics"]["em_constrained_perm"]["value"] == pytest.approx(expected)
                    halves_by_hand[group["type"]].append(group["metrics"]["em_constrained"]["value"])
                assert not any(":" in name for name in group["metrics"])  # no by-type/by-source inside
        aggregate = json.loads((root / "eval" / tag / "aggregate.json").read_text())
        entry = aggregate["metrics"]["em_constrained_halves"]
        assert halves_by_hand["MCQ"] and halves_by_hand["MCQU"]
        by_hand = 0.5 * _mean(halves_by_hand["MCQ"]) + 0.5 * _mean(halves_by_hand["MCQU"])
        assert entry["value"] == pytest.approx(by_hand)
        assert "MedAdapt" in aggregate["statistics"]["halves"]
    report = build_report(root / "eval", tmp_path / "report", resamples=50)
    table = report.markdown.split("### Constrained exact match (%)")[1].split("###")[0]
    native = json.loads((root / "eval" / "base" / "native-test" / "summary.json").read_text())
    for group in native["groups"]:
        if group["type"] != "OEQ":
            assert f"| native-test | {group['origin']} {group['type']} | {group['n']} |" in table


def test_a_mix_config_of_a_local_folder(demo_folder, tmp_path):
    """16.7: ``--dataset_name DIR --dataset_config <mix> --dataset_split test`` scores what
    ``load_dataset(DIR, <mix>, split="test")`` reads (a mix's test split is the provenances' own)."""
    import datasets

    folder = demo_folder / "medinjection-fr"
    invoke(
        "--model_name_or_path", demo_folder / "tiny-qwen3", "--dataset_name", folder,
        "--dataset_config", "nat_trad", "--dataset_split", "test", "--output_dir", tmp_path / "out",
        "--oeq_max_new_tokens", "2", "--bootstrap_resamples", "20",
    )  # fmt: skip
    summary = json.loads((tmp_path / "out" / "base" / "nat_trad-test" / "summary.json").read_text())
    rows = pq.read_table(tmp_path / "out" / "base" / "nat_trad-test" / "predictions.parquet").to_pylist()
    expected = datasets.load_dataset(str(folder), "nat_trad", split="test")
    assert sorted(r["id"] for r in rows) == sorted(expected["id"])
    assert summary["n_items"] == len(expected) and summary["task_spec"]["dataset"]["config"] == "nat_trad"
    assert {r["origin"] for r in rows} == set(expected["origin"])


# ---- 17.3 and 17.4: what a score is reused for -----------------------------------------------------


@pytest.fixture()
def fmm_mini(tmp_path):
    from test_eval_tasks import fmm_rows

    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "dev.json").write_text(json.dumps(fmm_rows(4), ensure_ascii=False))
    path = folder / "fmm-mini.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "fmm-mini", "source": {"adapter": "frenchmedmcqa", "path": "."}, "split": "validation"}
        )
    )
    return path


def test_a_run_whose_adapter_files_are_not_its_manifests_is_refused(dora_runs, tiny_path, fmm_mini, tmp_path):
    """17.3: another adapter copied into runs/nat keeps nat's manifest: its scores must not be made or reused
    under nat's name."""
    from medinjection.core.runs import RunLayout
    from medinjection.evaluation.runner import evaluate

    run = tmp_path / "runs" / "nat"
    shutil.copytree(dora_runs / "nat", run, ignore=shutil.ignore_patterns("eval"))
    layout = RunLayout(run)
    manifest = json.loads(layout.manifest_path.read_text())
    manifest["adapter"] = {"sha256": layout.adapter_sha256()}  # what `medinjection train` records
    layout.manifest_path.write_text(json.dumps(manifest))
    assert layout.manifest_adapter_sha256() == layout.adapter_sha256()
    args = EvalArguments(
        model_name_or_path=str(tiny_path),
        adapters=[str(run)],
        base=False,
        tasks=[str(fmm_mini)],
        output_dir=str(tmp_path / "out"),
        bootstrap_resamples=20,
    )
    evaluate(args, log=lambda _: None)
    trained = layout.adapter_sha256()
    for name in ("adapter_model.safetensors", "adapter_config.json"):  # another run's adapter copied in
        shutil.copy(dora_runs / "nat_trad" / name, run / name)
    with pytest.raises(EvaluationError) as err:
        evaluate(args, log=lambda _: None)
    message = str(err.value)
    assert str(run) in message and trained in message and layout.adapter_sha256() in message
    output = invoke(
        "--model_name_or_path", tiny_path, "--adapters", run, "--no_base", "--tasks", fmm_mini,
        "--output_dir", tmp_path / "out", code=1,
    )  # fmt: skip
    assert "manifest.json recorded" in output and "Traceback" not in output


def test_a_local_base_is_identified_by_its_files(tmp_path, monkeypatch):
    """17.4: a model folder's identity is the hash of its weight and config files, cached by path, size
    and modification time; two tiny models made with different seeds differ."""
    from medinjection.models.identity import base_identity, local_model_files, local_model_sha256
    from medinjection.models.tiny import TinySettings, make_tiny_model

    cache = tmp_path / "hashes.json"
    monkeypatch.setenv("MEDINJECTION_HASH_CACHE", str(cache))
    a = make_tiny_model(tmp_path / "a", TinySettings(seed=0))
    b = make_tiny_model(tmp_path / "b", TinySettings(seed=1))
    names = [p.name for p in local_model_files(a)]
    assert "model.safetensors" in names and "config.json" in names and "tokenizer.json" in names
    first = local_model_sha256(a)
    assert first != local_model_sha256(b)
    entries = json.loads(cache.read_text())
    weights = entries[str((a / "model.safetensors").resolve())]
    assert weights["size"] == (a / "model.safetensors").stat().st_size and len(weights["sha256"]) == 64
    assert local_model_sha256(a) == first  # from the cache, the same
    shutil.copy(b / "model.safetensors", a / "model.safetensors")  # other weights, same marker and name
    assert local_model_sha256(a) not in (first, None)
    assert base_identity(str(a), None)["files_sha256"] == local_model_sha256(a)


def test_other_weights_in_the_same_folder_are_scored_again(tmp_path, fmm_mini, monkeypatch):
    """17.4 through evaluate: replacing tiny-qwen3/ with other weights is not 'the same model'."""
    from medinjection.evaluation.runner import evaluate
    from medinjection.models.tiny import TinySettings, make_tiny_model

    monkeypatch.setenv("MEDINJECTION_HASH_CACHE", str(tmp_path / "hashes.json"))
    model = make_tiny_model(tmp_path / "tiny-qwen3", TinySettings(seed=0))
    other = make_tiny_model(tmp_path / "other", TinySettings(seed=2))
    args = EvalArguments(
        model_name_or_path=str(model),
        tasks=[str(fmm_mini)],
        output_dir=str(tmp_path / "out"),
        bootstrap_resamples=20,
    )
    summary = tmp_path / "out" / "base" / "fmm-mini" / "summary.json"
    evaluate(args, log=lambda _: None)
    before = json.loads(summary.read_text())["model_files_sha256"]
    logs: list[str] = []
    evaluate(args, log=logs.append)
    assert any("reused" in line for line in logs)  # nothing changed: reused
    time.sleep(0.01)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")
    logs.clear()
    evaluate(args, log=logs.append)
    assert not any("reused" in line for line in logs), logs
    assert json.loads(summary.read_text())["model_files_sha256"] != before


# ---- 17.10: BERTScore never reaches for the Hub silently -------------------------------------------


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "no-network"])
def test_a_hub_bertscore_model_that_cannot_be_had_fails_fast(offline, tiny_path, tmp_path):
    from test_eval_tasks import built_records, write_built_folder

    write_built_folder(tmp_path / "ds", {"test": built_records(2, 2)})
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "empty-cache"),
        "MEDINJECTION_HASH_CACHE": str(tmp_path / "h.json"),
    }
    env.pop("HF_HUB_OFFLINE", None)
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing listens there: the Hub cannot be reached
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable, "-m", "medinjection.recipes.evaluate", "--model_name_or_path", str(tiny_path),
            "--dataset_name", str(tmp_path / "ds"), "--dataset_config", "native",
            "--bertscore_model", "bert-base-multilingual-cased", "--output_dir", str(tmp_path / "out"),
        ],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BERTScore model 'bert-base-multilingual-cased' is not in the Hub cache" in done.stderr
    assert ("HF_HUB_OFFLINE is set" if offline else "cannot be reached") in done.stderr
    assert "set bertscore_model none" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()  # failed before any model was loaded or scored
    assert seconds < 60, seconds
