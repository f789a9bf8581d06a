"""Writes kept records as parquet shards in the Hub layout: ``data/<config>/<split>-<rank>.parquet``,
with the schema's ``datasets.Features`` embedded so ``load_dataset`` restores the exact types.
The chat ``messages`` are added here, from the final (normalised) record, in the chat format
version ``chat_version`` (``medinjection/prompts/chat/<version>.yaml``), which every shard's footer
records (``layout.shard_schema``): the mixes manifest and the cards read it back from there."""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.writers.parquet import ParquetWriter

from medinjection.core.chat import DEFAULT_CHAT_VERSION, load_chat_template, to_messages
from medinjection.core.layout import WRITER_FILENAME, shard_schema
from medinjection.core.schema import COLUMNS


def record_adapter(_writer, doc: Document, chat_version: str = DEFAULT_CHAT_VERSION) -> dict:
    record = {key: doc.metadata.get(key) for key in COLUMNS}
    record["id"] = doc.id
    record["messages"] = to_messages(record, chat_version)
    return record


class HubParquetWriter(ParquetWriter):
    name = "hub_parquet"

    def __init__(self, output_folder: str, batch_size: int = 1000, chat_version: str = DEFAULT_CHAT_VERSION):
        load_chat_template(chat_version)  # an unknown version fails here, before any record is written
        self.chat_version = chat_version
        super().__init__(
            output_folder,
            output_filename=WRITER_FILENAME,
            schema=shard_schema(chat_version),
            batch_size=batch_size,
            max_file_size=-1,
        )

    def _default_adapter(self, document: Document) -> dict:
        return record_adapter(self, document, self.chat_version)
