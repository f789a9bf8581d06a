"""The base model's Hub id (never a local path), and what the manifest says about code and versions."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from medinjection.core.environment import git_state, package_versions
from medinjection.core.runs import rewrite_adapter_config
from medinjection.models.identity import BaseModelError, base_model
from medinjection.models.tiny import TINY_HUB_ID
from medinjection.training.run import TrainError, apply_effective_batch

SHA = "cdbee75f17c01a7cc42f958dc650907174af0554"


def test_tiny_model_is_named_by_its_marker(tiny_model):
    base = base_model(str(tiny_model), "main", None)
    assert base["hub_id"] == TINY_HUB_ID and base["made_on_the_fly"] and base["revision"] is None


def test_hub_cache_snapshot_is_named_by_its_repo_and_commit(tmp_path):
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen3-4B-Instruct-2507" / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    base = base_model(str(snapshot), "main", None)
    assert (base["hub_id"], base["revision"]) == ("Qwen/Qwen3-4B-Instruct-2507", SHA)


def test_hub_id_is_kept_and_an_anonymous_local_folder_is_refused(tmp_path):
    assert base_model("Qwen/Qwen3-4B-Instruct-2507", SHA, None)["hub_id"] == "Qwen/Qwen3-4B-Instruct-2507"
    with pytest.raises(BaseModelError, match="--base_model_id"):
        base_model(str(tmp_path), "main", None)
    declared = base_model(str(tmp_path), "main", "Qwen/Qwen3-4B-Instruct-2507")
    assert declared["hub_id"] == "Qwen/Qwen3-4B-Instruct-2507" and declared["path"] == str(tmp_path)


def test_adapter_config_gets_the_hub_id(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/tmp/x", "r": 16}))
    rewrite_adapter_config(tmp_path, "Qwen/Qwen3-4B-Instruct-2507")
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config == {"base_model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507", "r": 16}


def test_git_state_and_versions_are_the_real_ones():
    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    assert git_state()["commit"] == (head.stdout.strip() or None)
    versions = package_versions()
    for name in ("torch", "transformers", "trl", "peft", "datasets"):
        assert versions[name] == metadata.version(name)


def test_effective_batch_sets_the_accumulation_from_the_processes():
    from trl import SFTConfig

    args = SFTConfig(output_dir="/tmp/unused", use_cpu=True, per_device_train_batch_size=12, report_to="none")
    apply_effective_batch(args, 192, world_size=2)
    assert args.gradient_accumulation_steps == 8
    apply_effective_batch(args, 192, world_size=4)
    assert args.gradient_accumulation_steps == 4
    with pytest.raises(TrainError, match="multiple of"):
        apply_effective_batch(args, 192, world_size=5)


def test_base_model_revision_of_a_local_copy_is_recorded_and_checked(tmp_path):
    copy = base_model(str(tmp_path), None, "Qwen/Qwen3-4B-Instruct-2507", SHA)
    assert (copy["revision"], copy["revision_source"]) == (SHA, "--base_model_revision")
    assert base_model(str(tmp_path), None, "Qwen/Qwen3-4B-Instruct-2507")["revision"] is None
    snapshot = tmp_path / "hub" / "models--Qwen--Qwen3-4B-Instruct-2507" / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    assert base_model(str(snapshot), None, None, SHA)["revision"] == SHA
    with pytest.raises(BaseModelError, match="contradicts the Hub cache snapshot path"):
        base_model(str(snapshot), None, None, "f" * 40)
    with pytest.raises(BaseModelError, match="contradicts the model_revision"):
        base_model("Qwen/Qwen3-4B-Instruct-2507", SHA, None, "f" * 40)


def test_the_command_line_takes_base_model_revision():
    from medinjection.training.arguments import parse_args

    repo = Path(__file__).resolve().parents[2]
    script_args, _, _ = parse_args(
        ["--config", str(repo / "trl_configs" / "tiny" / "nat.yaml"), "--base_model_revision", SHA]
    )
    assert script_args.base_model_revision == SHA


def test_run_folder_files_are_replaced_whole_never_rewritten_in_place(tmp_path, monkeypatch):
    """A kill while adapter_config.json or manifest.json is written leaves the old file, not half a new one."""
    from medinjection.core import files as atomic
    from medinjection.core.runs import RunLayout
    from medinjection.training.manifest import write_manifest

    config = tmp_path / "adapter_config.json"
    config.write_text(json.dumps({"base_model_name_or_path": "/tmp/x", "r": 16}))
    config.chmod(0o644)
    inode = config.stat().st_ino
    rewrite_adapter_config(tmp_path, "Qwen/Qwen3-4B-Instruct-2507")
    assert config.stat().st_ino != inode and config.stat().st_mode & 0o777 == 0o644
    layout = RunLayout(tmp_path)
    write_manifest(layout, {"format": 1})
    inode = layout.manifest_path.stat().st_ino
    write_manifest(layout, {"format": 1, "seed": 42})
    assert layout.manifest_path.stat().st_ino != inode

    def killed(fd):
        raise OSError("killed while writing")

    monkeypatch.setattr(atomic.os, "fsync", killed)
    with pytest.raises(OSError, match="killed"):
        write_manifest(layout, {"format": 1, "seed": 0})
    assert json.loads(layout.manifest_path.read_text()) == {"format": 1, "seed": 42}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "manifest.json"]
