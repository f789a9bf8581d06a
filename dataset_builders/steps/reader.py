"""Reads the declared sources through their adapters and yields one datatrove ``Document`` per record.

Rows are spread over the tasks by their position in the source list (row ``i`` goes to rank
``i % world_size``), so every task reads the same sources and maps its own share. A row that the
adapter cannot map is rejected (``malformed_row``) with the raw row kept; a row with a text field
longer than ``filters.max_field_chars`` is rejected before any work on it (``field_too_long``, the
raw row kept with that field cut). Each record also gets its output split here: the source's own
split when it has one, else a deterministic split by hashed id.

What a complete reading of each source found worth telling (a file without rows, the release rows
taken and left out per origin: ``SourceAdapter.reading_report``) goes to ``_build/read/notes.json``
(task 0, which reads every row like the others); ``finalize`` puts it in ``stats.json``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from tqdm import tqdm

from medinjection.core.config import SourceSpec, SplitConfig
from medinjection.core.files import read_json, write_json
from medinjection.core.schema import RecordError, make_id
from medinjection.dataset_builders.sources import get_adapter
from medinjection.dataset_builders.steps.rejects import mark_rejected, reject_writer


def hashed_split(record_id: str, split: SplitConfig, seed: int) -> str:
    """A deterministic split for a record of a source without splits."""
    value = int(hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()[:12], 16) / 16**12
    if value < split.test:
        return "test"
    if value < split.test + split.validation:
        return "validation"
    return "train"


NOTES_FILE = "notes.json"
CLIP = 1_000  # characters of an over-long field kept in its reject


def read_notes(folder: str | Path) -> list[dict[str, Any]]:
    """The per-source reading reports task 0 wrote (empty when it wrote none)."""
    notes = read_json(Path(folder) / NOTES_FILE, missing_ok=True, expect=list)
    return notes or []


def longest_field(value: Any, limit: int, where: str = "") -> tuple[str, int] | None:
    """(name, length) of the first text in ``value`` (a raw row, searched through its lists and
    objects) longer than ``limit`` characters, or None."""
    if isinstance(value, str):
        return (where or "value", len(value)) if len(value) > limit else None
    if isinstance(value, dict):
        children = ((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
    elif isinstance(value, list | tuple):
        children = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for name, item in children:
        found = longest_field(item, limit, name)
        if found:
            return found
    return None


def clip(value: Any, limit: int) -> Any:
    """``value`` with every text longer than ``limit`` cut to ``CLIP`` characters and marked so."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:CLIP]}… [{len(value) - CLIP:,} characters cut]"
    if isinstance(value, dict):
        return {key: clip(item, limit) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clip(item, limit) for item in value]
    return value


class SourceReader(PipelineStep):
    name = "read"
    counts_records = True
    type = "📖 - READER"

    def __init__(
        self,
        sources: list[SourceSpec],
        base_dir: str,
        split: SplitConfig,
        seed: int = 0,
        rejects_dir: str | None = None,
        progress: bool = True,
        max_field_chars: int | None = None,
        notes_dir: str | None = None,
    ):
        super().__init__()
        self.sources = sources
        self.base_dir = base_dir
        self.split = split
        self.seed = seed
        self.rejects_dir = rejects_dir
        self.progress = progress
        self.max_field_chars = max_field_chars
        self.notes_dir = notes_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        writer = reject_writer(self.rejects_dir, self.name) if self.rejects_dir else None
        reports = []
        try:
            for spec in self.sources:
                adapter = get_adapter(spec.adapter)(spec, Path(self.base_dir))
                rows = adapter.iter_raw()
                if self.progress:
                    rows = tqdm(
                        rows,
                        desc=f"read {spec.adapter} [task {rank}]",
                        unit=" rows",
                        mininterval=2,
                        leave=False,
                    )
                for index, raw in enumerate(rows):
                    if index % world_size != rank:
                        continue
                    self.stat_update("total")
                    self.stat_update(f"source:{adapter.name}:total")
                    doc = self._to_document(adapter, raw, index)
                    if "reject_reason" in doc.metadata:
                        self.stat_update("dropped")
                        self.stat_update(f"dropped_{doc.metadata['reject_reason']}")
                        self.stat_update(f"source:{adapter.name}:dropped_{doc.metadata['reject_reason']}")
                        if writer:
                            writer.write(doc, rank)
                        continue
                    self.stat_update("forwarded")
                    yield doc
                report = adapter.reading_report()
                if report.get("notes") or len(report) > 1:
                    reports.append(
                        {
                            "source": adapter.name,
                            "hub_id": spec.hub_id or "",
                            "path": spec.path or "",
                            "provenance": adapter.provenance_value,
                            **report,
                        }
                    )
        finally:
            if writer:
                writer.close()
        if rank == 0 and self.notes_dir:
            write_json(Path(self.notes_dir) / NOTES_FILE, reports)

    def _to_document(self, adapter, raw, index: int) -> Document:
        limit = self.max_field_chars
        long = longest_field(raw.row, limit) if limit else None
        try:
            if long:
                raise RecordError(
                    "field_too_long",
                    f"{raw.location}: field {long[0]!r} has {long[1]:,} characters (filters.max_field_chars: {limit:,})",
                )
            record = adapter.map_row(raw)
        except RecordError as err:
            source_id = (
                str(raw.row.get("id", raw.row.get("_key", index)))
                if isinstance(raw.row, dict)
                else str(index)
            )
            doc = Document(text="", id=make_id(adapter.name, f"{raw.location}#{source_id}"))
            kept_raw = clip(raw.row, limit) if long else raw.row
            doc.metadata.update(
                source=adapter.name, provenance=adapter.provenance_value, raw=_jsonable(kept_raw)
            )
            detail = err.detail if raw.location in err.detail else f"{raw.location}: {err.detail}"
            mark_rejected(doc, self.name, err.reason, detail)
            return doc
        record["split"] = record["source_split"] or hashed_split(record["id"], self.split, self.seed)
        return Document(text="", id=record["id"], metadata=record)


def _jsonable(row):
    import json

    return json.loads(json.dumps(row, default=str))
