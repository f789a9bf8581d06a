"""A review sample stratified by provenance, source and type: proportional and deterministic for a seed.

Allocation is proportional with the largest-remainder rule: each stratum gets ``floor(size * n_s / N)``
items, and the items left over go to the strata with the largest fractional parts (ties broken by
the stratum key), so every stratum gets its exact quota rounded down or up. Within a stratum the
items taken are those with the smallest ``sha256(seed:id)``: the same seed gives the same sample
whatever the order of the files, and a larger sample contains a smaller one of the same seed
within each stratum.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

STRATUM_KEYS = ("provenance", "source", "type")
QUALITY_KEY = "quality_score"
"""An extra stratum key: the quality screen's score of the record (``none`` when it has none)."""


class SampleError(ValueError):
    pass


def read_dataset(
    root: str | Path, provenances: Sequence[str] | None = None, splits: Sequence[str] | None = None
) -> list[dict]:
    """The records of a built dataset folder, with ``split`` added: its provenance shards
    (``data/<provenance>/<split>-*.parquet``, found by ``Layout``), never the mixes' copies of them."""
    import pyarrow.parquet as pq

    from medinjection.core.layout import Layout, LayoutError

    layout = Layout(Path(root))
    try:
        shards = layout.provenance_shards(provenances, splits)
        present = layout.provenance_shards()
    except LayoutError as err:
        raise SampleError(str(err)) from None
    if not present:
        raise SampleError(
            f"{root}: no data/<provenance>/<split>-*.parquet files (is it a built dataset folder?)"
        )
    rows = []
    for shard in shards:
        rows += [{**row, "split": shard.split} for row in pq.read_table(shard.path).to_pylist()]
    return rows


def stratum(row: dict, keys: Sequence[str] = STRATUM_KEYS) -> tuple[str, ...]:
    return tuple(quality_stratum(row) if key == QUALITY_KEY else str(row.get(key) or "") for key in keys)


def quality_stratum(row: dict) -> str:
    score = (row.get("quality") or {}).get("score")
    return str(score) if score is not None else "none"


def allocate(counts: dict[tuple, int], size: int) -> dict[tuple, int]:
    """Proportional quotas summing to ``min(size, total)`` (largest remainder, ties by stratum key)."""
    total = sum(counts.values())
    if size >= total:
        return dict(counts)
    exact = {key: size * n / total for key, n in counts.items()}
    quotas = {key: math.floor(value) for key, value in exact.items()}
    left = size - sum(quotas.values())
    by_remainder = sorted(counts, key=lambda key: (-(exact[key] - quotas[key]), key))
    for key in by_remainder[:left]:
        quotas[key] += 1
    return quotas


def rank_key(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def stratified_sample(
    rows: Iterable[dict[str, Any]], size: int, seed: int = 0, keys: Sequence[str] = STRATUM_KEYS
) -> list[dict[str, Any]]:
    """``size`` rows stratified by ``keys`` (provenance, source and type; add ``quality_score`` to
    stratify by the quality screen's score too); sorted by id."""
    if size < 1:
        raise SampleError(f"sample size must be at least 1, got {size}")
    strata: dict[tuple, list[dict]] = defaultdict(list)
    seen = set()
    for row in rows:
        if row["id"] in seen:
            raise SampleError(f"record {row['id']} appears twice in the dataset; ids must be unique")
        seen.add(row["id"])
        strata[stratum(row, keys)].append(row)
    if not strata:
        raise SampleError("nothing to sample: no rows match the requested provenance and splits")
    quotas = allocate({key: len(items) for key, items in strata.items()}, size)
    sample = []
    for key, items in strata.items():
        items.sort(key=lambda row: rank_key(seed, row["id"]))
        sample += items[: quotas[key]]
    return sorted(sample, key=lambda row: row["id"])
