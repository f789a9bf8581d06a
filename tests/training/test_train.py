"""End to end on the tiny recipe: `medinjection train` and `trl sft --config` train a DoRA adapter whose
loss goes down, the run folder's manifest is complete and true, adapter_config names the Hub id, and a
killed run resumes from its checkpoint."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
from safetensors import safe_open
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.core.runs import RunLayout
from medinjection.models.tiny import TINY_HUB_ID
from medinjection.training.arguments import parse_args
from medinjection.training.authors import PROJECTIONS
from medinjection.training.resume import saved_settings

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def assert_dora_on_all_projections(run_dir: Path) -> None:
    config = json.loads((run_dir / "adapter_config.json").read_text())
    assert config["use_dora"] is True and config["peft_type"] == "LORA"
    assert sorted(config["target_modules"]) == sorted(PROJECTIONS)
    assert (config["r"], config["lora_alpha"], config["lora_dropout"]) == (16, 16, 0.05)
    with safe_open(str(run_dir / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    for projection in PROJECTIONS:
        for part in ("lora_A", "lora_B", "lora_magnitude_vector"):
            assert any(f"{projection}.{part}" in key for key in keys), (projection, part)
    assert not any("embed_tokens" in key or "lm_head" in key for key in keys)  # no resized embeddings saved


def trainer_losses(run_dir: Path) -> list[float]:
    last = RunLayout(run_dir).checkpoints()[-1]
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def trained(demo_dataset, tiny_model, tiny_argv, tmp_path_factory):
    """One `medinjection train` run of the tiny recipe on the nat mix (the command line, in-process)."""
    output = tmp_path_factory.mktemp("runs") / "nat"
    result = runner.invoke(app, ["train", *tiny_argv("nat", demo_dataset, tiny_model, output)])
    assert result.exit_code == 0, result.output
    return output


def test_medinjection_train_trains_a_dora_adapter_whose_loss_goes_down(trained):
    layout = RunLayout(trained)
    assert layout.is_run()
    assert_dora_on_all_projections(trained)
    losses = trainer_losses(trained)
    assert len(losses) >= 6 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    adapter_config = json.loads((trained / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == TINY_HUB_ID
    assert not (trained / "README.md").exists()  # TRL's card named the local model path


def test_manifest_is_complete_and_true(trained, demo_dataset, tiny_model):
    layout = RunLayout(trained)
    manifest = layout.manifest()
    recipe = REPO / "trl_configs" / "tiny" / "nat.yaml"
    assert manifest["base_model"]["hub_id"] == TINY_HUB_ID and manifest["base_model"]["path"] == str(
        tiny_model
    )
    # the data: every file read, hashed; the mix as mixes.json and the files say
    dataset = manifest["dataset"]
    assert dataset["name"] == str(demo_dataset) and dataset["kind"] == "local" and dataset["config"] == "nat"
    for name, sha in dataset["fingerprint"]["files"].items():
        assert hashlib.sha256((demo_dataset / name).read_bytes()).hexdigest() == sha
    mixes = json.loads((demo_dataset / "mixes.json").read_text())
    import pyarrow.parquet as pq

    rows = sum(pq.read_metadata(p).num_rows for p in (demo_dataset / "data" / "nat").glob("train-*.parquet"))
    assert (
        manifest["mix"]["name"] == "nat" and manifest["mix"]["size"] == rows == mixes["mixes"]["nat"]["train"]
    )
    assert manifest["mix"]["types"] == mixes.get("types", sorted(manifest["mix"]["type_counts"]))
    assert manifest["chat_version"] == mixes.get("chat_version", "v1")
    # the recipe, the code, the versions
    assert manifest["recipe"] == {
        "path": str(recipe),
        "sha256": hashlib.sha256(recipe.read_bytes()).hexdigest(),
    }
    assert manifest["command"][:2] == ["medinjection", "train"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    assert manifest["code"]["commit"] == (head or None)
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets"):
        assert manifest["versions"][name] == metadata.version(name)
    assert manifest["hardware"]["accelerator"] == "cpu" and manifest["hardware"]["processes"] == 1
    # the settings, the loss, the seed
    assert manifest["seed"] == 42 and manifest["loss"]["mode"] == "full"
    tokens = manifest["loss"]["tokens"]["train"]
    assert tokens["examples"] == rows and tokens["label_tokens"] == tokens["tokens"] - rows
    assert manifest["settings"]["recipe"]["lora_alpha"] == 16 and manifest["settings"]["run"]["use_dora"]
    assert "learning_rate" in manifest["paper_deviations"] and manifest["faithful_to_paper"] is False
    assert manifest["speed"]["mode"] == "auto" and manifest["resumed_from"] is None
    # the labels come from the settings the run used: the CPU plan dropped the recipe's pad-to-8
    assert manifest["settings"]["recipe"]["pad_to_multiple_of"] == 8
    assert manifest["paper_deviations"]["pad_to_multiple_of"] == {
        "authors": 8,
        "run": None,
        "kind": "different numerics",
    }
    assert manifest["paper_deviations"]["learning_rate"]["kind"] == "different data or objective"
    by_kind = manifest["paper_deviations_by_kind"]
    assert (
        "pad_to_multiple_of" in by_kind["different numerics"]
        and "validation_set" in by_kind["different data or objective"]
    )
    assert "no end token appended" in manifest["loss"]["labels"]
    # what the model card reads: how the effective batch was laid out
    run = manifest["settings"]["run"]
    assert (run["per_device_train_batch_size"], run["gradient_accumulation_steps"], run["world_size"]) == (
        4,
        1,
        1,
    )
    assert run["effective_batch"] == 4 and run["padding_free"] is False
    assert manifest["effective_batch"]["source"] == "the recipe's gradient_accumulation_steps"
    assert manifest["warnings"] == []  # not a paper recipe: no effective batch to keep
    # every checkpoint carries the settings a resume checks, inside its trainer_state.json
    for checkpoint in layout.checkpoints():
        settings = saved_settings(checkpoint)
        assert settings["dataset_config"] == "nat" and settings["lora_alpha"] == 16
        assert settings["dataset_sha256"] == dataset["fingerprint"]["sha256"] and "world_size" not in settings
    # the adapter files are the ones in the folder
    assert manifest["adapter"]["sha256"] == layout.adapter_sha256()
    assert manifest["adapter"]["use_dora"] and manifest["adapter"]["base_model_name_or_path"] == TINY_HUB_ID
    # final metrics, as the trainer logged them
    state = json.loads((layout.checkpoints()[-1] / "trainer_state.json").read_text())
    last_loss = [e for e in state["log_history"] if "loss" in e][-1]["loss"]
    last_eval = [e for e in state["log_history"] if "eval_loss" in e][-1]["eval_loss"]
    assert manifest["metrics"]["train"]["last_logged_loss"] == pytest.approx(last_loss)
    assert manifest["metrics"]["train"]["global_step"] == state["global_step"]
    assert manifest["metrics"]["validation"]["eval_loss"] == pytest.approx(last_eval)
    assert math.isfinite(manifest["metrics"]["train"]["train_loss"])


def test_a_finished_run_is_not_trained_over(trained, demo_dataset, tiny_model, tiny_argv):
    result = runner.invoke(app, ["train", *tiny_argv("nat", demo_dataset, tiny_model, trained)])
    assert result.exit_code == 1 and "already holds a finished run" in result.output
    assert "--overwrite" in result.output


def test_assistant_loss_run_through_the_python_function(demo_dataset, tiny_model, tiny_argv, tmp_path):
    from medinjection.training import train

    args = parse_args(
        tiny_argv(
            "syn",
            demo_dataset,
            tiny_model,
            tmp_path / "syn",
            "--loss",
            "assistant",
            "--num_train_epochs",
            "1",
            "--eval_strategy",
            "no",
        )
    )
    layout = train(*args)
    manifest = layout.manifest()
    tokens = manifest["loss"]["tokens"]["train"]
    assert manifest["loss"]["mode"] == "assistant" and manifest["metrics"]["validation"] is None
    assert 0 < tokens["label_tokens"] < tokens["tokens"] / 4  # the answers are a few tokens of each chat
    assert_dora_on_all_projections(layout.root)


def test_clear_errors_before_training(demo_dataset, tiny_model, tiny_argv, tmp_path):
    result = runner.invoke(
        app,
        [
            "train",
            *tiny_argv("nat", demo_dataset, tiny_model, tmp_path / "a", "--dataset_config", "nat-trad"),
        ],
    )
    assert result.exit_code == 1 and "nat-trad" in result.output and "nat_trad" in result.output
    anonymous = tmp_path / "copy-of-a-model"
    shutil.copytree(tiny_model, anonymous, ignore=shutil.ignore_patterns("medinjection-model.json"))
    result = runner.invoke(app, ["train", *tiny_argv("nat", demo_dataset, anonymous, tmp_path / "b")])
    assert result.exit_code == 1 and "--base_model_id" in result.output
    assert not (tmp_path / "b").exists()


def test_a_paper_recipe_off_the_papers_effective_batch_warns_and_says_so(
    demo_dataset, tiny_model, tmp_path, caplog
):
    """The paper recipe, shrunk to the tiny model on CPU, at effective batch 4: a warning naming
    --effective_batch 192 when the run starts, kept in the manifest; a local copy's revision recorded."""
    recipe = tmp_path / "recipes" / "nat.yaml"  # a copy of the authors' recipe, anywhere, is theirs
    recipe.parent.mkdir()
    recipe.write_text((REPO / "trl_configs" / "qwen3-4b-instruct-2507" / "nat.yaml").read_text())
    anonymous = tmp_path / "qwen3-copy"
    shutil.copytree(tiny_model, anonymous, ignore=shutil.ignore_patterns("medinjection-model.json"))
    sha = "cdbee75f17c01a7cc42f958dc650907174af0554"
    argv = ["train", "--config", str(recipe), "--dataset_name", str(demo_dataset),
            "--model_name_or_path", str(anonymous), "--base_model_id", "Qwen/Qwen3-4B-Instruct-2507",
            "--base_model_revision", sha, "--output_dir", str(tmp_path / "run"),
            "--dtype", "float32", "--attn_implementation", "sdpa", "--bf16", "false", "--use_cpu", "true",
            "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "1", "--max_length", "512",
            "--max_steps", "2", "--eval_strategy", "no", "--save_strategy", "no"]  # fmt: skip
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    warning = [r.getMessage() for r in caplog.records if "effective batch 4" in r.getMessage()]
    assert (
        len(warning) == 1 and "--effective_batch 192" in warning[0] and "not the authors' 192" in warning[0]
    )
    manifest = RunLayout(tmp_path / "run").manifest()
    assert manifest["warnings"] == warning
    assert manifest["effective_batch"] == {
        "value": 4,
        "source": "the recipe's gradient_accumulation_steps",
        "authors": 192,
        "warning": warning[0],
    }
    assert manifest["paper_deviations"]["effective_batch"] == {
        "authors": 192,
        "run": 4,
        "kind": "different data or objective",
        "note": "12 per GPU x 2 GPUs x 8 accumulation",
    }
    # the base model is compared by its Hub id, not by the local path it was read from
    assert "model_name_or_path" not in manifest["paper_deviations"]
    base = manifest["base_model"]
    assert (base["hub_id"], base["revision"], base["revision_source"]) == (
        "Qwen/Qwen3-4B-Instruct-2507",
        sha,
        "--base_model_revision",
    )
    assert manifest["options"]["base_model_revision"] == sha


