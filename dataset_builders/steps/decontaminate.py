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
English evaluation sets) reaches the threshold and their correct options agree (as in the near
dedup: an item that shares a test item's options but asks for another answer is not its copy;
``answers_agree``). Evaluation items shorter than ``n`` words cannot be matched this way; they are
counted (``too_short``) and left to near-dedup.

An external evaluation set is read like a build source (``read_eval_set``): its rows keep their own
split, and a split-less set gets the build's hashed split (or all its rows for ``splits: all``). Rows
the adapter cannot map are counted per reason, never dropped silently. ``check_eval_sets`` runs before
any work of the build: a set that is missing, unreachable, or yields no item (or none long enough to
index) stops the build, naming the set. The index stage writes, per set, the rows read, the items
indexed and the rows unreadable to ``_build/decontamination/eval_sets.json``; the dedup report and
the card add the training items each set removed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datatrove.data import Document
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from xxhash import xxh64_intdigest

from medinjection.core.layout import EVAL_SETS_FILE
from medinjection.core.schema import RecordError
from medinjection.dataset_builders.sources import SourceUnavailable, get_adapter
from medinjection.dataset_builders.steps.exact_dedup import DECISIONS_FILE
from medinjection.dataset_builders.steps.minhash_text import (
    EVAL_DIR,
    correct_options,
    near_dedup_text,
    simplify,
    words,
)
from medinjection.dataset_builders.steps.normalize import normalize_record
from medinjection.dataset_builders.steps.reader import hashed_split
from medinjection.dataset_builders.steps.rejects import RecordFilter

INDEX_FILE = "index.npz"
ITEMS_FILE = "eval_items.jsonl"
OWN_TEST_SET = "the build's test splits"
LISTED_UNREADABLE = 5


class EvalSetError(SourceUnavailable):
    """An evaluation set that cannot decontaminate anything (missing, unreachable, no items)."""


def ngram_hash_set(text: str, n: int) -> set[int]:
    """The 64-bit hashes of the word n-grams of ``text`` (simplified: ``minhash_text.simplify``)."""
    tokens = words(text)
    return {xxh64_intdigest(" ".join(tokens[i : i + n])) for i in range(len(tokens) - n + 1)}


def answers_agree(record_correct: list[str] | None, eval_correct: list[str] | None) -> bool:
    """Whether a record and an evaluation item give the same answer: their correct options share at
    least half of their words (a reworded option still agrees). An open-ended item on either side,
    or an evaluation item listed without its answer, agrees with anything."""
    if not record_correct or not eval_correct:
        return True
    mine = set(words(simplify(" ".join(record_correct))))
    theirs = set(words(simplify(" ".join(eval_correct))))
    return len(mine & theirs) >= 0.5 * len(mine | theirs)


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """Sorted unique 64-bit hashes of the word n-grams of ``text`` (simplified: ``minhash_text.simplify``)."""
    grams = ngram_hash_set(text, n)
    return np.unique(np.fromiter(grams, dtype=np.uint64, count=len(grams)))


@dataclass
class EvalSetRead:
    """One external evaluation set as read: its items and what could not be read."""

    name: str
    adapter: str
    location: str
    splits: list[str] | str
    rows: int = 0
    # (id, split, simplified text, correct option texts)
    items: list[tuple[str, str, str, list[str]]] = field(default_factory=list)
    unreadable: Counter = field(default_factory=Counter)  # reason -> rows
    unreadable_examples: list[str] = field(default_factory=list)
    other_splits: Counter = field(default_factory=Counter)  # rows of splits the set does not use

    def summary(self, n_grams: int) -> dict:
        too_short = sum(1 for _, _, text, _ in self.items if len(words(text)) < n_grams)
        return {
            "name": self.name,
            "adapter": self.adapter,
            "location": self.location,
            "splits": self.splits,
            "rows": self.rows,
            "items": len(self.items),
            "items_by_split": dict(sorted(Counter(item[1] for item in self.items).items())),
            "too_short": too_short,
            "indexed": len(self.items) - too_short,
            "unreadable": sum(self.unreadable.values()),
            "unreadable_by_reason": dict(sorted(self.unreadable.items())),
            "unreadable_examples": self.unreadable_examples,
            "other_splits": dict(sorted(self.other_splits.items())),
        }


