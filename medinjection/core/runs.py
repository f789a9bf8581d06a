"""The one owner of a training run folder's layout (the model half's counterpart of the dataset layout).

A run folder is what ``medinjection train`` writes for one mix, and what ``evaluate``, ``report``
and ``publish adapter`` read::

    RUN_DIR/
      adapter_config.json, adapter_model.safetensors   the DoRA adapter (PEFT's files)
      manifest.json                                    the provenance manifest (data, config, versions)
      checkpoint-N/                                    trainer checkpoints (resume)
      eval/<benchmark>/summary.json                    scores of exactly these adapter files

Every reader goes through ``RunLayout``; nothing else globs a run folder. ``adapter_sha256`` is the
identity of what was scored and what is published: a summary whose hash differs from the files in
the folder scored other files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from medinjection.core import files
from medinjection.core.files import write_text_atomic

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
MANIFEST = "manifest.json"
EVAL_DIR = "eval"
SUMMARY = "summary.json"
PREDICTIONS = "predictions.parquet"


class RunError(ValueError):
    """A folder is not a run folder, or a run folder lacks what a step needs; the message says what."""


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def eval_dir(self) -> Path:
        return self.root / EVAL_DIR

    def adapter_paths(self) -> list[Path]:
        return [self.root / name for name in ADAPTER_FILES]

    def is_run(self) -> bool:
        return all(path.is_file() for path in self.adapter_paths())

    def require_adapter(self) -> None:
        missing = [p.name for p in self.adapter_paths() if not p.is_file()]
        if missing:
            raise RunError(f"{self.root}: not an adapter run folder (missing {', '.join(missing)})")

    def adapter_sha256(self) -> str:
        """sha256 over the adapter files (name and content), the identity of the scored artefact."""
        self.require_adapter()
        digest = hashlib.sha256()
        for path in self.adapter_paths():
            digest.update(path.name.encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def manifest(self) -> dict:
        if not self.manifest_path.is_file():
            raise RunError(f"{self.root}: no {MANIFEST} (train it with `medinjection train`)")
        return read_json(self.manifest_path)

    def summary_path(self, benchmark: str) -> Path:
        return self.eval_dir / benchmark / SUMMARY

    def summaries(self) -> dict[str, dict]:
        """Evaluation summaries written into the run folder, by benchmark."""
        found = {}
        for path in sorted(self.eval_dir.glob(f"*/{SUMMARY}")):
            found[path.parent.name] = read_json(path)
        return found

    def checkpoints(self) -> list[Path]:
        """Trainer checkpoints, oldest first."""
        found = [p for p in self.root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
        return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def read_json(path: Path) -> dict:
    """A JSON file of a run folder; a file that does not parse is an error naming it."""
    return files.read_json(path, RunError)


def find_runs(path: str | Path) -> list[RunLayout]:
    """``path`` itself when it is a run folder, else the run folders below it, at any depth (sorted).

    ``runs/`` holds ``runs/<mix>/`` for the demo and ``runs/<model>/<mix>/`` for the recipes; a run's
    ``checkpoint-N/`` folders are not runs. Two runs of the same name (the evaluation's model tag) are
    an error: point at the folder of one family.
    """
    path = Path(path)
    if RunLayout(path).is_run():
        return [RunLayout(path)]
    if not path.is_dir():
        raise RunError(f"{path}: no such folder")
    runs = sorted(
        (
            RunLayout(config.parent)
            for config in path.rglob(ADAPTER_FILES[0])
            if not any(part.startswith("checkpoint-") for part in config.parent.relative_to(path).parts)
            and RunLayout(config.parent).is_run()
        ),
        key=lambda run: run.root,
    )
    if not runs:
        raise RunError(f"{path}: neither a run folder nor a folder of run folders (no adapter_config.json)")
    names: dict[str, list[Path]] = {}
    for run in runs:
        names.setdefault(run.name, []).append(run.root)
    clashes = {name: roots for name, roots in names.items() if len(roots) > 1}
    if clashes:
        lines = [f"{name}: {', '.join(str(r) for r in roots)}" for name, roots in sorted(clashes.items())]
        raise RunError(
            f"{path}: several run folders share a name (the model tag of their scores):\n  "
            + "\n  ".join(lines)
            + "\npass the folder of one family, e.g. runs/qwen3-4b-instruct-2507"
        )
    return runs


def rewrite_adapter_config(run_dir: Path, hub_id: str) -> None:
    """Point ``adapter_config.json`` at the base model's Hub id (PEFT wrote the loading path)."""
    path = RunLayout(run_dir).adapter_paths()[0]
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    config["base_model_name_or_path"] = hub_id
    write_text_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
