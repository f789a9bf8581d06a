"""What every source adapter shares: where to read (a local file or folder, or a Hub id at a pinned
revision), how to name splits, and the mapping of one raw row to a schema record.

An adapter is one small class: its class attributes describe the source (for the dataset card),
``read_local`` yields raw rows from local files, ``read_hub`` from the Hub, and ``to_record`` maps a
raw row to a record or raises ``RecordError`` (a ``KeyError``/``TypeError``/``ValueError`` in the
mapping is reported as ``malformed_row``).
"""

from __future__ import annotations

import csv
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import orjson

from medinjection.core.config import SourceSpec
from medinjection.core.schema import RecordError, make_id, new_record

SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "dev": "validation",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "eval": "validation",
    "test": "test",
}


class SourceUnavailable(RuntimeError):
    """A declared source cannot be read: its file is missing or its Hub id is unreachable."""


@dataclass(frozen=True)
class RawRow:
    """A row as the source gives it, with where it came from (for error messages and rejects)."""

    row: dict[str, Any]
    split: str  # our split name ("train", "validation", "test") or "" when the source has none
    location: str  # file (and line/index) or Hub id, for messages


def split_from_name(name: str) -> str:
    """Our split name for a file stem or a Hub split name, or "" when it names none."""
    lowered = name.lower()
    for token in sorted(SPLIT_NAMES, key=len, reverse=True):
        for part in lowered.replace("-", "_").replace(".", "_").split("_"):
            if part == token:
                return SPLIT_NAMES[token]
    return ""


