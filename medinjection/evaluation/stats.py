"""Uncertainty of the evaluation figures and tests of the differences between models (scipy).

- ``bootstrap_ci``: percentile bootstrap interval of a mean over items (``scipy.stats.bootstrap``).
  Percentile rather than BCa: BCa's jackknife is quadratic in the number of items (27,931 test items).
- ``stratified_bootstrap_ci``: items resampled within each task, for the micro and macro
  means over several tasks, and for a weighted mean of group means (``"weighted"``: the 0.5 MCQ +
  0.5 MCQU formula of the authors' later code weighs each dataset by its kind's share).
- Paired comparisons of two models on the same items: the interval of the mean difference by
  paired bootstrap; the p-value by McNemar's exact test for 0/1 metrics (exact match) and by a
  paired sign-flip permutation test otherwise (Hamming, BLEU, judge scores).
- Comparisons of the micro and macro means over several tasks: the interval by a bootstrap
  stratified by task, the p-value by a stratified paired sign-flip permutation test
  (``sign_flip_test``). A bootstrap distribution gives intervals, never p-values here: it has no
  "+1" and says p = 0 for a difference seen on three items.
- An interval needs at least two values: with fewer, ``ci95`` is ``[None, None]`` (a one-item
  "interval" ``[v, v]`` would claim a certainty nothing measured).
- ``bootstrap_draws`` and ``percentile_interval``: the resamples and interval of the bootstraps of
  other statistics (corpus BLEU, correlations), drawn by hand.
- ``benjamini_hochberg``: adjusted p-values across the comparisons of a family
  (``scipy.stats.false_discovery_control``).

Missing values (None / NaN: a metric that does not apply to an item) are dropped; a pair counts
only when both sides have a value. Every resampling is seeded.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0
_MAX_RESAMPLED_VALUES = 20_000_000
"""Resampled values held in memory at once (scipy's ``batch``)."""
EXACT_SIGN_FLIPS = 16
"""Up to this many non-zero paired differences, sign-flip tests enumerate all 2**n sign patterns."""
TEST_RESAMPLES = 999
"""Fewest random sign patterns of a permutation test (its smallest p-value is 1 / (R + 1))."""


def as_array(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([np.nan if v is None else float(v) for v in values], dtype=float)


def _clean(values: Sequence[float | None]) -> np.ndarray:
    array = as_array(values)
    return array[~np.isnan(array)]


def _batch(n: int) -> int:
    return max(1, _MAX_RESAMPLED_VALUES // max(n, 1))


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def bootstrap_ci(
    values: Sequence[float | None],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (``(nan, nan)`` with fewer than two values)."""
    x = _clean(values)
    if x.size < 2:
        return (math.nan, math.nan)
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))  # every resample has the same mean
    result = stats.bootstrap(
        (x,),
        _mean,
        n_resamples=resamples,
        method="percentile",
        confidence_level=confidence,
        vectorized=True,
        batch=_batch(x.size),
        rng=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def bootstrap_draws(n: int, resamples: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``resamples`` bootstrap resamples of ``n`` item indices (with replacement), one ``rng.integers``
    call each: the bootstraps drawn by hand (corpus BLEU, correlations), one resample shared by several
    statistics."""
    return [rng.integers(0, n, n) for _ in range(resamples)]


def percentile_interval(samples: Iterable[float], confidence: float = CONFIDENCE) -> list[float] | None:
    """Percentile interval of a bootstrap distribution (NaN samples left out; ``None`` when none is left)."""
    kept = np.asarray([s for s in samples if not math.isnan(s)], dtype=float)
    if kept.size == 0:
        return None
    tail = (1 - confidence) / 2
    return [float(np.quantile(kept, tail)), float(np.quantile(kept, 1 - tail))]


def _json_number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def metric(
    values: Sequence[float | None],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> dict:
    """The summary entry of a per-item metric: ``{"value": mean, "ci95": [low, high], "n"}``
    (``ci95`` is ``[None, None]`` for fewer than two values)."""
    x = _clean(values)
    low, high = bootstrap_ci(x, resamples=resamples, seed=seed, confidence=confidence)
    return {
        "value": _json_number(float(np.mean(x))) if x.size else None,
        "ci95": [_json_number(low), _json_number(high)],
        "n": int(x.size),
    }


STATISTICS = ("micro", "macro", "weighted")
"""Means over several groups (tasks, datasets): pooled items, the mean of the group means, and
``sum(weights[g] x mean of group g)`` with the caller's weights."""


def _check_statistic(statistic: str, weights: Sequence[float] | None, n_groups: int) -> None:
    if statistic not in STATISTICS:
        raise ValueError(f"statistic {statistic!r}; allowed: {', '.join(map(repr, STATISTICS))}")
    if (statistic == "weighted") != (weights is not None):
        raise ValueError("give weights with statistic 'weighted', and only then")
    if weights is not None and len(weights) != n_groups:
        raise ValueError(f"{len(weights)} weights for {n_groups} groups")


def _kept(
    groups: Sequence[Sequence[float | None]], weights: Sequence[float] | None
) -> tuple[list[np.ndarray], list[float]]:
    """The groups that have values, each with its weight (1 when none are given). A group without
    values drops out with its weight: the caller gives weights over the groups that have values."""
    pairs = [
        (_clean(group), 1.0 if weights is None else float(w))
        for group, w in zip(groups, weights or [None] * len(groups), strict=True)
    ]
    kept = [(a, w) for a, w in pairs if a.size]
    return [a for a, _ in kept], [w for _, w in kept]


def stratified_bootstrap_ci(
    groups: Sequence[Sequence[float | None]],
    statistic: str = "macro",
    *,
    weights: Sequence[float] | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, float, np.ndarray]:
    """Interval of the macro (mean of group means), micro (pooled) or weighted mean (``weights``, one
    per group), resampling within groups.

    Returns ``(low, high, bootstrap distribution)``; ``(nan, nan, [])`` when no task has two
    values (nothing to resample).
    """
    _check_statistic(statistic, weights, len(groups))
    arrays, group_weights = _kept(groups, weights)
    if not any(a.size >= 2 for a in arrays):
        return (math.nan, math.nan, np.array([]))
    # A group of one item (or of equal values) resamples to the same mean every time: it enters the
    # statistic as a constant (scipy's bootstrap refuses samples of fewer than two observations).
    is_varying = [a.size >= 2 and not np.all(a == a[0]) for a in arrays]
    varying = [a for a, v in zip(arrays, is_varying, strict=True) if v]
    fixed = [a for a, v in zip(arrays, is_varying, strict=True) if not v]
    order = [w for w, v in zip(group_weights, is_varying, strict=True) if v] + [
        w for w, v in zip(group_weights, is_varying, strict=True) if not v
    ]
    sizes = np.array([a.size for a in varying + fixed], dtype=float)
    fixed_means = [float(np.mean(a)) for a in fixed]

    def combine(*samples, axis=-1):
        means = [np.mean(s, axis=axis) for s in samples]
        shape = np.shape(means[0]) if means else ()
        means = np.stack(means + [np.full(shape, m) for m in fixed_means])
        if statistic == "macro":
            return means.mean(axis=0)
        factors = sizes / sizes.sum() if statistic == "micro" else np.asarray(order)
        return (means * factors.reshape((-1,) + (1,) * (means.ndim - 1))).sum(axis=0)

    if not varying:
        value = float(combine())
        return (value, value, np.full(resamples, value))
    result = stats.bootstrap(
        tuple(varying),
        combine,
        n_resamples=resamples,
        method="percentile",
        confidence_level=confidence,
        vectorized=True,
        batch=_batch(int(sizes.sum())),
        rng=np.random.default_rng(seed),
    )
    return (
        float(result.confidence_interval.low),
        float(result.confidence_interval.high),
        np.asarray(result.bootstrap_distribution),
    )


def macro_mean(groups: Sequence[Sequence[float | None]]) -> float:
    means = [np.mean(g) for g in (_clean(group) for group in groups) if g.size]
    return float(np.mean(means)) if means else math.nan


def micro_mean(groups: Sequence[Sequence[float | None]]) -> float:
    pooled = np.concatenate([_clean(g) for g in groups]) if groups else np.array([])
    return float(np.mean(pooled)) if pooled.size else math.nan


def weighted_mean(groups: Sequence[Sequence[float | None]], weights: Sequence[float]) -> float:
    """``sum(weights[g] x mean of group g)`` over the groups that have values."""
    arrays, group_weights = _kept(groups, weights)
    if not arrays:
        return math.nan
    return float(sum(w * np.mean(a) for a, w in zip(arrays, group_weights, strict=True)))


def group_mean(
    groups: Sequence[Sequence[float | None]], statistic: str, weights: Sequence[float] | None = None
) -> float:
    """The ``statistic`` (``STATISTICS``) of ``groups``."""
    _check_statistic(statistic, weights, len(groups))
    if statistic == "weighted":
        return weighted_mean(groups, weights)
    return macro_mean(groups) if statistic == "macro" else micro_mean(groups)


@dataclass(frozen=True)
class PairedResult:
    n: int
    value: float
    """Mean of ``a``."""
    baseline_value: float
    """Mean of ``b``."""
    diff: float
    """Mean of ``a - b``."""
    ci95: tuple[float, float]
    test: str
    p_value: float

    def as_dict(self) -> dict:
        return {
            "n": self.n,
            "value": _json_number(self.value),
            "baseline_value": _json_number(self.baseline_value),
            "diff": _json_number(self.diff),
            "ci95": [_json_number(self.ci95[0]), _json_number(self.ci95[1])],
            "test": self.test,
            "p_value": _json_number(self.p_value),
        }


def paired(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both sides have a value."""
    x, y = as_array(a), as_array(b)
    if x.shape != y.shape:
        raise ValueError(f"paired values of different lengths ({x.size} and {y.size})")
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def paired_bootstrap(
    a: Sequence[float | None],
    b: Sequence[float | None],
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> tuple[float, tuple[float, float]]:
    """``(mean difference, interval)`` of ``a - b`` over paired items (interval ``(nan, nan)`` for
    fewer than two pairs). No p-value: the tests are ``mcnemar`` and ``sign_flip_test``."""
    x, y = paired(a, b)
    d = x - y
    if d.size == 0:
        return (math.nan, (math.nan, math.nan))
    return (float(d.mean()), bootstrap_ci(d, resamples=resamples, seed=seed, confidence=confidence))


def mcnemar(a: Sequence[float | None], b: Sequence[float | None]) -> float:
    """Exact McNemar test of two 0/1 outcomes on the same items (binomial test on the discordant pairs)."""
    x, y = paired(a, b)
    if not np.all(np.isin(x, (0.0, 1.0))) or not np.all(np.isin(y, (0.0, 1.0))):
        raise ValueError("McNemar's test needs 0/1 values")
    only_a = int(np.sum((x == 1) & (y == 0)))
    only_b = int(np.sum((x == 0) & (y == 1)))
    if only_a + only_b == 0:
        return 1.0
    return float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)


def sign_flip_test(
    differences: Sequence[Sequence[float | None]],
    statistic: str = "micro",
    *,
    weights: Sequence[float] | None = None,
    resamples: int = 9999,
    seed: int = SEED,
) -> float:
    """Two-sided paired sign-flip permutation test of a mean difference, stratified by task.

    ``differences``: one sequence of paired differences ``a - b`` per task (NaN dropped). Under
    "no difference" the two models' values of an item are exchangeable, so each pair's sign is
    flipped independently and the statistic is recomputed: ``"micro"``, the mean over all pairs, or
    ``"macro"``, the mean of the task means (the tasks keep their items, so the macro
    weights stay those of the observed statistic), or ``"weighted"``, ``sum(weights[g] x mean of
    group g)``. The p-value is the share of sign patterns whose
    statistic is at least as far from 0 as the observed one: exact over all 2**n patterns when at
    most ``EXACT_SIGN_FLIPS`` pairs differ, else ``(#{|stat_r| >= |obs|} + 1) / (R + 1)`` over
    ``resamples`` random patterns (never 0). Pairs with no difference change no statistic and are
    left out of the enumeration.
    """
    _check_statistic(statistic, weights, len(differences))
    groups, group_weights = _kept(differences, weights)
    if not groups:
        return math.nan
    total = sum(g.size for g in groups)
    # The statistic is a weighted sum of the differences: sum_i w_i * s_i * d_i with signs s_i.
    factors = {
        "macro": [1.0 / (len(groups) * g.size) for g in groups],
        "micro": [1.0 / total for _ in groups],
        "weighted": [w / g.size for g, w in zip(groups, group_weights, strict=True)],
    }[statistic]
    c = np.concatenate([f * g for f, g in zip(factors, groups, strict=True)])
    c = c[c != 0]
    if c.size == 0:
        return 1.0
    observed = abs(float(c.sum()))
    # Sign patterns reaching the observed value by another summation order must count as reaching it.
    tolerance = 1e-9 * float(np.abs(c).sum())
    if c.size <= EXACT_SIGN_FLIPS:
        patterns = 1 - 2 * ((np.arange(2**c.size)[:, None] >> np.arange(c.size)) & 1)
        return float(np.mean(np.abs(patterns @ c) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    hits, done, batch = 0, 0, _batch(c.size) // 8
    while done < resamples:
        rows = min(max(batch, 1), resamples - done)
        signs = np.where(rng.random((rows, c.size)) < 0.5, -1.0, 1.0)
        hits += int(np.sum(np.abs(signs @ c) >= observed - tolerance))
        done += rows
    return (hits + 1) / (resamples + 1)


def paired_permutation_test(
    a: Sequence[float | None], b: Sequence[float | None], *, resamples: int = 9999, seed: int = SEED
) -> float:
    """Two-sided paired sign-flip permutation test of the mean difference (exact for few items)."""
    x, y = paired(a, b)
    return sign_flip_test([x - y], "micro", resamples=resamples, seed=seed)


def compare_paired(
    a: Sequence[float | None],
    b: Sequence[float | None],
    *,
    binary: bool,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> PairedResult:
    """Model ``a`` vs baseline ``b`` on the same items: difference, its interval, and a test."""
    x, y = paired(a, b)
    diff, ci = paired_bootstrap(x, y, resamples=resamples, seed=seed, confidence=confidence)
    if binary:
        test, p_value = "mcnemar", mcnemar(x, y)
    else:
        test, p_value = (
            "paired_permutation",
            paired_permutation_test(x, y, resamples=max(resamples, TEST_RESAMPLES), seed=seed),
        )
    return PairedResult(
        n=int(x.size),
        value=float(x.mean()) if x.size else math.nan,
        baseline_value=float(y.mean()) if y.size else math.nan,
        diff=diff,
        ci95=ci,
        test=test,
        p_value=p_value,
    )


def compare_stratified(
    groups_a: Sequence[Sequence[float | None]],
    groups_b: Sequence[Sequence[float | None]],
    statistic: str = "macro",
    *,
    weights: Sequence[float] | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
) -> PairedResult:
    """Paired comparison of a micro, macro or weighted mean over groups: the difference, its interval
    by a bootstrap resampling items within each group, and the stratified sign-flip test's p-value.
    ``weights`` (statistic ``"weighted"``) are those of the groups that have pairs."""
    _check_statistic(statistic, weights, len(groups_a))
    diffs, xs, ys, kept_weights = [], [], [], []
    for index, (ga, gb) in enumerate(zip(groups_a, groups_b, strict=True)):
        x, y = paired(ga, gb)
        if x.size:
            diffs.append(x - y)
            xs.append(x)
            ys.append(y)
            kept_weights.append(1.0 if weights is None else weights[index])
    w = kept_weights if weights is not None else None
    low, high, _ = stratified_bootstrap_ci(
        diffs, statistic, weights=w, resamples=resamples, seed=seed, confidence=confidence
    )
    p_value = sign_flip_test(diffs, statistic, weights=w, resamples=max(resamples, TEST_RESAMPLES), seed=seed)
    return PairedResult(
        n=int(sum(d.size for d in diffs)),
        value=group_mean(xs, statistic, w),
        baseline_value=group_mean(ys, statistic, w),
        diff=group_mean(diffs, statistic, w),
        ci95=(low, high),
        test=f"stratified_sign_flip_{statistic}",
        p_value=p_value,
    )


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (missing ones stay missing)."""
    present = [i for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    adjusted: list[float | None] = [None] * len(p_values)
    if present:
        values = stats.false_discovery_control(
            np.asarray([p_values[i] for i in present], dtype=float), method="bh"
        )
        for i, value in zip(present, values, strict=True):
            adjusted[i] = float(value)
    return adjusted


def verdict(diff: float | None, significant: bool) -> str:
    if not significant or diff is None or diff == 0:
        return "no difference"
    return "better" if diff > 0 else "worse"