def read_eval_set(spec, base_dir: str | Path, split, seed: int) -> EvalSetRead:
    """The items of one configured evaluation set, read by its adapter.

    ``split`` and ``seed`` are the build's: a row without a split of its own gets the same hashed
    split as it would as a build source. A row that cannot be mapped is counted by reason (and a few
    are kept as examples) when it may belong to the set's splits."""
    adapter = get_adapter(spec.adapter)(spec, Path(base_dir))
    location = spec.path or f"{spec.hub_id or adapter.hub_id}@{spec.revision}"
    read = EvalSetRead(spec.label, adapter.name, str(location), spec.splits)
    local = adapter.local_path
    folder = f"{local.parent if local.is_file() else local}/" if local is not None and local.exists() else ""
    for raw in adapter.iter_raw():
        read.rows += 1
        try:
            record = normalize_record(adapter.map_row(raw))
        except RecordError as err:
            if raw.split == "" or spec.wants(raw.split):  # a split-less row may be an item
                read.unreadable[err.reason] += 1
                if len(read.unreadable_examples) < LISTED_UNREADABLE:
                    detail = err.detail if raw.location in err.detail else f"{raw.location}: {err.detail}"
                    if folder:  # the report is published: name files as the config does, not by local path
                        detail = detail.replace(folder, "")
                    read.unreadable_examples.append(f"{err.reason}: {detail}")
            else:
                read.other_splits[raw.split] += 1
            continue
        item_split = record["source_split"] or hashed_split(record["id"], split, seed)
        if not spec.wants(item_split):
            read.other_splits[item_split] += 1
            continue
        read.items.append(
            (record["id"], item_split, simplify(near_dedup_text(record)), correct_options(record))
        )
    return read


def check_eval_sets(config) -> list[dict]:
    """Before any work of the build: every evaluation set is reachable and yields items to index.

    Raises ``EvalSetError`` naming the set otherwise; returns the sets' summaries."""
    decont = config.decontamination
    if not decont.enabled:
        return []
    summaries = []
    for spec in decont.eval_sets:
        where = f"evaluation set {spec.label!r} (adapter {spec.adapter})"
        try:
            get_adapter(spec.adapter)(spec, config.base_dir).check_available()
        except SourceUnavailable as err:
            raise EvalSetError(f"{where}: {err}") from err
        read = read_eval_set(spec, config.base_dir, config.split, config.seed)
        summary = read.summary(decont.n_grams)
        wanted = "all splits" if spec.splits == "all" else f"split(s) {', '.join(spec.splits)}"
        if summary["items"] == 0:
            found = summary["other_splits"]
            raise EvalSetError(
                f"{where}: no item in {wanted} ({summary['rows']} rows read"
                + (f"; rows by split: {_splits_text(found)}" if found else "")
                + (
                    f"; {summary['unreadable']} unreadable: {summary['unreadable_examples'][0]}"
                    if summary["unreadable"]
                    else ""
                )
                + "): it would decontaminate nothing; fix `splits` or the path"
            )
        if summary["indexed"] == 0:
            raise EvalSetError(
                f"{where}: none of its {summary['items']} items has {decont.n_grams} words, so none can "
                "be matched; lower decontamination.n_grams or drop the set"
            )
        summaries.append(summary)
    return summaries


