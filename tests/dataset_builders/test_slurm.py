"""The Slurm path: the job scripts the build would submit, rendered by datatrove, without ``sbatch``."""

from __future__ import annotations

import re

import datatrove.executor.slurm as slurm_module
import dill
import pytest
import yaml

from medinjection.core.config import load_build_config
from medinjection.dataset_builders.build import build, make_stages

FIXTURE = "fixtures/build/bad_fmmcqa"


@pytest.fixture
def submitted(tmp_path, monkeypatch):
    """Every (script, sbatch arguments) the build hands to ``sbatch``; job ids 1001, 1002, ..."""
    jobs = []

    def fake_sbatch(contents, _retriever, *args):
        jobs.append((contents, list(args)))
        return str(1000 + len(jobs))

    monkeypatch.setattr(slurm_module, "launch_slurm_job", fake_sbatch)
    return jobs


def test_build_renders_one_array_job_per_stage_chained_by_dependencies(tmp_path, submitted):
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[1] / FIXTURE
    config_path = tmp_path / "build.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "name": "slurm-test",
                "sources": [{"adapter": "frenchmedmcqa", "path": str(fixture)}],
                "executor": {
                    "type": "slurm",
                    "tasks": 4,
                    "workers": 3,
                    "slurm": {
                        "partition": "cpu",
                        "time": "02:00:00",
                        "cpus_per_task": 2,
                        "mem_per_cpu_gb": 3,
                        "qos": "high",
                        "job_name": "mi",
                        "env_command": "source /opt/venv/bin/activate",
                        "sbatch_args": {"account": "medlab"},
                    },
                },
            }
        )
    )
    config = load_build_config(config_path)
    build(config, tmp_path / "out", progress=False)

    stages = make_stages(
        config,
        __import__("medinjection.core.layout", fromlist=["Layout"]).Layout(tmp_path / "out"),
        4,
    )
    # each stage: its array job, then datatrove's merge-stats job
    assert len(submitted) == 2 * len(stages)
    stage_jobs = submitted[0::2]
    previous_id = None
    for k, (stage, (script, args)) in enumerate(zip(stages, stage_jobs, strict=True)):
        directives = dict(re.findall(r"^#SBATCH --([\w-]+)=?(.*)$", script, flags=re.M))
        assert directives["job-name"] == f"mi-{stage.name}"
        assert directives["partition"] == "cpu" and directives["time"] == "02:00:00"
        assert directives["cpus-per-task"] == "2" and directives["mem-per-cpu"] == "3G"
        assert directives["qos"] == "high" and directives["account"] == "medlab"
        assert directives["array"] == f"0-{stage.tasks - 1}%3", (stage.name, directives["array"])
        assert "source /opt/venv/bin/activate" in script
        pik = tmp_path / "out" / "_build" / "logs" / stage.name / "executor.pik"
        assert f"launch_pickled_pipeline {pik}" in script
        if previous_id is None:
            assert not any(a.startswith("--dependency") for a in args)
        else:
            assert f"--dependency=afterok:{previous_id}" in args
        previous_id = str(1000 + 2 * k + 1)
        # what a Slurm node would load: the pickled executor with this stage's pipeline
        with pik.open("rb") as handle:
            executor = dill.load(handle)
        assert [type(step).__name__ for step in executor.pipeline] == [
            type(step).__name__ for step in stage.pipeline
        ]
    names = [stage.name for stage in stages]
    assert {"minhash_signatures", "minhash_buckets", "minhash_clusters", "decontamination_index"} <= set(
        names
    )
