"""Our own generated records (``_build/generated/<task>/<source>/*.jsonl``, written by the translate
and synthesize stages) read back by the ``prepare`` stage. Each record keeps the source it was made
from: an instance takes that name (``options.source``), so rows are counted under it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from medinjection.core.schema import COLUMNS, RecordError
from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter


class GeneratedRecords(SourceAdapter):
    name = "generated"
    origin = ""
    provenance = "translated"
    license = "mit"
    homepage = ""
    file_patterns = ("*.jsonl",)
    option_names = {"source": "the source the records were made from (their `source` column)"}
    warns_empty_files = False  # a generation task that accepted no row writes an empty file

    def __init__(self, spec, base_dir=None):
        super().__init__(spec, base_dir)
        if spec.options.get("source"):
            self.name = str(spec.options["source"])

    def check_available(self) -> None:
        return None  # the folder exists only once the generation stage has accepted a row

    def read_local(self) -> Iterator[RawRow]:
        if self.local_path is None or not self.local_path.exists():
            return iter(())
        return super().read_local()

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        missing = [key for key in COLUMNS if key not in row]
        if missing:
            raise RecordError("malformed_row", f"{raw.location}: generated record lacks {missing}")
        return {key: row[key] for key in COLUMNS}
