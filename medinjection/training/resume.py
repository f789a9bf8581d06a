"""Resuming a killed run from its last complete checkpoint, and refusing to mix two runs in one folder.

A checkpoint is complete once the trainer has written its ``trainer_state.json`` (the last file
``Trainer._save_checkpoint`` writes); a folder killed before that is removed rather than resumed from.
Each checkpoint also gets the run's settings (``medinjection-settings.json``): resuming with other
settings (another mix, learning rate, loss mode...) fails and names what differs.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medinjection.runs import RunLayout

SETTINGS_FILE = "medinjection-settings.json"
TRAINER_STATE = "trainer_state.json"

logger = logging.getLogger(__name__)


class ResumeError(ValueError):
    """The output folder holds something a new run cannot continue or replace without being told."""


def complete_checkpoints(layout: RunLayout, remove_incomplete: bool = False) -> list[Path]:
    """Complete checkpoints, oldest first; incomplete ones are removed when ``remove_incomplete``."""
    complete = []
    for checkpoint in layout.checkpoints():
        if (checkpoint / TRAINER_STATE).is_file():
            complete.append(checkpoint)
        elif remove_incomplete:
            logger.warning("removing %s: the run was stopped while it was being written", checkpoint)
            shutil.rmtree(checkpoint)
    return complete


def check_settings(checkpoint: Path, settings: dict[str, Any]) -> None:
    path = checkpoint / SETTINGS_FILE
    if not path.is_file():
        logger.warning("%s has no %s; resuming without checking its settings", checkpoint, SETTINGS_FILE)
        return
    saved = json.loads(path.read_text(encoding="utf-8"))
    settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
    differ = {
        k: (saved.get(k), settings.get(k))
        for k in sorted(set(saved) | set(settings))
        if saved.get(k) != settings.get(k)
    }
    if differ:
        lines = [f"  {k}: checkpoint {old!r}, now {new!r}" for k, (old, new) in differ.items()]
        raise ResumeError(
            f"{checkpoint} was written by a run with other settings:\n"
            + "\n".join(lines)
            + "\nuse another output_dir, or --no_resume --overwrite to start this one again"
        )


def clear_run(layout: RunLayout) -> None:
    """Remove what a previous run wrote: adapter files, manifest, evaluation outputs, checkpoints."""
    for path in [*layout.adapter_paths(), layout.manifest_path]:
        path.unlink(missing_ok=True)
    if layout.eval_dir.is_dir():
        shutil.rmtree(layout.eval_dir)
    for checkpoint in layout.checkpoints():
        shutil.rmtree(checkpoint)


def resume_point(layout: RunLayout, settings: dict[str, Any], resume: bool, overwrite: bool) -> Path | None:
    """The checkpoint to resume from (None: start from scratch), after checking the folder's state.

    A finished run (adapter + manifest) is refused unless ``overwrite`` (then it is cleared); an
    unfinished one is resumed, or refused when ``resume`` is off unless ``overwrite``.
    """
    if not layout.root.is_dir():
        return None
    if layout.is_run() and layout.manifest_path.is_file():
        if not overwrite:
            raise ResumeError(
                f"{layout.root} already holds a finished run (manifest.json and the adapter); "
                "pass --overwrite to train it again, or choose another output_dir"
            )
        logger.warning("--overwrite: removing the finished run in %s", layout.root)
        clear_run(layout)
        return None
    checkpoints = complete_checkpoints(layout, remove_incomplete=True)
    if not checkpoints:
        return None
    if not resume:
        if not overwrite:
            raise ResumeError(
                f"{layout.root} holds checkpoints of an unfinished run ({checkpoints[-1].name}); resume it "
                "(the default), or pass --no_resume --overwrite to discard them"
            )
        clear_run(layout)
        return None
    check_settings(checkpoints[-1], settings)
    return checkpoints[-1]


class SettingsCallback(TrainerCallback):
    """Writes the run's settings into every checkpoint, so that a resume can check them."""

    def __init__(self, settings: dict[str, Any]):
        self.settings = settings

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                (checkpoint / SETTINGS_FILE).write_text(
                    json.dumps(self.settings, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
                )
        return control
