"""Scale-out files: the accelerate configs load with accelerate's own parser, and the Slurm job array
launches one mix per array task (run with a stand-in `accelerate` that records its arguments)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from medinjection.dataset_builders.mixes import MIXES

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "recipes" / "slurm" / "train_mixes.sbatch"


@pytest.mark.parametrize(("name", "kind"), [("ddp", "MULTI_GPU"), ("fsdp2", "FSDP"), ("zero2", "DEEPSPEED")])
def test_accelerate_configs_load_with_accelerate(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "trl_configs" / "accelerate" / f"{name}.yaml"))
    assert str(config.distributed_type).endswith(kind)
    assert config.num_processes == 2 and config.mixed_precision == "bf16"
    if name == "fsdp2":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # a plain adapter is saved
        assert config.fsdp_config["fsdp_activation_checkpointing"] is False  # the recipe's own is on
    if name == "zero2":
        assert config.deepspeed_config["zero_stage"] == 2


def run_array_task(tmp_path: Path, task: str, *extra: str, **env: str) -> subprocess.CompletedProcess:
    stub = tmp_path / "bin" / "accelerate"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$ACCELERATE_ARGS"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    environment = {
        **os.environ,
        "PATH": f"{stub.parent}{os.pathsep}{os.environ['PATH']}",
        "SLURM_ARRAY_TASK_ID": task,
        "ACCELERATE_ARGS": str(tmp_path / "args.txt"),
        **env,
    }
    return subprocess.run(
        ["bash", str(SBATCH), *extra], cwd=REPO, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("task", range(len(MIXES)))
def test_slurm_array_task_launches_its_mix(tmp_path, task):
    done = run_array_task(tmp_path, str(task), "--loss", "assistant")
    assert done.returncode == 0, done.stderr
    launch, *args = (tmp_path / "args.txt").read_text().split("\n")
    mix = list(MIXES)[task]
    assert launch == "launch"
    assert args[:6] == [
        "--config_file",
        "trl_configs/accelerate/ddp.yaml",
        "--num_processes",
        "2",
        "--main_process_port",
        str(29500 + task),
    ]
    assert args[6:8] == ["-m", "medinjection.recipes.train"]
    assert args[8:10] == ["--config", f"trl_configs/qwen3-4b-instruct-2507/{mix}.yaml"]
    # no --effective_batch: medinjection train keeps the authors' 192 for their recipe on any GPU count
    assert args[10:] == ["--loss", "assistant", ""]
    assert (REPO / args[9]).is_file()


def test_slurm_array_task_outside_the_array_fails_clearly(tmp_path):
    done = run_array_task(tmp_path, "7")
    assert done.returncode == 2 and "0-6" in done.stderr
    done = run_array_task(tmp_path, "0", EFFECTIVE_BATCH="", GPUS_PER_JOB="4", RECIPES="trl_configs/tiny")
    args = (tmp_path / "args.txt").read_text().split("\n")
    assert "--effective_batch" not in args and args[4] == "4" and "trl_configs/tiny/nat.yaml" in args


def test_slurm_leaves_the_effective_batch_to_medinjection_train(tmp_path):
    """The array passes no batch of its own (the tiny recipe keeps its accumulation, the authors' recipe
    its 192: `medinjection train` decides from what the recipe says); EFFECTIVE_BATCH=N asks for N."""
    done = run_array_task(tmp_path, "0", RECIPES="trl_configs/tiny")
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "args.txt").read_text().split("\n")
    assert "--effective_batch" not in args and "trl_configs/tiny/nat.yaml" in args
    assert "as medinjection train gives the recipe" in done.stdout
    done = run_array_task(tmp_path, "0", RECIPES="trl_configs/tiny", EFFECTIVE_BATCH="8")
    args = (tmp_path / "args.txt").read_text().split("\n")
    assert args[args.index("--effective_batch") + 1] == "8"
