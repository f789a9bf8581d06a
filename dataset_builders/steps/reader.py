"""Reads the declared sources through their adapters and yields one datatrove ``Document`` per record.

Rows are spread over the tasks by their position in the source list (row ``i`` goes to rank
``i % world_size``), so every task reads the same sources and maps its own share. A row that the
adapter cannot map is rejected (``malformed_row``) with the raw row kept. Each record also gets its
output split here: the source's own split when it has one, else a deterministic split by hashed id.
"""

from __future__ import annotations

import hashlib

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from tqdm import tqdm

from medinjection.core.config import SourceSpec, SplitConfig
from medinjection.core.schema import RecordError
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
    ):
        super().__init__()
        self.sources = sources
        self.base_dir = base_dir
        self.split = split
        self.seed = seed
        self.rejects_dir = rejects_dir
        self.progress = progress

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from pathlib import Path

        if data:
            yield from data
        writer = reject_writer(self.rejects_dir, self.name) if self.rejects_dir else None
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
        finally:
            if writer:
                writer.close()

    def _to_document(self, adapter, raw, index: int) -> Document:
        try:
            record = adapter.map_row(raw)
        except RecordError as err:
            source_id = (
                str(raw.row.get("id", raw.row.get("_key", index)))
                if isinstance(raw.row, dict)
                else str(index)
            )
            from medinjection.core.schema import make_id

            doc = Document(text="", id=make_id(adapter.name, f"{raw.location}#{source_id}"))
            doc.metadata.update(
                source=adapter.name, provenance=adapter.provenance_value, raw=_jsonable(raw.row)
            )
            detail = err.detail if raw.location in err.detail else f"{raw.location}: {err.detail}"
            mark_rejected(doc, self.name, err.reason, detail)
            return doc
        record["split"] = record["source_split"] or hashed_split(record["id"], self.split, self.seed)
        return Document(text="", id=record["id"], metadata=record)


def _jsonable(row):
    import json

    return json.loads(json.dumps(row, default=str))
