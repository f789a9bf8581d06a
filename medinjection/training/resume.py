"""Resuming a killed run from its last complete checkpoint, and refusing to mix two runs in one folder.

A checkpoint is complete once the trainer has written its ``trainer_state.json`` (the last file
``Trainer._save_checkpoint`` writes) and that file reads as JSON; a folder killed before that is
removed rather than resumed from. The run's settings travel *inside* ``trainer_state.json``: the
``SettingsCallback`` is one of transformers' stateful callbacks, whose state the trainer writes into
that file, so a checkpoint has its settings exactly when it is complete (no second file that a kill
could leave out). Resuming with other settings (another mix, learning rate, loss mode...) fails and
names what differs; a checkpoint without them (written by ``trl sft`` or another trainer, whose tokens
and labels differ) is not resumed from unless ``--overwrite`` discards it.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from medinjection.core.runs import RunLayout

TRAINER_STATE = "trainer_state.json"

logger = logging.getLogger(__name__)


class ResumeError(ValueError):
    """The output folder holds something a new run cannot continue or replace without being told."""


def _normalise(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as JSON gives them back (tuples as lists, enums and paths as strings)."""
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def read_trainer_state(checkpoint: Path) -> dict[str, Any] | None:
    """The checkpoint's ``trainer_state.json``; None when it is missing or was cut short."""
    path = checkpoint / TRAINER_STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) else None


def saved_settings(checkpoint: Path) -> dict[str, Any] | None:
    """The run settings a ``medinjection train`` checkpoint carries (None: not one of ours, or incomplete)."""
    state = read_trainer_state(checkpoint) or {}
    entry = (state.get("stateful_callbacks") or {}).get(SettingsCallback.__name__)
    if isinstance(entry, list):  # transformers keeps a list when one callback class is given twice
        entry = entry[-1] if entry else None
    settings = ((entry or {}).get("args") or {}).get("settings")
    return settings if isinstance(settings, dict) else None


def complete_checkpoints(layout: RunLayout, remove_incomplete: bool = False) -> list[Path]:
    """Complete checkpoints, oldest first; incomplete ones are removed when ``remove_incomplete``."""
    complete = []
    for checkpoint in layout.checkpoints():
        if read_trainer_state(checkpoint) is not None:
            complete.append(checkpoint)
        elif remove_incomplete:
            logger.warning("removing %s: the run was stopped while it was being written", checkpoint)
            shutil.rmtree(checkpoint)
    return complete


def check_settings(checkpoint: Path, settings: dict[str, Any]) -> None:
    """Refuse ``checkpoint`` unless ``medinjection train`` wrote it with these ``settings``."""
    saved = saved_settings(checkpoint)
    if saved is None:
        raise ResumeError(
            f"{checkpoint} has no medinjection train settings in its {TRAINER_STATE} (it was written by "
            "`trl sft` or another trainer, whose tokens and labels differ), so this run cannot be checked to "
            "continue it; pass --overwrite to discard the folder's checkpoints and start again, or choose "
            "another output_dir"
        )
    settings = _normalise(settings)
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


def clear_run(layout: RunLayout, checkpoints: list[Path] | None = None) -> None:
    """Remove what a previous run wrote: adapter files, manifest, evaluation outputs and ``checkpoints``
    (all of them when None)."""
    for path in [*layout.adapter_paths(), layout.manifest_path]:
        path.unlink(missing_ok=True)
    if layout.eval_dir.is_dir():
        shutil.rmtree(layout.eval_dir)
    for checkpoint in layout.checkpoints() if checkpoints is None else checkpoints:
        shutil.rmtree(checkpoint)


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])


def requested_point(
    layout: RunLayout, requested: str, settings: dict[str, Any], resume: bool, overwrite: bool
) -> Path:
    """The checkpoint ``--resume_from_checkpoint`` names, once it is complete, ours and of these settings.

    What in ``output_dir`` a later resume could take for this run's continuation (a finished run; the
    checkpoints after the requested one of the same folder, or any checkpoint when it lies elsewhere) is
    removed with ``overwrite`` and refused without it.
    """
    checkpoint = Path(requested).expanduser()
    if not resume:
        raise ResumeError(
            f"--resume_from_checkpoint {requested} and --no_resume contradict each other; drop one"
        )
    if not checkpoint.is_dir():
        raise ResumeError(
            f"--resume_from_checkpoint {requested}: no such checkpoint folder (medinjection train resumes from "
            "the last complete checkpoint in output_dir by itself; this option picks another one)"
        )
    if read_trainer_state(checkpoint) is None:
        raise ResumeError(
            f"--resume_from_checkpoint {requested}: no complete {TRAINER_STATE} (the trainer did not finish "
            "writing this checkpoint)"
        )
    check_settings(checkpoint, settings)
    inside = checkpoint.resolve().parent == layout.root.resolve()
    finished = layout.is_run() and layout.manifest_path.is_file()
    in_the_way = [
        c
        for c in complete_checkpoints(layout, remove_incomplete=True)
        if not inside or _step(c) > _step(checkpoint)
    ]
    if finished or in_the_way:
        what = [f"a finished run ({layout.manifest_path.name} and the adapter)"] if finished else []
        if in_the_way:
            kind = f"checkpoints after {checkpoint.name}" if inside else "checkpoints of another run"
            what.append(f"{kind} ({', '.join(c.name for c in in_the_way)})")
        if not overwrite:
            raise ResumeError(
                f"{layout.root} holds {' and '.join(what)}; pass --overwrite to remove them and continue "
                f"from {checkpoint}, or choose another output_dir"
            )
        logger.warning("--overwrite: removing %s from %s", " and ".join(what), layout.root)
        clear_run(layout, checkpoints=in_the_way)
    return checkpoint


def resume_point(
    layout: RunLayout,
    settings: dict[str, Any],
    resume: bool,
    overwrite: bool,
    requested: str | None = None,
) -> Path | None:
    """The checkpoint to resume from (None: start from scratch), after checking the folder's state.

    A finished run (adapter + manifest) is refused unless ``overwrite`` (then it is cleared); an
    unfinished one is resumed, or refused when ``resume`` is off unless ``overwrite``. A checkpoint
    without this run's settings (``trl sft``'s) is refused unless ``overwrite`` (then cleared).
    ``requested`` (``--resume_from_checkpoint``) names the checkpoint instead of the last one.
    """
    if requested:
        return requested_point(layout, requested, settings, resume, overwrite)
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
    if saved_settings(checkpoints[-1]) is None and overwrite:
        logger.warning("--overwrite: removing %s, not written by medinjection train", checkpoints[-1])
        clear_run(layout)
        return None
    check_settings(checkpoints[-1], settings)
    return checkpoints[-1]


class SettingsCallback(TrainerCallback, ExportableState):
    """Carries the run's settings into every checkpoint's ``trainer_state.json``, so that a resume can check them.

    transformers writes the ``state()`` of each stateful callback into ``trainer_state.json`` as it saves a
    checkpoint (``stateful_callbacks``), so the settings are written in the same file as the trainer's
    state, not after it.
    """

    def __init__(self, settings: dict[str, Any]):
        self.settings = _normalise(settings)

    def state(self) -> dict[str, Any]:
        return {"args": {"settings": self.settings}, "attributes": {}}