def _splits_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{split or '(none)'} {n}" for split, n in counts.items())


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
        split=None,
        seed: int = 0,
    ):
        super().__init__()
        self.output_folder = get_datafolder(output_folder)
        self.n_grams = n_grams
        self.eval_sets = eval_sets
        self.base_dir = base_dir
        self.own_eval_folder = get_datafolder(own_eval_folder) if own_eval_folder else None
        self.decision_folders = [get_datafolder(folder) for folder in decision_folders]
        self.split = split
        self.seed = seed

    def removed_ids(self) -> set[str]:
        """Records that the dedup stages removed (their ``decisions.jsonl``)."""
        removed = set()
        for folder in self.decision_folders:
            if folder.exists(DECISIONS_FILE):
                with folder.open(DECISIONS_FILE, "r") as handle:
                    removed.update(json.loads(line)["id"] for line in handle)
        return removed

    def own_test_set(self) -> tuple[list[tuple[str, str, str, list[str]]], dict]:
        """The build's own test records (less those the dedup removed) and their summary."""
        removed, items, rows, dropped = self.removed_ids(), [], 0, 0
        for name in sorted(self.own_eval_folder.list_files(subdirectory=EVAL_DIR)):
            with self.own_eval_folder.open(name, "rb") as handle:
                for line in handle:
                    row = json.loads(line)
                    rows += 1
                    if row["id"] in removed:
                        dropped += 1
                        self.stat_update("removed_by_dedup")
                        continue
                    items.append((row["id"], "test", row["text"], row.get("correct") or []))
        read = EvalSetRead(OWN_TEST_SET, "(this build)", "data/<provenance>/test-*", ["test"], rows, items)
        return items, {**read.summary(self.n_grams), "removed_by_dedup": dropped}

    def item_sets(self):
        """(summary, items) of every evaluation set, the build's own test splits first."""
        if self.own_eval_folder is not None:
            items, summary = self.own_test_set()
            yield summary, items
        for spec in self.eval_sets:
            read = read_eval_set(spec, self.base_dir, self.split, self.seed)
            summary = read.summary(self.n_grams)
            if summary["items"] == 0:  # checked before the build started: the set changed since
                raise EvalSetError(f"evaluation set {spec.label!r}: no item in {spec.splits} any more")
            yield summary, read.items

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if world_size != 1:
            raise ValueError(f"{self.name} must run as a single task (got world_size={world_size})")
        hashes, owners, sizes, summaries = [], [], [], []
        with self.track_time(), self.output_folder.open(ITEMS_FILE, "w") as items_out:
            for summary, items in self.item_sets():
                summaries.append(summary)
                for item_id, split, text, correct in items:
                    grams = ngram_hashes(text, self.n_grams)
                    self.stat_update(f"set:{summary['name']}")
                    if grams.size == 0:
                        self.stat_update("too_short")
                        continue
                    items_out.write(
                        json.dumps(
                            {
                                "id": item_id,
                                "set": summary["name"],
                                "split": split,
                                "ngrams": int(grams.size),
                                "correct": correct,
                            },
                            ensure_ascii=False,
                        )
                        + "\n"
                    )
                    hashes.append(grams)
                    owners.append(np.full(grams.size, len(sizes), dtype=np.uint32))
                    sizes.append(grams.size)
                    self.stat_update("indexed")
                if summary["unreadable"]:
                    self.stat_update("unreadable", value=summary["unreadable"])
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
            with self.output_folder.open(EVAL_SETS_FILE, "w") as out:
                out.write(json.dumps(summaries, indent=2, ensure_ascii=False) + "\n")
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

    def match(self, text: str, correct: list[str] | None = None) -> tuple[dict, int, int] | None:
        """The evaluation item with the largest share of its n-grams in ``text``, if over the
        threshold, among those whose answer agrees with ``correct`` (the record's correct option
        texts; None: not checked)."""
        if self._index is None:
            self._index = self.load()
        hashes, owners, sizes, items, indexed = self._index
        shared_grams = indexed.intersection(ngram_hash_set(text, self.n_grams))
        if not shared_grams:
            return None
        grams = np.fromiter(shared_grams, dtype=np.uint64, count=len(shared_grams))
        lo = np.searchsorted(hashes, grams, side="left")
        hi = np.searchsorted(hashes, grams, side="right")
        lengths = hi - lo
        total = int(lengths.sum())
        if total == 0:
            return None
        # the owners of every shared n-gram, gathered in numpy: a common n-gram ("parmi les
        # propositions") has thousands of owners, too many for a Python loop per record
        ends = np.cumsum(lengths)
        positions = np.arange(total) - np.repeat(ends - lengths, lengths) + np.repeat(lo, lengths)
        candidates, shared_counts = np.unique(owners[positions], return_counts=True)
        ratios = shared_counts / sizes[candidates]
        over = np.flatnonzero(ratios >= self.threshold)
        # best share first; ties: the smallest owner index (candidates are sorted)
        for k in over[np.argsort(-ratios[over], kind="stable")].tolist():
            owner = int(candidates[k])
            if correct is None or answers_agree(correct, items[owner].get("correct")):
                return items[owner], int(shared_counts[k]), int(sizes[owner])
            self.stat_update("similar_but_other_answer")
        return None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if doc.metadata.get("split") not in self.splits:
            return True
        correct = correct_options(doc.metadata)
        found = self.match(simplify(near_dedup_text(doc.metadata)), correct)
        original = doc.metadata.get("original") or {}
        if found is None and original.get("instruction"):
            # a translated item is also matched through its English original: MedQA's test questions
            # translated into training data leak into the English benchmark, in no shared French n-gram
            english = {
                **original,
                "type": doc.metadata.get("type"),
                "correct_letters": doc.metadata.get("correct_letters"),
            }
            found = self.match(simplify(near_dedup_text(english)), correct_options(english))
        if found is None:
            return True
        item, shared, total = found
        return self.reject(
            doc,
            "contamination",
            f"{shared} of the {total} {self.n_grams}-grams of evaluation item {item['id']} "
            f"({item['set']}, {item.get('split', 'test')})",
            item["id"],
        )
