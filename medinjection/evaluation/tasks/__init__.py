"""Evaluation tasks are data files: ``medinjection/evaluation/tasks/<name>.yaml`` (lighteval / lm-eval
call an evaluation set a *task*; a speed script under ``benchmarks/`` is a *benchmark*).

A task names where its items are and which of them count:

- ``source:`` a source adapter of ``medinjection.dataset_builders.sources`` with a local ``path`` or
  a Hub id at a pinned ``revision`` (the build's ``SourceSpec``: same keys, same checks), or
- ``dataset:`` a built MedInjection-FR folder (``path``) or Hub repo (``hub_id`` + ``revision``) and a
  ``config`` (``native``, ``translated``, ``synthetic``, a mix);

plus the ``split`` (``test``, ``validation``, ``train``, or ``all`` for sources without splits), the
record ``types`` scored and the ``chat_version`` prompts are made with. A relative ``path`` resolves
against ``data_dir`` when given, else against the YAML's folder for a user's file and the current
folder for a bundled one. Unknown keys and unknown names fail with the allowed ones.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError, model_validator

from medinjection.core.config import MUTABLE_REVISIONS, SourceSpec, StrictModel


class TaskError(ValueError):
    """An unknown task name, or a task file that does not validate; the message says which."""


class DatasetRef(StrictModel):
    """A built MedInjection-FR dataset: a local folder or a Hub repo at a pinned revision, and a config."""

    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    config: str

    @model_validator(mode="after")
    def _one_location(self) -> DatasetRef:
        if bool(self.path) == bool(self.hub_id):
            raise ValueError("dataset: give exactly one of path or hub_id")
        if self.hub_id and (not self.revision or self.revision in MUTABLE_REVISIONS):
            raise ValueError(f"dataset {self.hub_id!r}: pin a revision (a commit sha or tag, not a branch)")
        return self


class TaskSpec(StrictModel):
    name: str
    description: str = ""
    language: Literal["fr", "en"] = "fr"
    source: SourceSpec | None = None
    dataset: DatasetRef | None = None
    split: Literal["train", "validation", "test", "all"] = "test"
    types: list[Literal["MCQ", "MCQU", "OEQ"]] = ["MCQ", "MCQU", "OEQ"]
    chat_version: str = "v1"
    limit: int | None = None
    """Score only the first N items (a smoke run; the summary says so)."""
    notes: str = ""

    @model_validator(mode="after")
    def _one_input(self) -> TaskSpec:
        if (self.source is None) == (self.dataset is None):
            raise ValueError(f"task {self.name!r}: give exactly one of `source:` or `dataset:`")
        return self

    def resolved(self, base_dir: Path) -> TaskSpec:
        """The spec with a relative ``path`` made absolute against ``base_dir``."""
        update: dict[str, Any] = {}
        for key in ("source", "dataset"):
            part = getattr(self, key)
            if part is not None and part.path and not Path(part.path).expanduser().is_absolute():
                update[key] = part.model_copy(update={"path": str((base_dir / part.path).resolve())})
        return self.model_copy(update=update)


def bundled_dir() -> Path:
    """The folder of the bundled task files (this package)."""
    return Path(str(resources.files(__name__)))


def known_tasks() -> list[str]:
    """Names of the bundled tasks."""
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def task_path(name_or_path: str) -> tuple[Path, bool]:
    """The YAML file of a bundled name or a user's path, and whether it is bundled."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise TaskError(f"{candidate}: no such task file")
        return candidate, False
    bundled = bundled_dir() / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise TaskError(
            f"unknown task {name_or_path!r}; known: {known_tasks()} (or give the path of a task YAML)"
        )
    return bundled, True


def parse_task(data: Any, where: str) -> TaskSpec:
    if not isinstance(data, dict):
        raise TaskError(f"{where}: a task file is a mapping (name, source or dataset, split, types)")
    try:
        return TaskSpec(**data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        )
        allowed = sorted(TaskSpec.model_fields)
        raise TaskError(f"{where}: {problems} (allowed keys: {allowed})") from None


def load_task(name_or_path: str, data_dir: str | Path | None = None) -> TaskSpec:
    """A bundled task by name, or a user's task YAML, with its paths resolved."""
    path, bundled = task_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise TaskError(f"{path}: not valid YAML ({err})") from None
    spec = parse_task(data, str(path))
    base = Path(data_dir) if data_dir is not None else (Path.cwd() if bundled else path.parent)
    return spec.resolved(base)


def dataset_task(
    dataset: str,
    config: str,
    split: str = "test",
    revision: str | None = None,
    name: str | None = None,
    types: list[str] | None = None,
) -> TaskSpec:
    """A task over one config and split of a built folder (a path) or a Hub repo (with ``revision``)."""
    local = Path(dataset).expanduser()
    ref = {"path": str(local.resolve())} if local.exists() or revision is None else {"hub_id": dataset}
    if revision is not None and "hub_id" in ref:
        ref["revision"] = revision
    data = {
        "name": name or f"{config}-{split}",
        "dataset": {**ref, "config": config},
        "split": split,
        "description": f"{dataset} config {config}, split {split}",
    }
    if types:
        data["types"] = types
    return parse_task(data, f"--dataset_name {dataset} --dataset_config {config} --dataset_split {split}")
