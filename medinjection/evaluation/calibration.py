"""How far judges and text metrics agree with human labels, and whether they are biased.

The one implementation of every calibration figure, shared by ``medinjection calibrate`` (a labelled
answer set made anywhere) and ``medinjection report --ratings`` (the ratings table of ``medinjection
quality ratings pull`` beside evaluation predictions). Pure functions over plain rows: one *answer
row* per answer (a question answered by one generator, ``model``) holding its human labels (the
mean over its annotators), its length and one column per score.

Human labels (``parse_label`` checks every one, naming what is wrong):

- ``human_equivalent``: 0/1 per annotator (``yes``/``no``, ``oui``/``non``, ``true``/``false``
  also read); an answer's label is the share of its annotators who said "equivalent".
- ``human_rating``: an integer from 1 to 5 per annotator; an answer's label is the mean.

Figures of one score against one label (an *entry*, ``score_entry``), over the answers with both:

- **Correlations**: Pearson, Spearman and Kendall (tau-b), each with a percentile bootstrap
  interval over answers (seeded). The paper reports Pearson r (MedGemma-27B 0.61, Gemini 2.0 Flash
  0.57, GPT-4.1-mini 0.49, ROUGE-2 about 0.36, BLEU about 0.02); entries are ranked by it.
- **Binary agreement** (a 0/1 score against ``human_equivalent``): accuracy, Cohen's kappa and the
  F1 of "equivalent", with intervals, and the confusion counts. The label is the annotators'
  majority; answers whose annotators split evenly are left out of these three (``n_split``).
- **Verbosity**: the Pearson correlation of the score with log2(1 + answer tokens) over all
  answers, and at equal human label (score and length both centred within each label value, a
  partial correlation with the label as a category), with the slope per doubling of length at
  equal label. A score without length bias has a within-label correlation near 0.
- **Per generator**: the agreement within each generator's answers (Pearson r; accuracy for a
  binary score against ``human_equivalent``) with intervals, each generator's *offset* (its mean
  score minus the mean score of all answers with the same human label), and a test of whether the
  score depends on the generator at equal human label: a **stratified permutation test**. Generator
  names are permuted among answers of the *same human label value* (each generator keeps its mix of
  good and bad answers); the statistic is the between-generator sum of squares of the score within
  label values (a Cochran-Mantel-Haenszel-style comparison, for 0/1 and graded scores alike);
  p = (1 + #{permuted >= observed}) / (1 + permutations). Why not compare the agreements
  themselves: a generator whose answers are nearly all good has a narrow label range, hence a low
  correlation (and its accuracy follows its share of good answers) even under a neutral judge; the
  agreements differ for such reasons too, the generator effect at equal label only for a biased score.
- Judges' unparseable and failed verdicts are counted (``verdicts``), never scored.

``length_controlled`` (the report only) also needs the unlabelled answers: see its docstring.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medinjection.evaluation.stats import bootstrap_draws, percentile_interval

LABELS = ("human_equivalent", "human_rating")
RATING_SCALE = (1, 5)
EQUIVALENT_SPELLINGS = {
    "1": 1,
    "0": 0,
    "yes": 1,
    "no": 0,
    "oui": 1,
    "non": 0,
    "true": 1,
    "false": 0,
}
METHODS = ("pearson", "spearman", "kendall")
BINARY_FIGURES = ("accuracy", "cohen_kappa", "f1")
JUDGE_SCORES = ("judge_binary", "judge_graded")
SCORES = ("judge_binary", "judge_graded", "bleu_sentence", "rouge2", "meteor", "bertscore_f1")
STATUSES = ("ok", "unparseable", "failed")
LENGTH = "log2(1 + answer tokens)"
PAPER_PEARSON = {
    "medgemma-27b": ("MedGemma-27B", 0.61),
    "gemini-2.0-flash": ("Gemini 2.0 Flash", 0.57),
    "gpt-4.1-mini": ("GPT-4.1-mini", 0.49),
    "rouge2": ("ROUGE-2", 0.36),
    "bleu": ("BLEU", 0.02),
}
"""The paper's judge-human Pearson r, by a lower-case fragment of the judge model or metric name."""


class CalibrationError(ValueError):
    pass


