"""Benchmarks are data files: ``trl_configs/benchmarks/<name>.yaml`` (lm-eval / lighteval style).

A benchmark names where its items are and which of them count:

- ``source:`` a source adapter of ``medinjection.dataset_builders.sources`` with a local ``path`` or
  a Hub id at a pinned ``revision`` (the build's ``SourceSpec``: same keys, same checks), or
- ``dataset:`` a built MedInjection-FR folder (``path``) or Hub repo (``hub_id`` + ``revision``) and a
  ``config`` (``native``, ``translated``, ``synthetic``, a mix);

plus the ``split`` (``test``, ``validation``, ``train``, or ``all`` for sources without splits), the
record ``types`` scored and the ``chat_version`` prompts are made with. A relative ``path`` resolves
against ``--data-dir`` when given, else against the YAML's folder for a user's file and the current
folder for a bundled one. Unknown keys and unknown names fail with the allowed ones.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError, model_validator

from medinjection.core.config import MUTABLE_REVISIONS, SourceSpec, StrictModel

BENCHMARK_DIR = "benchmarks"


class BenchmarkError(ValueError):
    """An unknown benchmark name, or a benchmark file that does not validate; the message says which."""


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


class BenchmarkSpec(StrictModel):
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
    def _one_input(self) -> BenchmarkSpec:
        if (self.source is None) == (self.dataset is None):
            raise ValueError(f"benchmark {self.name!r}: give exactly one of `source:` or `dataset:`")
        return self

    def resolved(self, base_dir: Path) -> BenchmarkSpec:
        """The spec with a relative ``path`` made absolute against ``base_dir``."""
        update: dict[str, Any] = {}
        for key in ("source", "dataset"):
            part = getattr(self, key)
            if part is not None and part.path and not Path(part.path).expanduser().is_absolute():
                update[key] = part.model_copy(update={"path": str((base_dir / part.path).resolve())})
        return self.model_copy(update=update)


def bundled_dir() -> Path:
    return Path(str(resources.files("medinjection.trl_configs") / BENCHMARK_DIR))


def known_benchmarks() -> list[str]:
    """Names of the bundled benchmarks."""
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def benchmark_path(name_or_path: str) -> tuple[Path, bool]:
    """The YAML file of a bundled name or a user's path, and whether it is bundled."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise BenchmarkError(f"{candidate}: no such benchmark file")
        return candidate, False
    bundled = bundled_dir() / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise BenchmarkError(
            f"unknown benchmark {name_or_path!r}; known: {known_benchmarks()} (or give the path of a benchmark YAML)"
        )
    return bundled, True


def parse_benchmark(data: Any, where: str) -> BenchmarkSpec:
    if not isinstance(data, dict):
        raise BenchmarkError(
            f"{where}: a benchmark file is a mapping (name, source or dataset, split, types)"
        )
    try:
        return BenchmarkSpec(**data)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        )
        allowed = sorted(BenchmarkSpec.model_fields)
        raise BenchmarkError(f"{where}: {problems} (allowed keys: {allowed})") from None


def load_benchmark(name_or_path: str, data_dir: str | Path | None = None) -> BenchmarkSpec:
    """A bundled benchmark by name, or a user's benchmark YAML, with its paths resolved."""
    path, bundled = benchmark_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise BenchmarkError(f"{path}: not valid YAML ({err})") from None
    spec = parse_benchmark(data, str(path))
    base = Path(data_dir) if data_dir is not None else (Path.cwd() if bundled else path.parent)
    return spec.resolved(base)


def dataset_benchmark(
    dataset: str,
    config: str,
    split: str = "test",
    revision: str | None = None,
    name: str | None = None,
    types: list[str] | None = None,
) -> BenchmarkSpec:
    """A benchmark over one config and split of a built folder (a path) or a Hub repo (with ``revision``)."""
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
    return parse_benchmark(data, f"--dataset {dataset} --config {config} --split {split}")
