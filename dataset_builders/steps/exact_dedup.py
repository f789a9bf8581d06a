"""Exact deduplication on the normalised context, question and options.

Three steps. ``ExactDedupKeys`` (last step of the parallel prepare stage) writes one short line per
record: its key (a hash of the normalised context, question and options), provenance, split, id and
answer. ``ExactDedupIndex`` runs as a single task over those key files and decides, for
each group of identical items, which copy is kept (``keep_priority``): the one of the most trusted
provenance (the config's ``provenance_priority``), then a copy read from the item's own source before
one of a republication (the MedInjection-FR release: ``SourceAdapter.republished``), then the one in
the evaluation splits (test, then validation, so that no duplicate of a test item survives in
train), then the smallest id. When the copies disagree
on the answer, none is kept (``conflicting_answer``): we cannot tell which is right. The decisions
go to a small JSONL file; ``ExactDedupFilter`` then drops, in parallel tasks, the records it names.

Datatrove's own ``ExactDedup*`` stages keep the highest-priority copy too, but they neither tell
which copy was kept nor see that two copies disagree on the answer, both of which the rejects and
the dataset card report.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict

import orjson
from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep

from medinjection.core.schema import format_letters
from medinjection.dataset_builders.steps.rejects import RecordFilter

SPLIT_PRIORITY = {"test": 0, "validation": 1, "train": 2}
DECISIONS_FILE = "decisions.jsonl"
KEYS_DIR = "keys"


def keep_priority(
    provenance_rank: int, source: str, split: str, record_id: str, second_hand: frozenset[str]
) -> tuple:
    """The sort key of the copies of one item, the kept copy first (the exact and the near dedup)."""
    return (provenance_rank, source in second_hand, SPLIT_PRIORITY[split], record_id)


def answer_key(record: dict) -> str:
    if record["type"] == "OEQ":
        return record["answer"].casefold()
    return format_letters(record["correct_letters"])


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=12).digest()


def exact_key(doc: Document) -> str:
    """The item's identity: "Quel est le diagnostic ?" over two clinical cases is two items."""
    return text_hash(f"{doc.metadata.get('context', '').casefold()}\n{doc.text}").hex()


class ExactDedupKeys(PipelineStep):
    """Passes every record on, writing its exact-dedup key line to ``keys/<rank>.jsonl``.

    Reading the few fields the index needs from these files, instead of every prepared record in
    full, took the single-task index from 33 s to a few seconds at 571K records."""

    name = "exact_dedup_keys"
    type = "🫂 - DEDUP"

    def __init__(self, output_folder: DataFolderLike):
        super().__init__()
        self.output_folder = get_datafolder(output_folder)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with self.output_folder.open(f"{KEYS_DIR}/{rank:05d}.jsonl", "wb") as out:
            for doc in data:
                meta = doc.metadata
                out.write(
                    orjson.dumps(
                        [
                            exact_key(doc),
                            meta["provenance"],
                            meta["split"],
                            doc.id,
                            answer_key(meta),
                            meta.get("source", ""),
                        ]
                    )
                    + b"\n"
                )
                yield doc


class ExactDedupIndex(PipelineStep):
    name = "exact_dedup_index"
    type = "🫂 - DEDUP"

    def __init__(
        self,
        output_folder: DataFolderLike,
        provenance_priority: list[str],
        second_hand_sources: list[str] | tuple[str, ...] = (),
    ):
        super().__init__()
        self.output_folder = get_datafolder(output_folder)
        self.provenance_priority = {p: i for i, p in enumerate(provenance_priority)}
        self.second_hand = frozenset(second_hand_sources)

    def key_rows(self):
        """(key, provenance, split, id, answer, source) of every record, from the files
        ``ExactDedupKeys`` wrote."""
        for name in sorted(self.output_folder.list_files(subdirectory=KEYS_DIR)):
            with self.output_folder.open(name, "rb") as handle:
                for line in handle:
                    yield orjson.loads(line)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if world_size != 1:
            raise ValueError(f"{self.name} must run as a single task (got world_size={world_size})")
        groups: dict[str, list[tuple]] = defaultdict(list)
        for key, provenance, split, doc_id, answer, *rest in self.key_rows():
            source = rest[0] if rest else ""
            priority = keep_priority(
                self.provenance_priority[provenance], source, split, doc_id, self.second_hand
            )
            groups[key].append((priority, doc_id, answer))
            self.stat_update("total")
        with self.output_folder.open(DECISIONS_FILE, "w") as out:
            for members in groups.values():
                if len(members) == 1:
                    continue
                members.sort()
                answers = {answer for _, _, answer in members}
                if len(answers) > 1:
                    ids = [doc_id for _, doc_id, _ in members]
                    for _, doc_id, _ in members:
                        others = ", ".join(i for i in ids if i != doc_id)
                        out.write(
                            json.dumps(
                                {
                                    "id": doc_id,
                                    "reason": "conflicting_answer",
                                    "kept_id": "",
                                    "detail": f"same question as {others} with answers {sorted(answers)}",
                                }
                            )
                            + "\n"
                        )
                        self.stat_update("conflicting_answer")
                    continue
                kept = members[0][1]
                for _, doc_id, _ in members[1:]:
                    out.write(
                        json.dumps(
                            {
                                "id": doc_id,
                                "reason": "exact_duplicate",
                                "kept_id": kept,
                                "detail": f"same normalised question and options as {kept}",
                            }
                        )
                        + "\n"
                    )
                    self.stat_update("exact_duplicate")
        return
        yield


class ExactDedupFilter(RecordFilter):
    name = "exact_dedup"
    step_name = "exact_dedup"

    def __init__(self, decisions_folder: DataFolderLike, rejects_dir: str | None = None):
        super().__init__(rejects_dir=rejects_dir)
        self.decisions_folder = get_datafolder(decisions_folder)
        self._decisions: dict[str, dict] | None = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if self._decisions is None:
            with self.decisions_folder.open(DECISIONS_FILE, "r") as handle:
                self._decisions = {row["id"]: row for row in map(json.loads, handle)}
        decision = self._decisions.get(doc.id)
        if decision is None:
            return True
        return self.reject(doc, decision["reason"], decision["detail"], decision["kept_id"])
