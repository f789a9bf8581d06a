"""Rejected records are never lost: each goes to ``rejects/<step>/<rank>.jsonl`` with its reason.

``RecordFilter`` is the base of our filters: datatrove's ``BaseFilter`` counts forwarded and dropped
documents per reason; ``reject`` adds the step, reason, detail (and the id of a kept twin) to the
document so the exclusion writer keeps all of it.
"""

from __future__ import annotations

from abc import ABC

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.jsonl import JsonlWriter

from medinjection.core.schema import COLUMNS

REJECT_FIELDS = ("step", "reason", "detail", "kept_id")


def reject_adapter(_writer, doc: Document) -> dict:
    meta = doc.metadata
    row = {
        "id": doc.id,
        "source": meta.get("source", ""),
        "provenance": meta.get("provenance", ""),
        "split": meta.get("split", ""),
        "step": meta.get("reject_step", ""),
        "reason": meta.get("reject_reason", meta.get("filter_reason", "")),
        "detail": meta.get("reject_detail", ""),
        "kept_id": meta.get("kept_id", ""),
    }
    if "raw" in meta:
        row["raw"] = meta["raw"]
    row["record"] = {key: meta[key] for key in COLUMNS if key in meta and key != "id"}
    return row


def reject_writer(rejects_dir: str, step: str) -> JsonlWriter:
    return JsonlWriter(
        rejects_dir, output_filename=f"{step}/${{rank}}.jsonl", compression=None, adapter=reject_adapter
    )


def mark_rejected(doc: Document, step: str, reason: str, detail: str = "", kept_id: str = "") -> None:
    doc.metadata["reject_step"] = step
    doc.metadata["reject_reason"] = reason
    doc.metadata["reject_detail"] = detail
    if kept_id:
        doc.metadata["kept_id"] = kept_id


class RecordFilter(BaseFilter, ABC):
    """A filter whose drops are written to ``rejects/<step_name>/`` with reason and detail."""

    step_name: str = ""
    counts_records = True

    def __init__(self, rejects_dir: str | None = None, batch_size: int = 1):
        super().__init__(
            exclusion_writer=reject_writer(rejects_dir, self.step_name) if rejects_dir else None,
            batch_size=batch_size,
        )

    def reject(self, doc: Document, reason: str, detail: str = "", kept_id: str = "") -> tuple[bool, str]:
        mark_rejected(doc, self.step_name, reason, detail, kept_id)
        self.stat_update(f"source:{doc.metadata.get('source', '')}:dropped_{reason}")
        return False, reason
