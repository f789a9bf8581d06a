"""The run folder rules: resume from the last complete checkpoint only, with the same settings; a
finished run is kept unless --overwrite."""

from __future__ import annotations

import json

import pytest

from medinjection.runs import RunLayout
from medinjection.training.resume import SETTINGS_FILE, ResumeError, resume_point

SETTINGS = {"dataset_config": "nat", "learning_rate": 1e-4, "loss": "full"}


def checkpoint(root, step, complete=True, settings=SETTINGS):
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (folder / "trainer_state.json").write_text("{}")
    if settings is not None:
        (folder / SETTINGS_FILE).write_text(json.dumps(settings))
    return folder


def test_the_last_complete_checkpoint_is_resumed_and_a_half_written_one_removed(tmp_path):
    checkpoint(tmp_path, 4)
    last = checkpoint(tmp_path, 8)
    partial = checkpoint(tmp_path, 12, complete=False, settings=None)
    assert resume_point(RunLayout(tmp_path), SETTINGS, resume=True, overwrite=False) == last
    assert not partial.exists()


def test_other_settings_are_refused_with_what_differs(tmp_path):
    checkpoint(tmp_path, 4)
    with pytest.raises(ResumeError, match=r"learning_rate: checkpoint 0\.0001, now 0\.0002"):
        resume_point(RunLayout(tmp_path), {**SETTINGS, "learning_rate": 2e-4}, resume=True, overwrite=False)


def test_no_resume_needs_overwrite_and_then_starts_clean(tmp_path):
    checkpoint(tmp_path, 4)
    with pytest.raises(ResumeError, match="--no_resume --overwrite"):
        resume_point(RunLayout(tmp_path), SETTINGS, resume=False, overwrite=False)
    assert resume_point(RunLayout(tmp_path), SETTINGS, resume=False, overwrite=True) is None
    assert RunLayout(tmp_path).checkpoints() == []


def test_a_finished_run_is_kept_unless_overwrite(tmp_path):
    checkpoint(tmp_path, 4)
    for name in ("adapter_config.json", "adapter_model.safetensors", "manifest.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "eval" / "frenchmedmcqa").mkdir(parents=True)
    with pytest.raises(ResumeError, match="already holds a finished run"):
        resume_point(RunLayout(tmp_path), SETTINGS, resume=True, overwrite=False)
    assert resume_point(RunLayout(tmp_path), SETTINGS, resume=True, overwrite=True) is None
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "eval").exists()
    assert RunLayout(tmp_path).checkpoints() == []
