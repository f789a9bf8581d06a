"""What every source adapter shares: where to read (a local file or folder, or a Hub id at a pinned
revision), how to name splits, and the mapping of one raw row to a schema record.

An adapter is one small class: its class attributes describe the source (for the dataset card),
``read_local`` yields raw rows from local files, ``read_hub`` from the Hub, and ``to_record`` maps a
raw row to a record or raises ``RecordError`` (a ``KeyError``/``TypeError``/``ValueError`` in the
mapping is reported as ``malformed_row``).

A file that cannot be read as rows at all (not UTF-8, not JSON, a JSON value of another shape than
rows) stops the build with ``SourceFormatError``, naming the file and what was expected; a file
without any row is a warning of the build (``SourceAdapter.notes``), not an error.
"""

from __future__ import annotations

import csv
import hashlib
import io
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


class SourceFormatError(SourceUnavailable):
    """A source file that cannot be read as rows (not UTF-8, not JSON, a JSON value that is not rows);
    the message names the file and what was expected."""


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


ROWS_EXPECTED = (
    "expected a JSON list of rows (objects), an object mapping ids to rows, or JSON Lines (one row "
    "object per line)"
)


def read_text(path: Path) -> str:
    """The text of a source file; a file that is not UTF-8 is a ``SourceFormatError`` naming the
    file, the first bad byte and its line (a UTF-8 byte order mark is accepted)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise SourceFormatError(
            f"{path}: not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}, line {line}); "
            "save the file as UTF-8"
        ) from None


def read_table(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a local .json (list or mapping), .jsonl, .csv (with header) or .parquet file.

    Raises ``SourceFormatError`` (naming the file and what was expected) for a file that is not
    UTF-8, a .json file that is neither JSON nor JSON Lines, or a JSON value that is not rows; an
    item of a list that is not an object is one row marked malformed (rejected with its index).
    """
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _json_lines(read_text(path), path)
    elif suffix == ".json":
        text = read_text(path)
        if not text.strip():
            return
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            first = next(line for line in text.split("\n") if line.strip())
            if not _is_json_object(first):
                raise SourceFormatError(
                    f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}) "
                    "and not JSON Lines; " + ROWS_EXPECTED
                ) from None
            # A ".json" file holding JSON Lines, which `datasets` also accepts under that name.
            yield from _json_lines(text, path)
            return
        if isinstance(data, dict) and "\n" not in text.strip() and not _rows_inside(data):
            if data and not all(isinstance(value, dict) for value in data.values()):
                yield 0, data  # a one-line JSON Lines file (one row), which `datasets` reads too
                return
        yield from _json_rows(data, path)
    elif suffix == ".csv":
        for index, row in enumerate(csv.DictReader(io.StringIO(read_text(path), newline=""))):
            yield index, row
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as err:
            raise SourceFormatError(f"{path}: not a readable Parquet file ({err})") from None
        for index, row in enumerate(table.to_pylist()):
            yield index, row
    else:
        raise SourceUnavailable(
            f"{path}: unsupported file type {suffix!r} (use .json, .jsonl, .csv or .parquet)"
        )


def _json_rows(data: Any, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of a parsed .json file: a list of objects, or an object mapping ids to objects."""
    if isinstance(data, dict):
        if not all(isinstance(value, dict) for value in data.values()):
            raise SourceFormatError(f"{path}: {_describe_object(data)}, not rows; {ROWS_EXPECTED}")
        items = data.items()
    elif isinstance(data, list):
        if data and not any(isinstance(value, dict) for value in data):
            raise SourceFormatError(
                f"{path}: a JSON list of {len(data):,} {_kinds(data)} values, not rows; {ROWS_EXPECTED}"
            )
        items = enumerate(data)
    else:
        raise SourceFormatError(f"{path}: a JSON {type(data).__name__}, not rows; {ROWS_EXPECTED}")
    for index, (key, value) in enumerate(items):
        if isinstance(value, dict):
            row = dict(value)
            row.setdefault("_key", str(key))
        else:
            row = {
                "_malformed": f"{path}:{index}: a JSON {type(value).__name__} where a row (an object) was expected"
            }
        yield index, row


def _rows_inside(data: dict) -> list[tuple[str, int]]:
    """(key, count) of the values of ``data`` that look like a list of rows (``{"data": [rows]}``): at
    least two objects with the same three or more keys. A row's own list of objects (options as
    ``{letter, text}``, FrBMedQA's one-key candidates) does not."""
    found = []
    for key, value in data.items():
        if (
            isinstance(value, list)
            and len(value) >= 2
            and all(isinstance(item, dict) for item in value)
            and len(value[0]) >= 3
            and all(item.keys() == value[0].keys() for item in value)
        ):
            found.append((str(key), len(value)))
    return found


def _describe_object(data: dict) -> str:
    """What a top-level JSON object holds, and the hint for the common wrapper ``{"data": [rows]}``."""
    keys = list(data)
    text = f"a JSON object with {len(keys)} key(s) {keys[:5]}{' …' if len(keys) > 5 else ''}"
    wrapped = _rows_inside(data)
    if wrapped:
        key, count = wrapped[0]
        text += f" (its key {key!r} holds a list of {count:,} rows: give that list as the file's content)"
    return text


def _kinds(values: list) -> str:
    return "/".join(sorted({type(value).__name__ for value in values}))


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _json_lines(text: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    # split on "\n" only: str.splitlines would also cut at U+2028 inside a JSON string
    for index, line in enumerate(text.split("\n")):
        if line.strip():
            yield index, _json_line(line, path, index)


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
    # A republication of other sources' items (the MedInjection-FR release): when the same item is also
    # read from its own source, deduplication keeps that copy (``dedup.second_hand_sources``).
    republished: ClassVar[bool] = False
    # Whether a file without any row is a warning of the build (our own generated files may be empty).
    warns_empty_files: ClassVar[bool] = True

    def __init__(self, spec: SourceSpec, base_dir: Path | None = None):
        self.spec = spec
        self.base_dir = base_dir or Path(".")
        self.provenance_value = spec.provenance or self.provenance
        # What a reading of the source found worth telling (a file without rows), for the build summary.
        self.notes: list[str] = []
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
            for path in self.local_files():  # a file that is not rows stops the build before any work
                self.check_file(path)
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

    def reading_report(self) -> dict[str, Any]:
        """What the last complete reading found worth telling: ``notes`` (warnings of the build)."""
        return {"notes": list(self.notes)}

    def check_file(self, path: Path) -> None:
        """Raise ``SourceFormatError`` when ``path`` cannot be read as rows (it is read once)."""
        for _ in read_table(path):
            pass

    def rows_of(self, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        """``read_table(path)``, with a note when the file holds no row."""
        count = 0
        for count, item in enumerate(read_table(path), 1):  # noqa: B007 - the count is read after the loop
            yield item
        if not count and self.warns_empty_files:
            self.notes.append(f"source {self.name!r}: {path} holds no row (an empty file?)")

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
        self.notes.clear()
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
            for index, row in self.rows_of(path):
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
    def origin_license(cls, origin: str) -> str:
        """The licence of this adapter's rows of ``origin`` (a republication knows each origin's own)."""
        return cls.license

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
