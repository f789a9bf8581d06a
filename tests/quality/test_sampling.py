"""The review sample: stratified by provenance, source and type, proportional, deterministic for a seed."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from review_case import make_row, write_dataset

from medinjection.quality.sampling import SampleError, allocate, read_dataset, stratified_sample, stratum

# 60 native/src_a MCQU, 25 native/src_a MCQ, 10 translated/src_b, 5 synthetic/src_c
LAYOUT = [
    ("native", "src_a", "MCQU", 60),
    ("native", "src_a", "MCQ", 25),
    ("translated", "src_b", "MCQU", 10),
    ("synthetic", "src_c", "MCQU", 5),
]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    out = []
    for provenance, source, kind, n in LAYOUT:
        for _ in range(n):
            row = make_row(len(out), provenance, source)
            row["type"] = kind
            if kind == "MCQ":
                row["correct_letters"] = ["A", "B"]
            out.append(row)
    return out


def test_allocation_by_hand():
    # exact quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1; the one left goes to the largest remainder (a)
    assert allocate({("a",): 50, ("b",): 30, ("c",): 20}, 7) == {("a",): 4, ("b",): 2, ("c",): 1}
    # ties on the remainder are broken by the stratum key
    assert allocate({("x",): 1, ("y",): 1}, 1) == {("x",): 1, ("y",): 0}
    assert allocate({("a",): 3, ("b",): 2}, 10) == {("a",): 3, ("b",): 2}


def test_sample_is_proportional(rows):
    sample = stratified_sample(rows, 17, seed=0)
    assert len(sample) == 17
    counts = Counter(stratum(row) for row in sample)
    for provenance, source, kind, n in LAYOUT:
        exact = 17 * n / len(rows)
        assert math.floor(exact) <= counts[(provenance, source, kind)] <= math.ceil(exact), (provenance, kind)
    assert counts == {
        ("native", "src_a", "MCQU"): 10,  # 10.2
        ("native", "src_a", "MCQ"): 4,  # 4.25
        ("translated", "src_b", "MCQU"): 2,  # 1.7
        ("synthetic", "src_c", "MCQU"): 1,  # 0.85
    }


def test_sample_is_deterministic_and_order_free(rows):
    first = [row["id"] for row in stratified_sample(rows, 20, seed=3)]
    assert first == [row["id"] for row in stratified_sample(list(reversed(rows)), 20, seed=3)]
    assert first != [row["id"] for row in stratified_sample(rows, 20, seed=4)]
    assert len(set(first)) == 20


def test_larger_sample_contains_smaller_within_strata(rows):
    small = {row["id"] for row in stratified_sample(rows, 10, seed=1)}
    large = {row["id"] for row in stratified_sample(rows, 40, seed=1)}
    assert small <= large


def test_size_above_total_takes_everything(rows):
    assert len(stratified_sample(rows, 1000)) == len(rows)


def test_duplicate_ids_and_bad_sizes_fail(rows):
    with pytest.raises(SampleError, match="appears twice"):
        stratified_sample([rows[0], rows[0]], 1)
    with pytest.raises(SampleError, match="at least 1"):
        stratified_sample(rows, 0)
    with pytest.raises(SampleError, match="nothing to sample"):
        stratified_sample([], 5)


def test_read_dataset_filters_provenance_and_names_bad_input(rows, tmp_path):
    write_dataset(tmp_path, rows)
    assert len(read_dataset(tmp_path)) == len(rows)
    translated = read_dataset(tmp_path, ["translated"])
    assert {row["provenance"] for row in translated} == {"translated"} and len(translated) == 10
    assert all(row["split"] == "train" for row in translated)
    assert read_dataset(tmp_path, splits=["test"]) == []
    with pytest.raises(SampleError, match="unknown provenance"):
        read_dataset(tmp_path, ["machine"])
    with pytest.raises(SampleError, match="no data/"):
        read_dataset(tmp_path / "nowhere")


def test_the_sample_can_be_stratified_by_quality_score(rows):
    from medinjection.quality.sampling import QUALITY_KEY, STRATUM_KEYS

    graded = [
        {**row, "quality": None if row["provenance"] == "native" else {"score": 1 + i % 5}}
        for i, row in enumerate(rows)
    ]
    keys = (*STRATUM_KEYS, QUALITY_KEY)
    sample = stratified_sample(graded, 50, seed=0, keys=keys)
    assert len(sample) == 50
    strata = Counter(stratum(row, keys) for row in graded)
    quotas = allocate(dict(strata), 50)
    assert Counter(stratum(row, keys) for row in sample) == +Counter(quotas)
    assert {stratum(row, keys)[-1] for row in graded if row["provenance"] == "native"} == {"none"}
