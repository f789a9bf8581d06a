"""Decontamination: training items that share enough word n-grams with an evaluation item are removed.

Datatrove's ``pipeline/decont`` (``NGramsDecontIndexer`` / ``NGramsDecontFilter``) indexes the
n-grams of lighteval tasks and drops a document on the first shared n-gram, without saying which
evaluation item it matched. We keep its idea (hashed word n-grams of simplified text, an index
built once, a filter in parallel tasks) but index our own evaluation items, read through the source
adapters, and measure how much of an evaluation item a training item contains, so the report can
name the evaluation twin and the overlap.

``DecontaminationIndex`` (one task) hashes the n-grams of every evaluation item: the build's own test
splits (listed by ``MinhashText``, less the test records that the exact or near dedup removed: a
test copy dropped in favour of a native train copy must not then remove that train copy as
contaminated) and the config's ``eval_sets``; it writes a sorted array of
n-gram hashes with the item each came from. ``DecontaminationFilter`` (write stage) rejects a record
of a checked split (``contamination``, ``kept_id`` = the evaluation item) when the share of an
evaluation item's n-grams found in it (or in the English original of a translated record, for
English evaluation sets) reaches the threshold. Evaluation items shorter than ``n``
words cannot be matched this way; they are counted (``too_short``) and left to near-dedup.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from xxhash import xxh64_intdigest

from medinjection.dataset_builders.steps.exact_dedup import DECISIONS_FILE
from medinjection.dataset_builders.steps.minhash_text import EVAL_DIR, near_dedup_text, simplify, words
from medinjection.dataset_builders.steps.normalize import normalize_record
from medinjection.dataset_builders.steps.rejects import RecordFilter
from medinjection.schema import RecordError

INDEX_FILE = "index.npz"
ITEMS_FILE = "eval_items.jsonl"


def ngram_hash_set(text: str, n: int) -> set[int]:
    """The 64-bit hashes of the word n-grams of ``text`` (simplified: ``minhash_text.simplify``)."""
    tokens = words(text)
    return {xxh64_intdigest(" ".join(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """Sorted unique 64-bit hashes of the word n-grams of ``text`` (simplified: ``minhash_text.simplify``)."""
    grams = ngram_hash_set(text, n)
    return np.unique(np.fromiter(grams, dtype=np.uint64, count=len(grams)))


def eval_set_items(spec, base_dir: str):
    """(id, set name, text) of the items of one configured evaluation set, read by its adapter."""
    from medinjection.dataset_builders.sources import get_adapter

    adapter = get_adapter(spec.adapter)(spec, Path(base_dir))
    name = spec.name or adapter.name
    for raw in adapter.iter_raw():
        if raw.split not in spec.splits:
            continue
        try:
            record = normalize_record(adapter.map_row(raw))
        except RecordError:
            continue
        yield record["id"], f"{name} ({raw.split})", simplify(near_dedup_text(record))


class DecontaminationIndex(PipelineStep):
    name = "decontamination_index"
    type = "🫂 - DEDUP"

    def __init__(
        self,
        output_folder: DataFolderLike,
        n_grams: int,
        eval_sets: list,
        base_dir: str,
        own_eval_folder: DataFolderLike | None = None,
        decision_folders: list[DataFolderLike] = (),
    ):
        super().__init__()
        self.output_folder = get_datafolder(output_folder)
        self.n_grams = n_grams
        self.eval_sets = eval_sets
        self.base_dir = base_dir
        self.own_eval_folder = get_datafolder(own_eval_folder) if own_eval_folder else None
        self.decision_folders = [get_datafolder(folder) for folder in decision_folders]

    def removed_ids(self) -> set[str]:
        """Records that the dedup stages removed (their ``decisions.jsonl``)."""
        removed = set()
        for folder in self.decision_folders:
            if folder.exists(DECISIONS_FILE):
                with folder.open(DECISIONS_FILE, "r") as handle:
                    removed.update(json.loads(line)["id"] for line in handle)
        return removed

    def items(self):
        if self.own_eval_folder is not None:
            removed = self.removed_ids()
            for name in sorted(self.own_eval_folder.list_files(subdirectory=EVAL_DIR)):
                with self.own_eval_folder.open(name, "rb") as handle:
                    for line in handle:
                        row = json.loads(line)
                        if row["id"] in removed:
                            self.stat_update("removed_by_dedup")
                            continue
                        yield row["id"], row["set"], row["text"]
        for spec in self.eval_sets:
            yield from eval_set_items(spec, self.base_dir)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if world_size != 1:
            raise ValueError(f"{self.name} must run as a single task (got world_size={world_size})")
        hashes, owners, sizes = [], [], []
        with self.track_time(), self.output_folder.open(ITEMS_FILE, "w") as items_out:
            for item_id, set_name, text in self.items():
                grams = ngram_hashes(text, self.n_grams)
                self.stat_update(f"set:{set_name}")
                if grams.size == 0:
                    self.stat_update("too_short")
                    continue
                items_out.write(
                    json.dumps({"id": item_id, "set": set_name, "ngrams": int(grams.size)}) + "\n"
                )
                hashes.append(grams)
                owners.append(np.full(grams.size, len(sizes), dtype=np.uint32))
                sizes.append(grams.size)
                self.stat_update("indexed")
            all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint64)
            all_owners = np.concatenate(owners) if owners else np.zeros(0, dtype=np.uint32)
            order = np.argsort(all_hashes, kind="stable")
            with self.output_folder.open(INDEX_FILE, "wb") as out:
                np.savez(
                    out,
                    hashes=all_hashes[order],
                    owners=all_owners[order],
                    sizes=np.asarray(sizes, dtype=np.uint32),
                )
        return
        yield


class DecontaminationFilter(RecordFilter):
    name = "decontamination"
    step_name = "decontamination"

    def __init__(
        self,
        index_folder: DataFolderLike,
        n_grams: int,
        threshold: float,
        splits: list[str],
        rejects_dir: str | None = None,
    ):
        super().__init__(rejects_dir=rejects_dir)
        self.index_folder = get_datafolder(index_folder)
        self.n_grams = n_grams
        self.threshold = threshold
        self.splits = set(splits)
        self._index = None

    def load(self):
        with self.index_folder.open(INDEX_FILE, "rb") as handle:
            arrays = np.load(handle)
            hashes, owners, sizes = arrays["hashes"], arrays["owners"], arrays["sizes"]
        with self.index_folder.open(ITEMS_FILE, "r") as handle:
            items = [json.loads(line) for line in handle]
        # a Python set of the indexed hashes answers "shares no n-gram" (most records) in about a
        # microsecond; the sorted arrays then count the shared n-grams of the few others
        return hashes, owners, sizes, items, set(hashes.tolist())

    def match(self, text: str) -> tuple[dict, int, int] | None:
        """The evaluation item with the largest share of its n-grams in ``text``, if over the threshold."""
        if self._index is None:
            self._index = self.load()
        hashes, owners, sizes, items, indexed = self._index
        shared_grams = indexed.intersection(ngram_hash_set(text, self.n_grams))
        if not shared_grams:
            return None
        grams = np.fromiter(shared_grams, dtype=np.uint64, count=len(shared_grams))
        lo = np.searchsorted(hashes, grams, side="left")
        hi = np.searchsorted(hashes, grams, side="right")
        hits = Counter()
        for start, stop in zip(lo.tolist(), hi.tolist(), strict=True):
            hits.update(owners[start:stop].tolist())
        if not hits:
            return None
        owner, shared = max(hits.items(), key=lambda kv: (kv[1] / sizes[kv[0]], -kv[0]))
        if shared / sizes[owner] < self.threshold:
            return None
        return items[owner], shared, int(sizes[owner])

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if doc.metadata.get("split") not in self.splits:
            return True
        found = self.match(simplify(near_dedup_text(doc.metadata)))
        original = doc.metadata.get("original") or {}
        if found is None and original.get("instruction"):
            # a translated item is also matched through its English original: MedQA's test questions
            # translated into training data leak into the English benchmark, in no shared French n-gram
            found = self.match(simplify(near_dedup_text({**original, "type": doc.metadata.get("type")})))
        if found is None:
            return True
        item, shared, total = found
        return self.reject(
            doc,
            "contamination",
            f"{shared} of the {total} {self.n_grams}-grams of evaluation item {item['id']} ({item['set']})",
            item["id"],
        )