# --- human labels -----------------------------------------------------------------------------


def parse_label(label: str, value: Any) -> int | None:
    """One annotator's label, checked: ``None`` when not given; ``CalibrationError`` (naming the
    value and what is accepted) for anything off the scale.

    ``label``: ``human_equivalent`` / ``equivalent`` (0/1, yes/no, oui/non, true/false) or
    ``human_rating`` / ``rating`` (an integer from 1 to 5).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if not text:
            return None
    binary = label.endswith("equivalent")
    if binary:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float)) and value in (0, 1):
            return int(value)
        if isinstance(value, str) and text in EQUIVALENT_SPELLINGS:
            return EQUIVALENT_SPELLINGS[text]
        raise CalibrationError(
            f"{value!r} is not a yes/no label (accepted: 0/1, yes/no, oui/non, true/false)"
        )
    low, high = RATING_SCALE
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(text)
        except ValueError:
            number = None
    if number is None or not number.is_integer() or not low <= number <= high:
        raise CalibrationError(f"{value!r} is not a rating from {low} to {high} (an integer)")
    return int(number)


def human_scores(
    ratings: Iterable[dict[str, Any]], where: str = "ratings row"
) -> dict[tuple[str, str], dict[str, Any]]:
    """Per rated answer ``(item_id, model)`` of a ``quality ratings pull`` table: the mean rating, the
    share "equivalent" and the number of annotators. Every label is checked (``parse_label``);
    a row is named ``<where> <index>`` (or by its ``_where`` key, set by a reader that knows lines)."""
    by_answer: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for number, row in enumerate(ratings):
        place = row.get("_where") or f"{where} {number}"
        for key in ("item_id", "model", "rating", "equivalent"):
            if key not in row:
                raise CalibrationError(f"{place}: no {key!r} column (a `quality ratings pull` table?)")
        checked = {}
        for key in ("rating", "equivalent"):
            try:
                checked[key] = parse_label(key, row[key])
            except CalibrationError as err:
                raise CalibrationError(f"{place}: field {key!r}: {err}") from None
        by_answer[(row["item_id"], row["model"])].append(checked)
    out = {}
    for key, rows in by_answer.items():
        out[key] = {
            "human_rating": _mean(r["rating"] for r in rows),
            "human_equivalent": _mean(r["equivalent"] for r in rows),
            "n_annotators": len(rows),
        }
    return out


def _mean(values: Iterable[float | None]) -> float | None:
    given = [float(v) for v in values if v is not None]
    return float(np.mean(given)) if given else None


def label_counts(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the labels are: per label, the answers carrying it and their values."""
    out: dict[str, Any] = {"annotations": int(sum(a.get("n_annotators") or 1 for a in answers))}
    shares = [a["human_equivalent"] for a in answers if a.get("human_equivalent") is not None]
    if shares:
        out["human_equivalent"] = {
            "n": len(shares),
            "equivalent": sum(s > 0.5 for s in shares),
            "not_equivalent": sum(s < 0.5 for s in shares),
            "split": sum(s == 0.5 for s in shares),
        }
    ratings = [a["human_rating"] for a in answers if a.get("human_rating") is not None]
    if ratings:
        counts = Counter(f"{r:g}" for r in ratings)
        out["human_rating"] = {
            "n": len(ratings),
            "mean": float(np.mean(ratings)),
            "values": {k: counts[k] for k in sorted(counts, key=float)},
        }
    return out


# --- correlations -----------------------------------------------------------------------------


