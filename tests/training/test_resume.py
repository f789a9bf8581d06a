"""The run folder rules: resume from the last complete checkpoint only, with the same settings, which the
checkpoint carries in its trainer_state.json; a checkpoint without them (trl sft's) and a finished run
are kept unless --overwrite; --resume_from_checkpoint picks the checkpoint."""

from __future__ import annotations

import json

import pytest

from medinjection.core.runs import RunLayout
from medinjection.training.resume import ResumeError, SettingsCallback, resume_point, saved_settings

SETTINGS = {"dataset_config": "nat", "learning_rate": 1e-4, "loss": "full"}


def checkpoint(root, step, complete=True, settings=SETTINGS):
    """A checkpoint folder as transformers writes it: trainer_state.json last, with the stateful callbacks'
    states (``settings`` None: a checkpoint of another trainer, such as `trl sft`'s)."""
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        callbacks = {"TrainerControl": {"args": {}, "attributes": {}}}
        if settings is not None:
            callbacks[SettingsCallback.__name__] = SettingsCallback(settings).state()
        state = {"global_step": step, "log_history": [], "stateful_callbacks": callbacks}
        (folder / "trainer_state.json").write_text(json.dumps(state))
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


def test_a_checkpoint_without_our_settings_is_refused_unless_overwrite(tmp_path):
    """`trl sft` checkpoints look complete but their tokens differ: never resumed from without being told."""
    checkpoint(tmp_path, 4, settings=None)
    with pytest.raises(
        ResumeError, match=r"checkpoint-4 has no medinjection train settings.*trl sft.*--overwrite"
    ):
        resume_point(RunLayout(tmp_path), SETTINGS, resume=True, overwrite=False)
    assert RunLayout(tmp_path).checkpoints()  # nothing removed
    assert resume_point(RunLayout(tmp_path), SETTINGS, resume=True, overwrite=True) is None
    assert RunLayout(tmp_path).checkpoints() == []


def test_a_trainer_state_cut_short_is_an_incomplete_checkpoint(tmp_path):
    last = checkpoint(tmp_path, 4)
    cut = checkpoint(tmp_path, 8)
    state = (cut / "trainer_state.json").read_text()
    (cut / "trainer_state.json").write_text(state[: len(state) // 2])  # killed while writing it
    assert resume_point(RunLayout(tmp_path), SETTINGS, resume=True, overwrite=False) == last
    assert not cut.exists()


def test_the_settings_are_in_the_trainer_state_the_callback_exports():
    """transformers writes ExportableState callbacks' state() into trainer_state.json (one file, one write)."""
    from transformers.trainer_callback import ExportableState, TrainerState

    callback = SettingsCallback({**SETTINGS, "lora_target_modules": ("q_proj", "v_proj")})
    assert isinstance(callback, ExportableState)
    state = TrainerState(stateful_callbacks=[callback])
    assert state.stateful_callbacks["SettingsCallback"]["args"]["settings"]["lora_target_modules"] == [
        "q_proj",
        "v_proj",
    ]


def test_resume_from_checkpoint_picks_an_earlier_one_and_later_ones_need_overwrite(tmp_path):
    first = checkpoint(tmp_path, 4)
    later = checkpoint(tmp_path, 8)
    layout = RunLayout(tmp_path)
    with pytest.raises(ResumeError, match=r"checkpoints after checkpoint-4 \(checkpoint-8\).*--overwrite"):
        resume_point(layout, SETTINGS, resume=True, overwrite=False, requested=str(first))
    assert later.exists()
    assert resume_point(layout, SETTINGS, resume=True, overwrite=True, requested=str(first)) == first
    assert not later.exists() and first.exists()
    # the settings are checked on the named checkpoint too
    with pytest.raises(ResumeError, match="learning_rate"):
        resume_point(
            layout, {**SETTINGS, "learning_rate": 2e-4}, resume=True, overwrite=True, requested=str(first)
        )


def test_resume_from_checkpoint_is_refused_clearly_when_it_cannot_be_honoured(tmp_path):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    layout = RunLayout(run)
    with pytest.raises(
        ResumeError, match="no such checkpoint folder.*resumes from the last complete checkpoint"
    ):
        resume_point(layout, SETTINGS, resume=True, overwrite=False, requested=str(tmp_path / "checkpoint-9"))
    foreign = checkpoint(elsewhere, 4, settings=None)
    with pytest.raises(ResumeError, match="no medinjection train settings"):
        resume_point(layout, SETTINGS, resume=True, overwrite=True, requested=str(foreign))
    half = checkpoint(elsewhere, 8, complete=False)
    with pytest.raises(ResumeError, match="no complete trainer_state.json"):
        resume_point(layout, SETTINGS, resume=True, overwrite=False, requested=str(half))
    ours = checkpoint(elsewhere, 12)
    with pytest.raises(ResumeError, match="contradict"):
        resume_point(layout, SETTINGS, resume=False, overwrite=False, requested=str(ours))
    assert resume_point(layout, SETTINGS, resume=True, overwrite=False, requested=str(ours)) == ours
    checkpoint(run, 2)  # another run's checkpoint in the output folder: a later resume would take it
    with pytest.raises(ResumeError, match="checkpoints of another run"):
        resume_point(layout, SETTINGS, resume=True, overwrite=False, requested=str(ours))
    assert saved_settings(ours) == SETTINGS
