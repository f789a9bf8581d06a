"""The whole build (every stage, dedup and decontamination included) on a local Ray cluster gives the
same kept records, rejects and stats as the local executor."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from medinjection.core.config import load_build_config
from medinjection.dataset_builders.build import build


def run(folder: Path, shared_data: Path, executor: dict) -> Path:
    folder.mkdir()
    config = {
        "name": "ray-vs-local",
        # train only: dev is the external evaluation set (two train items hold most of a dev item)
        "sources": [
            {
                "adapter": "frenchmedmcqa",
                "path": str(shared_data / "frenchmedmcqa" / "train.json"),
                "limit": 700,
            }
        ],
        "executor": executor,
        "dedup": {"num_buckets": 8, "hashes_per_bucket": 4},
        "decontamination": {
            "eval_sets": [
                {
                    "adapter": "frenchmedmcqa",
                    "name": "FrenchMedMCQA dev",
                    "path": str(shared_data / "frenchmedmcqa" / "dev.json"),
                    "splits": ["validation"],
                }
            ],
            "splits": ["train"],
        },
    }
    (folder / "build.yaml").write_text(yaml.safe_dump(config))
    return build(load_build_config(folder / "build.yaml"), folder / "out", progress=False)


def outcome(root: Path) -> tuple:
    kept = sorted(
        i
        for p in root.glob("data/*/*.parquet")
        for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()
    )
    rejects = sorted(
        (row["id"], row["step"], row["reason"], row["kept_id"])
        for p in root.glob("rejects/*/*.jsonl")
        for row in map(json.loads, p.open())
    )
    return kept, rejects, json.loads((root / "stats.json").read_text())


@pytest.fixture(scope="module")
def ray_cluster(require_module):
    ray = require_module("ray", "Ray not installed: pip install 'medinjection[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_build_matches_local_build(shared_data, tmp_path, ray_cluster):
    local = outcome(run(tmp_path / "local", shared_data, {"type": "local", "tasks": 2, "workers": 1}))
    on_ray = outcome(
        run(
            tmp_path / "ray",
            shared_data,
            {"type": "ray", "tasks": 2, "workers": 2, "ray": {"cpus_per_task": 1, "mem_per_cpu_gb": 1}},
        )
    )
    assert on_ray[0] == local[0], "kept ids differ"
    assert on_ray[1] == local[1], "rejects differ"
    assert on_ray[2] == local[2], "stats.json differs"
    kept, rejects, stats = on_ray
    reasons = {reason for _, _, reason, _ in rejects}
    assert {"near_duplicate", "contamination"} <= reasons, reasons  # the dedup stages really ran on Ray
    assert len(kept) + len(rejects) == stats["records"]["in"] == 700