def correlation(x: Sequence[float], y: Sequence[float], method: str) -> float:
    """Pearson, Spearman or Kendall tau-b; NaN when either side is constant or n < 3."""
    if method not in METHODS:
        raise ValueError(f"unknown correlation {method!r}; known: {list(METHODS)}")
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    return float(_correlation_rows(x[None, :], y[None, :], method)[0])


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of two ``(R, n)`` arrays (NaN for a constant row or n < 3)."""
    if x.shape[1] < 3:
        return np.full(x.shape[0], np.nan)
    xm = x - x.mean(axis=1, keepdims=True)
    ym = y - y.mean(axis=1, keepdims=True)
    sxy, sxx, syy = (xm * ym).sum(axis=1), (xm * xm).sum(axis=1), (ym * ym).sum(axis=1)
    undefined = (np.ptp(x, axis=1) == 0) | (np.ptp(y, axis=1) == 0) | (x.shape[1] < 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    r = np.clip(r, -1.0, 1.0)
    r[undefined] = np.nan
    return r


def _correlation_rows(x: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    if method == "pearson":
        return _pearson_rows(x, y)
    from scipy import stats

    if x.shape[1] < 3:
        return np.full(x.shape[0], np.nan)
    if method == "spearman":
        return _pearson_rows(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))
    out = np.full(x.shape[0], np.nan)
    for i in range(x.shape[0]):
        if x.shape[1] >= 3 and np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            out[i] = stats.kendalltau(x[i], y[i]).statistic
    return out


def _draws(n: int, resamples: int, seed: int) -> np.ndarray:
    """The seeded bootstrap resamples of ``n`` answers, one row each (``stats.bootstrap_draws``)."""
    if n == 0 or resamples == 0:
        return np.zeros((0, n), dtype=np.int64)
    return np.stack(bootstrap_draws(n, resamples, np.random.default_rng(seed)))


def _figure(values: np.ndarray, samples: np.ndarray, confidence: float) -> dict[str, Any]:
    value = float(values[0])
    return {
        "value": None if math.isnan(value) else value,
        "ci95": None if math.isnan(value) else percentile_interval(samples.tolist(), confidence),
    }


def correlations(
    x: Sequence[float], y: Sequence[float], *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """``{"n", "pearson": {"value", "ci95"}, "spearman": ..., "kendall": ...}`` over the pairs
    (one seeded bootstrap of the answers shared by the three)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    draws = _draws(len(x), resamples, seed)
    out: dict[str, Any] = {"n": len(x)}
    for method in METHODS:
        value = _correlation_rows(x[None, :], y[None, :], method)
        samples = _correlation_rows(x[draws], y[draws], method) if len(draws) else np.array([])
        out[method] = _figure(value, samples, confidence)
    return out


# --- binary agreement -------------------------------------------------------------------------


def majority(shares: np.ndarray) -> np.ndarray:
    """The annotators' majority of a share "equivalent": 1, 0, or NaN when they split evenly."""
    out = np.where(shares > 0.5, 1.0, 0.0)
    out[shares == 0.5] = np.nan
    return out


