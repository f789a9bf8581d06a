"""Near-duplicate decisions from datatrove's MinHash candidate pairs, each checked, the kept twin named.

Datatrove's ``MinhashDedupBuckets`` writes the candidate pairs LSH found (``*.dups``: task and index
of both records). Its ``MinhashDedupCluster`` would join them transitively and its filter keep an
arbitrary member; on exam questions that share a stem ("Parmi les propositions suivantes, une seule
est fausse") LSH proposes pairs of distinct questions, and transitive clusters grow to hundreds of
distinct items. ``NearDedupResolve`` (one task) therefore checks every candidate pair first:

* a pair is a near-duplicate when the exact Jaccard similarity of the two word n-gram sets (question
  and sorted options) is at least ``threshold``, the correct options agree (a question asking for
  the exact statement and its twin asking for the false one share every option but not the answer),
  and the contexts agree (both empty, or their n-gram sets as similar as the threshold): "Quel est
  le diagnostic ?" over two clinical cases is two items, as in the exact dedup;
* checked pairs are joined into groups; in each group, members are ordered by the config's
  ``provenance_priority`` (native, translated, synthetic: the kept copy is the most trustworthy),
  then a copy from the item's own source before one of a republication, then by split (test,
  validation, train), then by id, the order of the exact dedup (``keep_priority``); each member in
  that order is dropped as the twin of the first kept member it directly resembles, or kept. So no
  two kept records are a checked pair: no test item keeps a near-twin in train or validation.

Records the exact dedup already removed are left out. ``NearDedupFilter`` applies the decisions in
the write stage, so every dropped record lands in ``rejects/near_dedup/`` with its ``kept_id``.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import orjson
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from xxhash import xxh64_intdigest

from medinjection.dataset_builders.steps.exact_dedup import DECISIONS_FILE, ExactDedupFilter, keep_priority
from medinjection.dataset_builders.steps.minhash_text import KEYS_DIR, words

OPTION_MATCH = 0.5
# A pair goes to the exact check when its MinHash estimate of the Jaccard similarity is at least
# threshold - ESTIMATE_MARGIN. With 80 hashes the estimate's standard deviation is at most 0.056, so a
# pair truly at the threshold is dropped with a probability under 1e-4 (3.6 sigma).
ESTIMATE_MARGIN = 0.2  # token Jaccard at which two correct options count as the same option


def shingles(text: str, n: int) -> frozenset[int]:
    """Hashes of the word n-grams of simplified ``text`` (the whole text when shorter).

    A frozenset, not a sorted array: the resolution checks millions of candidate pairs (6.3M at
    571K records) and a set intersection of a few dozen ints costs about 1 µs, ``np.intersect1d``
    about 20."""
    tokens = words(text)
    return frozenset(xxh64_intdigest(" ".join(tokens[i : i + n])) for i in range(max(len(tokens) - n + 1, 1)))


def shingle_jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    shared = len(a & b)
    union = len(a) + len(b) - shared
    return shared / union if union else 1.0


def word_set(text: str) -> set[str]:
    return set(text.split())


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def same_answer(a: dict, b: dict) -> bool:
    """Whether two items have the same correct options (open questions: their answer is in the text)."""
    if (a["type"] == "OEQ") != (b["type"] == "OEQ"):
        return False
    if a["type"] == "OEQ":
        return True
    if len(a["correct"]) != len(b["correct"]):
        return False
    others = [word_set(text) for text in b["correct"]]
    return all(
        any(jaccard(word_set(text), other) >= OPTION_MATCH for other in others) for text in a["correct"]
    )


class NearDedupResolve(PipelineStep):
    name = "near_dedup_resolve"
    type = "🫂 - DEDUP"

    def __init__(
        self,
        pairs_folder: DataFolderLike,
        keys_folder: DataFolderLike,
        exact_folder: DataFolderLike,
        output_folder: DataFolderLike,
        provenance_priority: list[str],
        n_grams: int,
        threshold: float,
        signatures_folder: DataFolderLike | None = None,
        hashes_per_bucket: int = 4,
        second_hand_sources: list[str] | tuple[str, ...] = (),
    ):
        super().__init__()
        self.second_hand = frozenset(second_hand_sources)
        self.signatures_folder = get_datafolder(signatures_folder) if signatures_folder is not None else None
        self.hashes_per_bucket = hashes_per_bucket
        self.pairs_folder = get_datafolder(pairs_folder)
        self.keys_folder = get_datafolder(keys_folder)
        self.exact_folder = get_datafolder(exact_folder)
        self.output_folder = get_datafolder(output_folder)
        self.provenance_priority = {p: i for i, p in enumerate(provenance_priority)}
        self.n_grams = n_grams
        self.threshold = threshold

    def load_pairs(self) -> np.ndarray:
        """Unique candidate pairs as (key a, key b), key = task << 32 | index, from datatrove's ``*.dups``.

        With the signature files, pairs whose MinHash estimate of the Jaccard similarity is below
        ``threshold - ESTIMATE_MARGIN`` are dropped first, in numpy: at 571K records LSH proposes
        6.3M pairs of which 24K pass the exact check, and checking them all one by one in Python
        (reading and shingling the keys of every record in a pair) took over two minutes."""
        chunks = []
        for name in self.pairs_folder.list_files(glob_pattern="*.dups"):
            with self.pairs_folder.open(name, "rb") as handle:
                chunks.append(np.frombuffer(handle.read(), dtype="<u4").reshape(-1, 4))
        if not chunks:
            return np.zeros((0, 2), dtype=np.uint64)
        rows = np.concatenate(chunks)
        del chunks
        self.stat_update("proposed_pairs", value=len(rows))
        if self.signatures_folder is not None:
            rows = self.similar_enough(rows)
        a = (rows[:, 0].astype(np.uint64) << np.uint64(32)) | rows[:, 1]
        b = (rows[:, 2].astype(np.uint64) << np.uint64(32)) | rows[:, 3]
        pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
        if not len(pairs):
            return pairs
        # unique rows via dense record numbers (a 1-D sort; np.unique(axis=0) is several times slower)
        keys, dense = np.unique(pairs.ravel(), return_inverse=True)
        dense = dense.reshape(-1, 2).astype(np.int64)
        codes = np.unique(dense[:, 0] * len(keys) + dense[:, 1])
        return np.stack([keys[codes // len(keys)], keys[codes % len(keys)]], axis=1)

    def signatures(self) -> tuple[np.ndarray, np.ndarray]:
        """Every record's whole MinHash signature (one row per record, bands side by side), read back
        from the band files ``bucket_NNN/<task>.minhash.sig``, and the first row of each task
        (indexed by task number)."""
        r = self.hashes_per_bucket
        # 32-bit hashes: the only precision the config allows (64-bit ones trip datatrove's bucket stage)
        dtype = np.dtype([(f"h{i}", "<u4") for i in range(r)] + [("doc", "<u4")])
        files = {}
        for name in self.signatures_folder.list_files(glob_pattern="bucket_*/*.minhash.sig"):
            folder, filename = name.split("/")[-2:]
            with self.signatures_folder.open(name, "rb") as handle:
                files[int(folder.removeprefix("bucket_")), int(filename.split(".")[0])] = np.frombuffer(
                    handle.read(), dtype=dtype
                )
        if not files:
            return np.zeros((0, 0), dtype=np.uint32), np.zeros(0, dtype=np.int64)
        bands = sorted({band for band, _ in files})
        tasks = max(task for _, task in files) + 1
        sizes = np.zeros(tasks, dtype=np.int64)
        for (_, task), records in files.items():
            if len(records):
                sizes[task] = max(sizes[task], int(records["doc"].max()) + 1)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        sig = np.zeros((int(sizes.sum()), len(bands) * r), dtype=np.uint32)
        for (band, task), records in files.items():
            rows = offsets[task] + records["doc"].astype(np.int64)
            column = bands.index(band) * r
            for i in range(r):
                sig[rows, column + i] = records[f"h{i}"]
        return sig, offsets

    def similar_enough(self, rows: np.ndarray) -> np.ndarray:
        sig, offsets = self.signatures()
        if not len(sig):
            return rows
        keep = np.zeros(len(rows), dtype=bool)
        for start in range(0, len(rows), 500_000):
            chunk = rows[start : start + 500_000]
            a = offsets[chunk[:, 0]] + chunk[:, 1]
            b = offsets[chunk[:, 2]] + chunk[:, 3]
            estimate = (sig[a] == sig[b]).mean(axis=1)
            keep[start : start + len(chunk)] = estimate >= self.threshold - ESTIMATE_MARGIN
        self.stat_update("dropped_by_minhash_estimate", value=int((~keep).sum()))
        return rows[keep]

    def load_keys(self, wanted: np.ndarray) -> dict[int, dict]:
        """Key rows (with their n-gram hashes) of the records in ``wanted``, minus exact-dedup rejects."""
        removed = set()
        if self.exact_folder.exists(DECISIONS_FILE):
            with self.exact_folder.open(DECISIONS_FILE, "r") as handle:
                removed = {json.loads(line)["id"] for line in handle}
        by_file: dict[int, set[int]] = defaultdict(set)
        for key in wanted.tolist():
            by_file[key >> 32].add(key & 0xFFFFFFFF)
        rows = {}
        for file_id, docs in sorted(by_file.items()):
            with self.keys_folder.open(f"{KEYS_DIR}/{file_id:05d}.jsonl", "rb") as handle:
                for index, line in enumerate(handle):
                    if index in docs:
                        row = orjson.loads(line)
                        if row["id"] not in removed:
                            row["grams"] = shingles(row.pop("text"), self.n_grams)
                            context = row.pop("context", "")
                            row["context_grams"] = shingles(context, self.n_grams) if words(context) else None
                            rows[(file_id << 32) | index] = row
        return rows

    def twins(self, a: dict, b: dict) -> float | None:
        similarity = shingle_jaccard(a["grams"], b["grams"])
        if similarity < self.threshold:
            return None
        if not same_answer(a, b):
            self.stat_update("similar_but_other_answer")
            return None
        if not self.same_context(a, b):
            self.stat_update("similar_but_other_context")
            return None
        return similarity

    def same_context(self, a: dict, b: dict) -> bool:
        if a["context_grams"] is None or b["context_grams"] is None:
            return a["context_grams"] is None and b["context_grams"] is None
        return shingle_jaccard(a["context_grams"], b["context_grams"]) >= self.threshold

    def priority(self, row: dict) -> tuple:
        return keep_priority(
            self.provenance_priority[row["provenance"]],
            row.get("source", ""),
            row["split"],
            row["id"],
            self.second_hand,
        )

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if world_size != 1:
            raise ValueError(f"{self.name} must run as a single task (got world_size={world_size})")
        with self.track_time():
            pairs = self.load_pairs()
            rows = self.load_keys(np.unique(pairs))
            parent: dict[int, int] = {}

            def find(x: int) -> int:
                while parent.setdefault(x, x) != x:
                    parent[x] = parent[parent[x]]
                    x = parent[x]
                return x

            self.stat_update("candidate_pairs", value=len(pairs))
            for a, b in pairs.tolist():
                if a in rows and b in rows and self.twins(rows[a], rows[b]) is not None:
                    self.stat_update("checked_pairs")
                    parent[find(a)] = find(b)
            groups: dict[int, list[dict]] = defaultdict(list)
            for key in list(parent):
                groups[find(key)].append(rows[key])
            decisions = []
            for members in groups.values():
                members.sort(key=self.priority)
                kept: list[dict] = []
                for row in members:
                    twin = next(
                        ((other, s) for other in kept if (s := self.twins(row, other)) is not None), None
                    )
                    if twin is None:
                        kept.append(row)
                        continue
                    other, similarity = twin
                    decisions.append(
                        {
                            "id": row["id"],
                            "reason": "near_duplicate",
                            "kept_id": other["id"],
                            "detail": f"Jaccard {similarity:.2f} of {self.n_grams}-grams with {other['id']} "
                            f"({other['provenance']}, {other['split']}, {other['source']})",
                        }
                    )
                    self.stat_update("near_duplicate")
            with self.output_folder.open(DECISIONS_FILE, "w") as out:
                for decision in sorted(decisions, key=lambda d: d["id"]):
                    out.write(json.dumps(decision) + "\n")
        return
        yield


class NearDedupFilter(ExactDedupFilter):
    """Drops the records ``NearDedupResolve`` decided on (``rejects/near_dedup/``, with the kept id)."""

    name = "near_dedup"
    step_name = "near_dedup"
