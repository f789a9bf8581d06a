"""Intervals, paired tests and the Benjamini-Hochberg correction on crafted data with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from medinjection.evaluation import stats


def test_interval_of_a_proportion_matches_the_normal_approximation():
    values = [1.0] * 300 + [0.0] * 700  # p = 0.3, n = 1000
    entry = stats.metric(values, resamples=2000)
    assert entry["value"] == pytest.approx(0.3) and entry["n"] == 1000
    half = 1.96 * math.sqrt(0.3 * 0.7 / 1000)  # 0.0284
    low, high = entry["ci95"]
    assert low == pytest.approx(0.3 - half, abs=0.006) and high == pytest.approx(0.3 + half, abs=0.006)


def test_interval_edge_cases():
    assert stats.bootstrap_ci([1, 1, 1]) == (1.0, 1.0)
    assert stats.metric([None, None]) == {"value": None, "ci95": [None, None], "n": 0}
    assert stats.metric([1, None, 0, None])["n"] == 2  # missing values are not zeros
    assert stats.bootstrap_ci([0, 1] * 50, seed=3) == stats.bootstrap_ci([0, 1] * 50, seed=3)


def test_one_value_has_no_interval():
    # one item resamples to itself: [v, v] would claim a certainty nothing measured
    assert stats.metric([0.7]) == {"value": 0.7, "ci95": [None, None], "n": 1}
    assert stats.metric([0.7, None])["ci95"] == [None, None]
    assert all(math.isnan(v) for v in stats.bootstrap_ci([0.7]))
    diff, ci = stats.paired_bootstrap([1.0], [0.0])
    assert diff == 1.0 and all(math.isnan(v) for v in ci)
    low, high, _ = stats.stratified_bootstrap_ci([[1.0]], "macro")
    assert math.isnan(low) and math.isnan(high)
    assert stats.compare_paired([1.0], [0.0], binary=True).as_dict()["ci95"] == [None, None]


def test_mcnemar_exact_values():
    a = [1] * 10 + [0] * 5 + [1] * 5
    b = [0] * 10 + [0] * 5 + [1] * 5  # 10 discordant pairs, all for a
    assert stats.mcnemar(a, b) == pytest.approx(2 * 0.5**10)
    # 6 vs 2 discordant: two-sided binomial p = 2 * P(X <= 2 | n=8, 1/2) = 2 * 37/256
    a = [1] * 6 + [0] * 2 + [1] * 4
    b = [0] * 6 + [1] * 2 + [1] * 4
    assert stats.mcnemar(a, b) == pytest.approx(2 * 37 / 256)
    assert stats.mcnemar([1, 0, 1], [1, 0, 1]) == 1.0
    with pytest.raises(ValueError, match="0/1"):
        stats.mcnemar([0.5], [1])


def test_paired_permutation_test_is_exact_on_few_items():
    # 4 pairs, every difference positive: 2 of the 2^4 sign patterns are as extreme (two-sided)
    assert stats.paired_permutation_test([0.5, 0.7, 0.9, 0.2], [0.1, 0.2, 0.3, 0.0]) == pytest.approx(2 / 16)
    assert stats.paired_permutation_test([0.3, 0.4], [0.3, 0.4]) == 1.0


def test_compare_paired_identical_and_different_models():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 400).astype(float)
    same = stats.compare_paired(a, a, binary=True)
    assert (same.diff, same.p_value, same.ci95) == (0.0, 1.0, (0.0, 0.0))
    better = a.copy()
    better[np.flatnonzero(a == 0)[:60]] = 1.0  # 60 more correct items, none fewer
    result = stats.compare_paired(better, a, binary=True)
    assert result.test == "mcnemar" and result.diff == pytest.approx(60 / 400)
    assert result.p_value < 1e-10 and result.ci95[0] > 0
    graded = stats.compare_paired(a * 0.5 + 0.1, a * 0.5, binary=False)
    assert graded.test == "paired_permutation" and graded.diff == pytest.approx(0.1) and graded.p_value < 0.01


def test_pairs_with_a_missing_side_are_left_out():
    result = stats.compare_paired([1, 0, None, 1], [0, None, 1, 1], binary=True)
    assert result.n == 2 and result.diff == pytest.approx(0.5)


def test_benjamini_hochberg_hand_computed():
    # sorted p: 0.01, 0.03, 0.04, 0.2 (m = 4) -> 0.04, 0.0533, 0.0533, 0.2
    adjusted = stats.benjamini_hochberg([0.04, 0.01, 0.2, None, 0.03])
    assert adjusted[3] is None
    assert adjusted[1] == pytest.approx(0.04)
    assert adjusted[4] == pytest.approx(0.04 * 4 / 3) and adjusted[0] == pytest.approx(0.04 * 4 / 3)
    assert adjusted[2] == pytest.approx(0.2)
    assert stats.benjamini_hochberg([]) == []


def test_verdicts():
    assert stats.verdict(0.02, True) == "better"
    assert stats.verdict(-0.02, True) == "worse"
    assert stats.verdict(0.02, False) == "no difference"


def test_micro_and_macro_over_tasks():
    small, large = [1.0] * 10, [0.0] * 90  # task means 1.0 and 0.0
    assert stats.micro_mean([small, large]) == pytest.approx(0.1)
    assert stats.macro_mean([small, large]) == pytest.approx(0.5)
    low, high, _ = stats.stratified_bootstrap_ci([small, large], "macro")
    assert (low, high) == (0.5, 0.5)  # no variance within either task
    mixed = [[1.0, 0.0] * 20, [1.0] * 30 + [0.0] * 10]
    low, high, _ = stats.stratified_bootstrap_ci(mixed, "macro")
    assert low < stats.macro_mean(mixed) < high
    result = stats.compare_stratified(mixed, [[0.0, 0.0] * 20, [0.0] * 40], "macro")
    assert result.diff == pytest.approx(stats.macro_mean(mixed)) and result.p_value < 0.01


def test_tasks_of_one_item_enter_the_aggregate_as_constants():
    # scipy's bootstrap refuses samples of one observation; a one-item task resamples to itself
    groups = [[1.0, 0.0, 1.0, 0.0], [1.0]]
    low, high, _ = stats.stratified_bootstrap_ci(groups, "macro")
    assert low < stats.macro_mean(groups) < high
    assert low >= (0.0 + 1.0) / 2 and high <= (1.0 + 1.0) / 2  # the second mean is always 1.0
    low, high, _ = stats.stratified_bootstrap_ci([[1.0], [0.0]], "micro")
    assert math.isnan(low) and math.isnan(high)  # no task has two items: nothing to resample


def test_a_single_differing_item_is_not_significant():
    one = stats.compare_stratified([[1.0]], [[0.0]], "macro")
    assert one.diff == 1.0 and one.p_value == 1.0  # sign flips of one pair: p = 1, not 0
    ten = stats.compare_stratified([[1.0] * 10], [[0.0] * 10], "micro")
    assert ten.p_value == pytest.approx(2 / 2**10)


def test_aggregate_p_value_is_a_sign_flip_test_not_a_bootstrap_share():
    # Three items all better: a bootstrap distribution never reaches 0 (p = 0 without "+1"); the 2^3
    # sign patterns of the differences give 2 as extreme as the observed one (all +, all -).
    result = stats.compare_stratified([[1.0, 0.5, 1.0]], [[0.0, 0.0, 0.0]], "macro")
    assert result.p_value == pytest.approx(2 / 8) and result.test == "stratified_sign_flip_macro"
    assert result.diff == pytest.approx(2.5 / 3) and result.ci95[0] <= result.diff <= result.ci95[1]


def _enumerated_p(groups, statistic):
    """The stratified sign-flip p-value by brute force over every sign pattern (for small groups)."""
    arrays = [np.asarray(g, dtype=float) for g in groups]

    def stat(parts):
        if statistic == "macro":
            return np.mean([part.mean() for part in parts])
        return np.concatenate(parts).mean()

    observed = abs(stat(arrays))
    flat, cuts = np.concatenate(arrays), np.cumsum([a.size for a in arrays])[:-1]
    hits = [
        abs(stat(np.split(flat * np.array(signs), cuts))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=flat.size)
    ]
    return sum(hits) / len(hits)


def test_stratified_sign_flip_equals_enumeration_and_keeps_the_strata():
    a = [[0.0, 0.25], [0.0, 0.25, 0.0], [1.0, 0.5, 0.0]]
    b = [[0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    diffs = [np.subtract(x, y) for x, y in zip(a, b, strict=True)]
    micro, macro = (stats.compare_stratified(a, b, s) for s in ("micro", "macro"))
    assert micro.p_value == pytest.approx(_enumerated_p(diffs, "micro")) == pytest.approx(0.625)
    assert macro.p_value == pytest.approx(_enumerated_p(diffs, "macro")) == pytest.approx(0.5625)
    rng = np.random.default_rng(4)
    for _ in range(10):
        groups = [
            rng.choice([-1.0, 0.0, 0.5, 1.0], size=rng.integers(1, 5)) for _ in range(rng.integers(1, 4))
        ]
        for statistic in ("micro", "macro"):
            assert stats.sign_flip_test(groups, statistic) == pytest.approx(_enumerated_p(groups, statistic))


def test_random_sign_flips_never_give_p_zero():
    # 30 pairs all differing by 1: beyond exact enumeration; no random pattern reaches the observed
    # mean, so p = (0 + 1) / (R + 1)
    assert stats.sign_flip_test([[1.0] * 30], "micro", resamples=999) == pytest.approx(1 / 1000)
    result = stats.compare_stratified([[1.0] * 20, [1.0] * 15], [[0.0] * 20, [0.0] * 15], "macro")
    assert result.p_value == pytest.approx(1 / (stats.RESAMPLES + 1)) and result.p_value > 0
    assert stats.sign_flip_test([[0.0, 0.0]], "macro") == 1.0
    with pytest.raises(ValueError, match="statistic"):
        stats.sign_flip_test([[1.0]], "median")


def test_a_constant_difference_gets_a_test_not_a_bootstrap_p():
    # paired_bootstrap gives the interval only (its distribution said p = 0 for a constant difference)
    assert len(stats.paired_bootstrap([1.0, 1.0, 1.0], [0.5, 0.5, 0.5])) == 2
    result = stats.compare_paired([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], binary=False)
    assert result.diff == pytest.approx(0.5) and result.p_value == pytest.approx(2 / 8)
