"""Before MinHash: the text two records share when they are the same item, and a key file per task.

``near_dedup_text`` is the question, the options sorted by their text (two copies that list the same
options in another order hash alike) and, for open questions, the answer. ``MinhashText`` puts it in
``doc.text`` for datatrove's ``MinhashDedupSignature`` that follows, and writes one line per record
(in the order the signature step numbers them) to ``keys/<rank>.jsonl``: the record id, its
provenance, source, split, correct options, text and context (simplified), which the cluster
resolution needs. Records of the build's own test splits are also listed in ``eval/<rank>.jsonl``
for decontamination.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

import numpy as np
import orjson
import regex
from datatrove.data import DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
from datatrove.utils.text import NUMBERS_PATTERN, TextNormConfig
from datatrove.utils.word_tokenizers import WordTokenizer

KEYS_DIR = "keys"
EVAL_DIR = "eval"


_WORD = re.compile(r"\w+")
_MARKS = regex.compile(r"\p{Mn}+")
# the text handed to MinhashDedupSignature is simplified already: its own pass does nothing
ALREADY_SIMPLIFIED = TextNormConfig(
    lowercase=False,
    norm_whitespace=False,
    remove_punctuation=False,
    norm_unicode_diacritics=False,
    norm_numbers=False,
)


def simplify(text: str) -> str:
    """The words of datatrove's ``simplify_text`` (lower case, numbers to 0, no diacritics), at a
    fifth of its cost: diacritics go by one regex instead of a Python loop over the characters, and
    punctuation is left for the tokenizer (``\\w+`` splits on it), so ``words(simplify(t))`` equals
    ``words(simplify_text(t))`` (checked on the shared data by the tests)."""
    text = NUMBERS_PATTERN.sub("0", text.lower())
    return _MARKS.sub("", unicodedata.normalize("NFD", text))


def words(text: str) -> list[str]:
    return _WORD.findall(text)


class FrenchWordTokenizer(WordTokenizer):
    """Words of datatrove-simplified text (lower case, no punctuation, no accents): ``\\w+`` runs.

    Datatrove's French tokenizer (spacy's blank French) costs 0.9 ms per FrenchMedMCQA item here,
    which alone would take over 4 minutes on 2 cores at 571K records; on simplified text it splits
    the same words as this regex (0.06 ms) except around symbols (``cytotec®``: spacy keeps ``®``
    as a word, we drop it), 178 of 3,056 shared-data items.
    """

    def __init__(self):
        super().__init__("fr")

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in _WORD.finditer(text)]

    def __eq__(self, other) -> bool:
        return isinstance(other, FrenchWordTokenizer)

    def __hash__(self) -> int:
        return hash(FrenchWordTokenizer)


WORD_TOKENIZER = FrenchWordTokenizer()


def near_dedup_text(record: dict) -> str:
    options = sorted((opt["text"] for opt in record.get("options") or []), key=str.casefold)
    parts = [record.get("instruction") or "", *options]
    if record.get("type") == "OEQ":
        parts.append(record.get("answer") or "")
    return " ".join(parts).casefold()


def correct_options(record: dict) -> list[str]:
    """The texts of the correct options (what an item asks is told by them, not by their letters)."""
    correct = set(record.get("correct_letters") or [])
    return sorted(opt["text"].casefold() for opt in record.get("options") or [] if opt["letter"] in correct)


class MinhashText(PipelineStep):
    name = "minhash_text"
    type = "🫂 - DEDUP"

    def __init__(self, output_folder: DataFolderLike, write_keys: bool = True, write_eval: bool = False):
        super().__init__()
        self.output_folder = get_datafolder(output_folder)
        self.write_keys = write_keys
        self.write_eval = write_eval

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        # plain JSON Lines: gzip was a tenth of this stage's time for files that live only during the build
        keys = self.output_folder.open(f"{KEYS_DIR}/{rank:05d}.jsonl", "wb") if self.write_keys else None
        evals = self.output_folder.open(f"{EVAL_DIR}/{rank:05d}.jsonl", "wb") if self.write_eval else None
        try:
            for doc in data:
                meta = doc.metadata
                with self.track_time():
                    text = simplify(near_dedup_text(meta))
                    doc.text = text
                    if keys:
                        keys.write(
                            orjson.dumps(
                                {
                                    "id": doc.id,
                                    "provenance": meta["provenance"],
                                    "source": meta["source"],
                                    "split": meta["split"],
                                    "type": meta["type"],
                                    "correct": correct_options(meta),
                                    "text": text,
                                    "context": simplify(meta.get("context") or ""),
                                }
                            )
                            + b"\n"
                        )
                    if evals and meta["split"] == "test":
                        row = {
                            "id": doc.id,
                            "set": "test split",
                            "text": text,
                            "correct": correct_options(meta),
                        }
                        evals.write(orjson.dumps(row) + b"\n")
                self.stat_update("total")
                yield doc
        finally:
            for handle in (keys, evals):
                if handle:
                    handle.close()


class MinhashSignature(MinhashDedupSignature):
    """Datatrove's ``MinhashDedupSignature``, batched: the same signatures in the same files.

    Datatrove computes one document's signature at a time and packs it into the 20 bucket files with
    20 ``struct.pack`` writes; at 571K records that was most of the stage's 112 s. Here the shingles
    of ``BATCH`` documents are permuted in one numpy operation, reduced per document with
    ``np.minimum.reduceat``, and written with one ``tobytes()`` per bucket file. Datatrove's own
    ``run`` then sorts and checks the files (called with ``skip_existing_sigs``, it finds them complete).
    """

    BATCH = 1024

    def signature_rows(self, shingles: list[np.ndarray]) -> np.ndarray:
        """The (documents, num_hashes) signatures of a batch of 1-D shingle arrays."""
        a, b = self.parameters
        counts = np.fromiter((s.size for s in shingles), dtype=np.int64, count=len(shingles))
        phv = (np.concatenate(shingles).reshape(-1, 1) * a + b) % np.uint64((1 << 61) - 1)
        if self.config.hash_config.precision == 32:
            phv = np.bitwise_and(phv, self.config.hash_config.max)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        return np.minimum.reduceat(phv, starts, axis=0).astype(self.config.hash_config.np_dtype)

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1):
        rows = self.config.hashes_per_bucket
        fmt = f"<{self.config.hash_config.struct_format}"
        dtype = np.dtype([(f"h{i}", fmt) for i in range(rows)] + [("doc", "<u4")])
        buckets = [
            self.output_folder.open(f"bucket_{bi:03d}/{rank:05d}.minhash.sig", mode="wb")
            for bi in range(self.config.num_buckets)
        ]
        shingles: list[np.ndarray] = []
        indexes: list[int] = []

        def flush() -> None:
            if not shingles:
                return
            with self.track_time():
                mins = self.signature_rows(shingles)
                for bi, bucket in enumerate(buckets):
                    records = np.empty(len(indexes), dtype=dtype)
                    for i in range(rows):
                        records[f"h{i}"] = mins[:, bi * rows + i]
                    records["doc"] = indexes
                    bucket.write(records.tobytes())
            shingles.clear()
            indexes.clear()

        try:
            for doc_idx, doc in enumerate(data):
                self.stat_update("total")
                with self.track_time():
                    found = self.get_shingles(doc.text).reshape(-1)
                if found.size:
                    shingles.append(found)
                    indexes.append(doc_idx)
                    if len(indexes) >= self.BATCH:
                        flush()
            flush()
        finally:
            for bucket in buckets:
                bucket.close()
        skip, self.skip_existing_sigs = self.skip_existing_sigs, True
        try:
            super().run(iter(()), rank, world_size)  # finds the files complete: sorts and checks them
        finally:
            self.skip_existing_sigs = skip


def signature_config(config):
    """The MinhashConfig for text that ``MinhashText`` simplified already."""
    return replace(config, norm_config=ALREADY_SIMPLIFIED)