def test_resume_from_checkpoint_is_honoured_after_the_settings_check(
    demo_dataset, tiny_model, tiny_argv, tmp_path
):
    output = tmp_path / "nat"
    argv = ["train", *tiny_argv("nat", demo_dataset, tiny_model, output), "--max_steps", "4",
            "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "no"]  # fmt: skip
    assert runner.invoke(app, argv).exit_code == 0
    first = output / "checkpoint-2"
    result = runner.invoke(app, [*argv, "--resume_from_checkpoint", str(first)])
    assert result.exit_code == 1 and "finished run" in result.output and "--overwrite" in result.output
    result = runner.invoke(app, [*argv, "--resume_from_checkpoint", str(first), "--learning_rate", "1e-3"])
    assert result.exit_code == 1 and "learning_rate: checkpoint 0.005, now 0.001" in result.output
    result = runner.invoke(app, [*argv, "--resume_from_checkpoint", str(first), "--overwrite"])
    assert result.exit_code == 0, result.output
    manifest = RunLayout(output).manifest()
    assert manifest["resumed_from"] == "checkpoint-2" and manifest["metrics"]["train"]["global_step"] == 4
    history = json.loads((output / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3, 4]


@pytest.mark.slow
def test_trl_sft_runs_the_tiny_recipe_as_it_is(demo_dataset, tiny_model, tiny_argv, subprocess_env, tmp_path):
    output = tmp_path / "trl-nat"
    argv = tiny_argv("nat", demo_dataset, tiny_model, output)
    trl = Path(sys.executable).with_name("trl")
    done = subprocess.run(
        [str(trl), "sft", *argv], env=subprocess_env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_dora_on_all_projections(output)
    losses = trainer_losses(output)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_checkpoint(
    demo_dataset, tiny_model, tiny_argv, subprocess_env, tmp_path
):
    output = tmp_path / "killed"
    argv = [
        sys.executable, "-m", "medinjection.recipes.train",
        *tiny_argv("nat", demo_dataset, tiny_model, output),
        "--max_steps", "60", "--save_strategy", "steps", "--save_steps", "4", "--eval_strategy", "no",
    ]  # fmt: skip
    log = (tmp_path / "first.log").open("w")
    process = subprocess.Popen(argv, env=subprocess_env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (output / "checkpoint-8" / "trainer_state.json").is_file():
        assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint-8 within 300 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    layout = RunLayout(output)
    assert not layout.is_run()
    complete = [c for c in layout.checkpoints() if (c / "trainer_state.json").is_file()]
    last = complete[-1]
    assert int(last.name.split("-")[1]) < 60

    done = subprocess.run(argv, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = layout.manifest()
    assert manifest["resumed_from"] == last.name
    assert manifest["metrics"]["train"]["global_step"] == 60
    history = json.loads((layout.checkpoints()[-1] / "trainer_state.json").read_text())["log_history"]
    steps = [entry["step"] for entry in history if "loss" in entry]
    assert steps == list(range(1, 61))  # the history of the first process continues, no step twice


@pytest.mark.slow
def test_two_process_ddp_sets_the_accumulation_and_writes_one_manifest(
    demo_dataset, tiny_model, tiny_argv, subprocess_env, tmp_path
):
    """DDP on CPU (torchrun, gloo): --effective_batch counts both processes; rank 0 alone writes the run."""
    output = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    argv = [str(torchrun), "--nproc_per_node", "2", "-m", "medinjection.recipes.train",
            *tiny_argv("nat", demo_dataset, tiny_model, output), "--effective_batch", "16", "--use_cpu", "true"]  # fmt: skip
    done = subprocess.run(argv, env=subprocess_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    manifest = RunLayout(output).manifest()
    assert manifest["hardware"]["processes"] == 2
    run = manifest["settings"]["run"]
    assert run["effective_batch"] == 16 == run["per_device_train_batch_size"] * 2 * 2
    rows = manifest["mix"]["size"]
    assert manifest["metrics"]["train"]["global_step"] == 3 * math.ceil(rows / 16)
    assert_dora_on_all_projections(output)