def _binary_rows(s: np.ndarray, h: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, Cohen's kappa and F1 ("equivalent" the positive class) of each row pair of 0/1 arrays."""
    n = s.shape[1]
    tp = (s * h).sum(axis=1)
    fp = (s * (1 - h)).sum(axis=1)
    fn = ((1 - s) * h).sum(axis=1)
    tn = n - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = (tp + tn) / n
        chance = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
        kappa = np.where(chance < 1, (accuracy - chance) / (1 - chance), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return {"accuracy": accuracy, "cohen_kappa": kappa, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def binary_agreement(
    score: Sequence[float],
    shares: Sequence[float],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Accuracy, Cohen's kappa and F1 of a 0/1 score against the annotators' majority, with
    intervals, and the confusion counts; even splits are left out (``n_split``)."""
    s, h = np.asarray(score, dtype=float), majority(np.asarray(shares, dtype=float))
    kept = ~np.isnan(h)
    s, h = s[kept], h[kept]
    if not np.all(np.isin(s, (0.0, 1.0))):
        raise CalibrationError("binary agreement needs 0/1 scores")
    out: dict[str, Any] = {"n": int(kept.sum()), "n_split": int((~kept).sum())}
    if not len(s):
        return {**out, **{name: {"value": None, "ci95": None} for name in BINARY_FIGURES}}
    values = _binary_rows(s[None, :], h[None, :])
    draws = _draws(len(s), resamples, seed)
    samples = _binary_rows(s[draws], h[draws]) if len(draws) else {k: np.array([]) for k in values}
    for name in BINARY_FIGURES:
        out[name] = _figure(values[name], samples[name], confidence)
    out["confusion"] = {k: int(values[k][0]) for k in ("tp", "fp", "fn", "tn")}
    return out


# --- verbosity --------------------------------------------------------------------------------


def log_length(tokens: Sequence[float]) -> np.ndarray:
    """log2(1 + tokens): a doubling of a long answer is one unit."""
    return np.log2(1.0 + np.asarray(tokens, dtype=float))


def answer_length(row: dict[str, Any]) -> int:
    """The answer's length in tokens (``answer_tokens``; words when the row has no token count)."""
    tokens = row.get("answer_tokens")
    if tokens is not None and not (isinstance(tokens, float) and math.isnan(tokens)):
        return int(tokens)
    return len((row.get("answer_text") or row.get("answer") or "").split())


def _codes(values: Sequence[Any]) -> tuple[np.ndarray, int]:
    _, codes = np.unique(np.asarray([str(v) for v in values]), return_inverse=True)
    return codes.astype(np.int64), int(codes.max()) + 1 if len(codes) else 0


def _centred_rows(values: np.ndarray, codes: np.ndarray, groups: int) -> np.ndarray:
    """Each row of ``values`` minus its group means (``codes``: the group of each cell, same shape)."""
    rows = values.shape[0]
    flat = (codes + groups * np.arange(rows)[:, None]).ravel()
    counts = np.bincount(flat, minlength=rows * groups)
    sums = np.bincount(flat, weights=values.ravel(), minlength=rows * groups)
    means = sums / np.maximum(counts, 1)
    return values - means[flat].reshape(values.shape)


def _within_rows(
    s: np.ndarray, ell: np.ndarray, codes: np.ndarray, groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """(correlation, slope) of score and log length after centring both within each group, per row."""
    if s.shape[1] < 3:
        return np.full(s.shape[0], np.nan), np.full(s.shape[0], np.nan)
    sc, lc = _centred_rows(s, codes, groups), _centred_rows(ell, codes, groups)
    num, ss, ll = (sc * lc).sum(axis=1), (sc * sc).sum(axis=1), (lc * lc).sum(axis=1)
    # a score or length constant within every group centres to rounding noise: no figure
    flat_s = ss <= 1e-12 * np.maximum((s * s).sum(axis=1), 1e-300)
    flat_l = ll <= 1e-12 * np.maximum((ell * ell).sum(axis=1), 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(flat_s | flat_l, np.nan, num / np.sqrt(ss * ll))
        slope = np.where(flat_l, np.nan, np.where(flat_s, 0.0, num / ll))
    return np.clip(corr, -1.0, 1.0), slope


def within_correlation(score: Sequence[float], loglen: Sequence[float], groups: Sequence[Any]) -> float:
    """Pearson correlation of score and log length after centring both within each group."""
    codes, n_groups = _codes(groups)
    s, ell = np.asarray(score, dtype=float)[None, :], np.asarray(loglen, dtype=float)[None, :]
    return float(_within_rows(s, ell, codes[None, :], n_groups)[0][0])


def within_slope(score: Sequence[float], loglen: Sequence[float], groups: Sequence[Any]) -> float:
    """OLS slope of score on log length with one intercept per group (the pooled within-group slope)."""
    codes, n_groups = _codes(groups)
    s, ell = np.asarray(score, dtype=float)[None, :], np.asarray(loglen, dtype=float)[None, :]
    return float(_within_rows(s, ell, codes[None, :], n_groups)[1][0])


def verbosity(
    score: Sequence[float],
    lengths: Sequence[float],
    label: Sequence[float],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Length preference of a score: its correlation with log2(1 + tokens) over all answers and at
    equal human label, and its change per doubling of length at equal label (with intervals)."""
    s, ell = np.asarray(score, dtype=float), log_length(lengths)
    codes, groups = _codes(label)
    n = len(s)
    draws = _draws(n, resamples, seed)
    whole = np.arange(n)[None, :]
    corr, slope = _within_rows(s[whole], ell[whole], codes[whole], groups)
    if len(draws):
        corr_b, slope_b = _within_rows(s[draws], ell[draws], codes[draws], groups)
        length_b = _pearson_rows(s[draws], ell[draws])
    else:
        corr_b = slope_b = length_b = np.array([])
    return {
        "length": LENGTH,
        "n": n,
        "with_length": _figure(_pearson_rows(s[whole], ell[whole]), length_b, confidence),
        "at_equal_label": _figure(corr, corr_b, confidence),
        "slope_at_equal_label": _figure(slope, slope_b, confidence),
    }


# --- per generator ----------------------------------------------------------------------------


def _grouped_pearson(x: np.ndarray, y: np.ndarray, codes: np.ndarray, groups: int) -> np.ndarray:
    """Pearson r of x and y within each group, for each row of ``codes`` (``(P, n)`` -> ``(P, groups)``)."""
    rows = codes.shape[0]
    flat = (codes + groups * np.arange(rows)[:, None]).ravel()
    size = rows * groups
    counts = np.bincount(flat, minlength=size)
    xs, ys = np.broadcast_to(x, codes.shape).ravel(), np.broadcast_to(y, codes.shape).ravel()
    mean_x = np.bincount(flat, weights=xs, minlength=size) / np.maximum(counts, 1)
    mean_y = np.bincount(flat, weights=ys, minlength=size) / np.maximum(counts, 1)
    dx, dy = xs - mean_x[flat], ys - mean_y[flat]
    sxy = np.bincount(flat, weights=dx * dy, minlength=size)
    sxx = np.bincount(flat, weights=dx * dx, minlength=size)
    syy = np.bincount(flat, weights=dy * dy, minlength=size)
    # a group whose x (or y) is constant: its centred squares are rounding noise
    raw_x = np.bincount(flat, weights=xs * xs, minlength=size)
    raw_y = np.bincount(flat, weights=ys * ys, minlength=size)
    flat_x = sxx <= 1e-12 * np.maximum(raw_x, 1e-300)
    flat_y = syy <= 1e-12 * np.maximum(raw_y, 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip(sxy / np.sqrt(sxx * syy), -1.0, 1.0)
    r[(counts < 3) | flat_x | flat_y] = np.nan
    return r.reshape(rows, groups)


def _grouped_accuracy(s: np.ndarray, h: np.ndarray, codes: np.ndarray, groups: int) -> np.ndarray:
    rows = codes.shape[0]
    flat = (codes + groups * np.arange(rows)[:, None]).ravel()
    agree = np.broadcast_to((s == h).astype(float), codes.shape).ravel()
    counts = np.bincount(flat, minlength=rows * groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.bincount(flat, weights=agree, minlength=rows * groups) / counts).reshape(rows, groups)


def _spread(values: np.ndarray) -> np.ndarray:
    """Largest minus smallest defined value of each row (NaN with fewer than two defined)."""
    defined = ~np.isnan(values)
    high = np.where(defined, values, -np.inf).max(axis=1)
    low = np.where(defined, values, np.inf).min(axis=1)
    return np.where(defined.sum(axis=1) >= 2, high - low, np.nan)


def _generator_effect(
    residuals: np.ndarray, strata: np.ndarray, codes: np.ndarray, generators: int
) -> np.ndarray:
    """Between-generator sum of squares of the score within label strata, per row of ``codes``:
    sum over (stratum, generator) cells of (sum of residuals)^2 / size, the residual being the score
    minus its stratum's mean (the same for every row: the strata keep their answers)."""
    rows = codes.shape[0]
    n_strata = int(strata.max()) + 1
    cells = n_strata * generators
    flat = (strata[None, :] * generators + codes + cells * np.arange(rows)[:, None]).ravel()
    weights = np.broadcast_to(residuals, codes.shape).ravel()
    sums = np.bincount(flat, weights=weights, minlength=rows * cells)
    counts = np.bincount(flat, minlength=rows * cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(counts > 0, sums * sums / np.maximum(counts, 1), 0.0)
    return terms.reshape(rows, cells).sum(axis=1)


def per_generator(
    score: Sequence[float],
    label: Sequence[float],
    models: Sequence[str],
    statistic: str = "pearson",
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The agreement of a score with the human label within each generator's answers, each
    generator's offset at equal label, and the stratified permutation test of the generator effect
    (see the module docstring).

    ``statistic``: ``pearson`` (any score), or ``accuracy`` (a 0/1 score against the majority of
    ``human_equivalent`` shares; even splits left out).
    """
    s, h = np.asarray(score, dtype=float), np.asarray(label, dtype=float)
    names = np.asarray(models, dtype=object)
    if statistic == "accuracy":
        h = majority(h)
        kept = ~np.isnan(h)
        s, h, names = s[kept], h[kept], names[kept]
    elif statistic != "pearson":
        raise ValueError(f"unknown agreement statistic {statistic!r}; known: pearson, accuracy")
    generators = sorted(set(names.tolist()))
    index = {m: i for i, m in enumerate(generators)}
    codes = np.asarray([index[m] for m in names], dtype=np.int64)
    groups = len(generators)
    strata, _ = _codes(h)
    residuals = _centred_rows(s[None, :], strata[None, :], int(strata.max()) + 1 if len(s) else 0)[0]
    observed = (
        (
            _grouped_pearson(s, h, codes[None, :], groups)
            if statistic == "pearson"
            else _grouped_accuracy(s, h, codes[None, :], groups)
        )[0]
        if groups
        else np.array([])
    )
    per_model = {}
    for number, model in enumerate(generators):
        mine = np.flatnonzero(codes == number)
        draws = _draws(len(mine), resamples, seed + 1 + number)
        if len(draws) and not math.isnan(observed[number]):
            picked = mine[draws]
            samples = (
                _pearson_rows(s[picked], h[picked])
                if statistic == "pearson"
                else _grouped_accuracy(s[picked], h[picked], np.zeros_like(picked), 1)[:, 0]
            )
        else:
            samples = np.array([])
        per_model[model] = {
            "n": len(mine),
            **_figure(observed[number : number + 1], samples, confidence),
            "offset": float(residuals[mine].mean()),
        }
    spread = float(_spread(observed[None, :])[0]) if groups else math.nan
    test: dict[str, Any] = {
        "method": "stratified permutation test of the generator effect on the score at equal human label "
        "(generators permuted within each label value; statistic: between-generator sum of squares)",
        "permutations": resamples,
        "p_value": None,
    }
    if groups >= 2 and resamples:
        rng = np.random.default_rng(seed)
        permuted = np.empty((resamples, len(codes)), dtype=np.int64)
        for stratum in np.unique(strata):
            members = np.flatnonzero(strata == stratum)
            permuted[:, members] = rng.permuted(np.tile(codes[members], (resamples, 1)), axis=1)
        n_strata = int(strata.max()) + 1
        effect = float(_generator_effect(residuals, strata, codes[None, :], groups)[0])
        null = _generator_effect(residuals, strata, permuted, groups)
        # equal up to rounding counts as "as extreme"; no effect at all (one generator per label) -> p 1
        tolerance = 1e-9 * max(effect, float(np.dot(residuals, residuals)), 1e-300)
        test["p_value"] = float((1 + np.sum(null >= effect - tolerance)) / (1 + resamples))
        test["effect"] = effect
        test["strata"] = n_strata
    return {
        "statistic": statistic,
        "models": per_model,
        "spread": None if math.isnan(spread) else spread,
        "test": test,
    }


# --- entries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """A score to calibrate: ``column`` of the answer rows (``<column>_status`` for a judge's
    verdicts), shown as ``name``; ``binary`` for a 0/1 score; ``details`` go into its entries."""

    name: str
    column: str
    kind: str = "metric"  # "metric" | "judge"
    binary: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def score_entry(
    answers: Sequence[dict[str, Any]],
    score: Score,
    label: str,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any] | None:
    """Every figure of ``score`` against ``label`` over the answers with both (``None`` when the
    label is given for no answer)."""
    labelled = [a for a in answers if a.get(label) is not None]
    if not labelled:
        return None
    rows = [a for a in labelled if _number(a.get(score.column)) is not None]
    options = {"resamples": resamples, "seed": seed, "confidence": confidence}
    s = np.asarray([float(a[score.column]) for a in rows], dtype=float)
    h = np.asarray([float(a[label]) for a in rows], dtype=float)
    entry: dict[str, Any] = {"name": score.name, "kind": score.kind, "score": score.column, "label": label}
    entry.update(score.details)
    if score.kind == "judge":
        statuses = Counter(a.get(f"{score.column}_status") or "ok" for a in labelled)
        entry["verdicts"] = {status: statuses.get(status, 0) for status in STATUSES}
    entry.update(correlations(s, h, **options))
    binary = score.binary and label == "human_equivalent"
    if binary:
        agreement = binary_agreement(s, h, **options)
        entry.update({k: agreement[k] for k in (*BINARY_FIGURES, "n_split")})
        entry["confusion"] = agreement.get("confusion")
    entry["bias"] = {
        "verbosity": verbosity(s, [a["length"] for a in rows], h, **options),
        "per_generator": per_generator(
            s, h, [a["model"] for a in rows], "accuracy" if binary else "pearson", **options
        ),
    }
    return entry


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, str) or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def calibrate_answers(
    answers: Sequence[dict[str, Any]],
    scores: Sequence[Score],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """``{"n", "labels", "bootstrap", "metrics": [entries], "judges": [entries]}``: one entry per
    score and per human label given."""
    options = {"resamples": resamples, "seed": seed, "confidence": confidence}
    out: dict[str, Any] = {
        "n": len(answers),
        "labels": label_counts(answers),
        "bootstrap": {"method": "percentile, over answers", **options},
        "metrics": [],
        "judges": [],
    }
    for score in scores:
        for label in LABELS:
            entry = score_entry(answers, score, label, **options)
            if entry is not None:
                out["judges" if score.kind == "judge" else "metrics"].append(entry)
    return out


def ranked(result: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """The entries against ``label``, best agreement (Pearson r) first; undefined ones last."""
    entries = [e for e in (*result["judges"], *result["metrics"]) if e["label"] == label]
    return sorted(
        entries,
        key=lambda e: (e["pearson"]["value"] is None, -(e["pearson"]["value"] or 0.0), e["name"]),
    )


def paper_figure(entry: dict[str, Any]) -> tuple[str, float] | None:
    """The paper's Pearson r for this judge model or metric, when it reports one."""
    name = str(entry.get("model") or entry["score"]).lower()
    for fragment, figure in PAPER_PEARSON.items():
        if fragment in name:
            return figure
    return None


# --- the report's ratings table joined to evaluation predictions --------------------------------


def join(
    ratings: Iterable[dict[str, Any]], predictions: dict[str, Sequence[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """One answer row per rated answer found in the predictions: the human labels beside the
    model's scores, verdict statuses and length.

    ``predictions``: OEQ prediction rows by model name (the name the answers were pushed under).
    Rated answers of a model or item absent from the predictions are an error (wrong files).
    """
    humans = human_scores(ratings)
    index = {(row["id"], model): row for model, rows in predictions.items() for row in rows}
    missing = sorted(key for key in humans if key not in index)
    if missing:
        shown = ", ".join(f"{item} ({model})" for item, model in missing[:5])
        raise CalibrationError(
            f"{len(missing)} rated answers are not in the predictions given: {shown}"
            f"{' ...' if len(missing) > 5 else ''} (known models: {sorted(predictions)})"
        )
    joined = []
    for (item, model), human in sorted(humans.items()):
        row = index[(item, model)]
        joined.append({"id": item, "model": model, **human, **_scores(row), "length": answer_length(row)})
    return joined


def _scores(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {name: _number(row.get(name)) for name in SCORES}
    for name in JUDGE_SCORES:
        if row.get(f"{name}_status") is not None:
            out[f"{name}_status"] = row[f"{name}_status"]
    return out


def prediction_scores(
    joined: Sequence[dict[str, Any]], predictions: dict[str, Sequence[dict]]
) -> list[Score]:
    """The scores present in the joined rows, judges first (named after their judge model when the
    predictions record one)."""
    found = []
    for name in SCORES:
        if not any(r.get(name) is not None or r.get(f"{name}_status") for r in joined):
            continue
        if name in JUDGE_SCORES:
            models = sorted(
                {
                    str(r[f"{name}_model"])
                    for rows in predictions.values()
                    for r in rows
                    if r.get(f"{name}_model")
                }
            )
            details = {"model": ", ".join(models)} if models else {}
            for key, column in (("prompt", f"{name}_prompt"), ("prompt_sha256", f"{name}_prompt_sha256")):
                found_values = sorted(
                    {str(r[column]) for rows in predictions.values() for r in rows if r.get(column)}
                )
                if found_values:
                    details[key] = ", ".join(found_values)
            found.append(Score(name, name, "judge", name == "judge_binary", details))
        else:
            found.append(Score(name, name))
    return found


def calibrate(
    ratings: Sequence[dict[str, Any]],
    predictions: dict[str, Sequence[dict[str, Any]]],
    *,
    joined: Sequence[dict[str, Any]] | None = None,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The report's calibration: every figure of ``calibrate_answers`` on the rated answers (``joined``:
    ``join(ratings, predictions)``, computed when not given), and the length-controlled judge scores
    of every answer."""
    options = {"resamples": resamples, "seed": seed, "confidence": confidence}
    if joined is None:
        joined = join(ratings, predictions) if ratings else []
    result = calibrate_answers(joined, prediction_scores(joined, predictions), **options)
    result["n_ratings"] = len(ratings)
    result["n_annotators"] = len({r.get("annotator") for r in ratings})
    result["length_controlled"] = {
        s: length_controlled(predictions, s, joined, **options)
        for s in JUDGE_SCORES
        if any(_number(r.get(s)) is not None for rows in predictions.values() for r in rows)
    }
    return result


# --- length control (the report) ---------------------------------------------------------------


def length_controlled(
    predictions: dict[str, Sequence[dict[str, Any]]],
    score: str = "judge_graded",
    joined: Sequence[dict[str, Any]] | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any] | None:
    """Length-controlled ``score`` per model: its mean score minus ``slope`` x (its mean log2 length
    minus the mean log2 length of all answers).

    ``slope`` is the score's change per doubling of length at equal human rating, from the rated
    answers ``joined`` (so it removes the preference for length, not real quality). Without them it
    is the within-model slope (as in AlpacaEval's length control), which may also absorb real
    quality differences; the result says which was used.
    """
    per_model: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for model, rows in sorted(predictions.items()):
        kept = [r for r in rows if _number(r.get(score)) is not None]
        if kept:
            per_model[model] = (
                np.asarray([float(r[score]) for r in kept], dtype=float),
                log_length([answer_length(r) for r in kept]),
            )
    if not per_model:
        return None
    reference = float(np.mean(np.concatenate([ell for _, ell in per_model.values()])))
    rated = [r for r in (joined or []) if r.get(score) is not None and r.get("human_rating") is not None]
    if rated:
        slope_source = "within human-rating levels (rated answers)"
        s = np.asarray([r[score] for r in rated], dtype=float)
        ell = log_length([r["length"] for r in rated])
        groups = np.asarray([r["human_rating"] for r in rated], dtype=float)
    else:
        slope_source = "within models (no human ratings: may absorb real quality differences)"
        s = np.concatenate([v for v, _ in per_model.values()])
        ell = np.concatenate([e for _, e in per_model.values()])
        groups = np.asarray([m for m, (v, _) in per_model.items() for _ in range(len(v))])
    codes, n_groups = _codes(groups)
    slope = float(_within_rows(s[None, :], ell[None, :], codes[None, :], n_groups)[1][0])
    if math.isnan(slope):
        slope = 0.0
        slope_source += "; lengths do not vary: slope 0"
    # One generator: the slope's resamples, then each model's, in turn.
    rng = np.random.default_rng(seed)
    draws = np.stack(bootstrap_draws(len(s), resamples, rng)) if resamples else np.zeros((0, len(s)), int)
    slope_draws = _within_rows(s[draws], ell[draws], codes[draws], n_groups)[1] if resamples else []
    slope_draws = [0.0 if math.isnan(b) else float(b) for b in slope_draws]
    models = {}
    for model, (values, lengths) in per_model.items():
        n = len(values)
        model_draws = bootstrap_draws(n, resamples, rng)
        samples = [
            float(values[d].mean() - b * (lengths[d].mean() - reference))
            for b, d in zip(slope_draws, model_draws, strict=True)
        ]
        models[model] = {
            "value": float(values.mean() - slope * (lengths.mean() - reference)),
            "ci95": percentile_interval(samples, confidence),
            "n": n,
            "raw": float(values.mean()),
            "mean_log2_length": float(lengths.mean()),
        }
    return {
        "score": score,
        "slope": slope,
        "slope_source": slope_source,
        "reference_log2_length": reference,
        "models": models,
    }