def read_table(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a local .json (list or mapping), .jsonl, .csv (with header) or .parquet file."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with path.open(encoding="utf-8") as handle:
            for index, line in enumerate(handle):
                if line.strip():
                    yield index, _json_line(line, path, index)
    elif suffix == ".json":
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            # A ".json" file holding JSON Lines, which `datasets` also accepts under that name.
            for index, line in enumerate(text.splitlines()):
                if line.strip():
                    yield index, _json_line(line, path, index)
            return
        if isinstance(data, dict) and not all(isinstance(v, dict) for v in data.values()):
            data = [data]  # one row (e.g. a one-line JSON Lines file), not a mapping id -> row
        items = data.items() if isinstance(data, dict) else enumerate(data)
        for index, (key, value) in enumerate(items):
            row = dict(value) if isinstance(value, dict) else {"value": value}
            row.setdefault("_key", str(key))
            yield index, row
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            for index, row in enumerate(csv.DictReader(handle)):
                yield index, row
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for index, row in enumerate(pq.read_table(path).to_pylist()):
            yield index, row
    else:
        raise SourceUnavailable(
            f"{path}: unsupported file type {suffix!r} (use .json, .jsonl, .csv or .parquet)"
        )


def _json_line(line: str, path: Path, index: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        return {"_malformed": f"{path}:{index + 1}: not valid JSON ({err.msg})"}
    return value if isinstance(value, dict) else {"_malformed": f"{path}:{index + 1}: not a JSON object"}


class SourceAdapter(ABC):
    """Maps one source's rows to MedInjection-FR records."""

    name: ClassVar[str]  # registry key and the `source` column
    origin: ClassVar[str]  # the `origin` label, as in the released MedInjection-FR
    provenance: ClassVar[str]  # native | translated | synthetic (the spec may override it)
    language: ClassVar[str] = "fr"  # language of the source text
    license: ClassVar[str]
    homepage: ClassVar[str]
    citation: ClassVar[str] = ""
    hub_id: ClassVar[str | None] = None  # documented Hub id, when the source is on the Hub
    hub_configs: ClassVar[tuple[str, ...]] = ()
    # Adapter settings a spec may give under `options:` (name -> what it does); others are refused.
    option_names: ClassVar[dict[str, str]] = {}
    file_patterns: ClassVar[tuple[str, ...]] = ("*.json", "*.jsonl", "*.csv", "*.parquet")
    id_field: ClassVar[str | None] = None  # the source's own id column, when it has one

    def __init__(self, spec: SourceSpec, base_dir: Path | None = None):
        self.spec = spec
        self.base_dir = base_dir or Path(".")
        self.provenance_value = spec.provenance or self.provenance
        unknown = sorted(set(spec.options) - set(self.option_names))
        if unknown:
            from medinjection.core.config import ConfigError

            raise ConfigError(
                f"source {self.name!r}: unknown option(s) {unknown}; allowed: {sorted(self.option_names) or 'none'}"
            )

    # ---- where to read -------------------------------------------------------------------------
    @property
    def local_path(self) -> Path | None:
        if not self.spec.path:
            return None
        path = Path(self.spec.path).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def check_available(self) -> None:
        """Fail fast, naming the source, when its file or Hub id cannot be reached."""
        if self.local_path is not None:
            if not self.local_path.exists():
                raise SourceUnavailable(f"source {self.name!r}: no file or folder at {self.local_path}")
            if self.local_path.is_dir() and not self.local_files():
                raise SourceUnavailable(
                    f"source {self.name!r}: no {'/'.join(self.file_patterns)} file in {self.local_path}"
                )
            return
        hub_id = self.spec.hub_id or self.hub_id
        if not hub_id:
            raise SourceUnavailable(f"source {self.name!r}: give a path (it has no Hub id)")
        from huggingface_hub import HfApi

        try:
            HfApi().dataset_info(hub_id, revision=self.spec.revision)
        except Exception as err:  # offline, unknown repo, bad revision, gated: all fail the same way
            raise SourceUnavailable(
                f"source {self.name!r}: Hub dataset {hub_id!r} at revision {self.spec.revision!r} "
                f"is unreachable ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from err

    def local_files(self) -> list[Path]:
        path = self.local_path
        if path is None:
            return []
        if path.is_file():
            return [path]
        return self.files_in(path)

    def files_in(self, folder: Path) -> list[Path]:
        """The files under ``folder`` that ``file_patterns`` match, sorted."""
        files = {f for pattern in self.file_patterns for f in folder.glob(pattern)}
        return sorted(f for f in files if f.is_file())

    def iter_raw(self) -> Iterator[RawRow]:
        """The source's rows; the n-th repeat of an identical row is marked ``_repeat = n`` so that it
        gets an id of its own (rows with the same ``id_field`` value count as repeats when the adapter
        names one, identical rows otherwise; every task reads the whole source in the same order, so the numbering
        is the same everywhere) and exact dedup rejects it as a duplicate of the first."""
        rows = self.read_local() if self.local_path is not None else self.read_hub()
        seen: dict[bytes, int] = {}
        for count, raw in enumerate(rows):
            if self.spec.limit is not None and count >= self.spec.limit:
                return
            key = self.repeat_key(raw.row)
            repeat = seen.get(key, 0)
            seen[key] = repeat + 1
            yield RawRow({**raw.row, "_repeat": repeat}, raw.split, raw.location) if repeat else raw

    def repeat_key(self, row: dict[str, Any]) -> bytes:
        if self.id_field and row.get(self.id_field) is not None:
            return str(row[self.id_field]).encode()
        return hashlib.blake2b(
            orjson.dumps(row, option=orjson.OPT_SORT_KEYS, default=str), digest_size=12
        ).digest()

    def read_local(self) -> Iterator[RawRow]:
        for path in self.local_files():
            split = split_from_name(path.stem)
            for index, row in read_table(path):
                yield RawRow(row, split, f"{path}:{index}")

    def read_hub(self) -> Iterator[RawRow]:
        import datasets

        hub_id = self.spec.hub_id or self.hub_id
        configs = [self.spec.hub_config] if self.spec.hub_config else list(self.hub_configs) or [None]
        for config in configs:
            loaded = datasets.load_dataset(hub_id, config, revision=self.spec.revision)
            for split_name, dataset in loaded.items():
                split = self.hub_split(split_name)
                for index, row in enumerate(dataset):
                    row = dict(row)
                    if config:
                        row.setdefault("_config", config)
                    yield RawRow(
                        row, split, f"{hub_id}@{self.spec.revision}:{config or ''}:{split_name}:{index}"
                    )

    def hub_split(self, name: str) -> str:
        """Our split for a Hub split name ("" when the Hub split is not a real split of the source)."""
        return split_from_name(name)

    # ---- mapping -------------------------------------------------------------------------------
    @abstractmethod
    def to_record(self, raw: RawRow) -> dict[str, Any]:
        """Map a raw row to a record (``self.record(...)``), or raise ``RecordError``."""

    def record(self, source_id: str, split: str, **fields: Any) -> dict[str, Any]:
        fields.setdefault("origin", self.origin)  # a release row carries its own origin
        return new_record(
            source=self.name,
            source_id=str(source_id),
            source_split=split,
            provenance=self.provenance_value,
            **fields,
        )

    def map_row(self, raw: RawRow) -> dict[str, Any]:
        """``to_record`` with every mapping failure turned into a ``RecordError`` naming the row."""
        if "_malformed" in raw.row:
            raise RecordError("malformed_row", raw.row["_malformed"])
        try:
            record = self.to_record(raw)
        except RecordError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            raise RecordError("malformed_row", f"{raw.location}: {type(err).__name__}: {err}") from err
        repeat = raw.row.get("_repeat")
        if repeat and not record["source_id"].endswith(f"#{repeat}"):
            record["source_id"] = f"{record['source_id']}#{repeat}"
            record["id"] = make_id(record["source"], record["source_id"])
        return record

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """What the dataset card says about this source."""
        return {
            "name": cls.name,
            "origin": cls.origin,
            "provenance": cls.provenance,
            "language": cls.language,
            "license": cls.license,
            "homepage": cls.homepage,
            "hub_id": cls.hub_id,
            "citation": cls.citation,
        }


def lettered_options(texts: list[str] | tuple[str, ...]) -> list[dict[str, str]]:
    from medinjection.core.schema import LETTERS

    return [{"letter": LETTERS[i], "text": str(text)} for i, text in enumerate(texts)]
