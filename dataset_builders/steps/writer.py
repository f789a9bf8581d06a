"""Writes kept records as parquet shards in the Hub layout: ``data/<config>/<split>-<rank>.parquet``,
with the schema's ``datasets.Features`` embedded so ``load_dataset`` restores the exact types.
The chat ``messages`` are added here, from the final (normalised) record."""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.writers.parquet import ParquetWriter

from medinjection.chat import to_messages
from medinjection.schema import COLUMNS, FEATURES


def record_adapter(_writer, doc: Document) -> dict:
    record = {key: doc.metadata.get(key) for key in COLUMNS}
    record["id"] = doc.id
    record["messages"] = to_messages(record)
    return record


class HubParquetWriter(ParquetWriter):
    name = "hub_parquet"

    def __init__(self, output_folder: str, batch_size: int = 1000):
        super().__init__(
            output_folder,
            output_filename="data/${provenance}/${split}-${rank}.parquet",
            adapter=record_adapter,
            schema=FEATURES.arrow_schema,
            batch_size=batch_size,
            max_file_size=-1,
        )
