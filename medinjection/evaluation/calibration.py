"""How far the judge and the text metrics agree with human ratings, and how much the judge likes length.

Inputs: the ratings table of ``medinjection quality ratings pull`` (one row per submitted response:
``item_id, model, annotator, rating 1-5, equivalent yes/no``) and the OEQ prediction rows of the
rated models (``answer_tokens``, the metric and judge columns). A rated answer is one (item, model)
pair; its human score is the mean rating of its annotators (and the share who said "equivalent").

- **Correlations** of each score with the human rating: Pearson, Spearman and Kendall (tau-b),
  each with a percentile bootstrap interval over rated answers and the number of rated answers.
  The paper reports Pearson r (MedGemma-27B 0.61, ROUGE-2 about 0.36, BLEU about 0.02).
- **Verbosity bias**: the correlation of the judge score with the answer's length (log2 tokens),
  overall, and *at equal human rating*: both centred within each human-rating level, then
  correlated (a partial correlation with the rating as a category). A judge without length bias
  has a within-rating correlation near 0.
- **Length-controlled judge score** of each model: its mean judge score minus ``slope`` x (its mean
  log2 length minus the mean log2 length of all answers), where ``slope`` is the judge's change per
  doubling of length at equal human rating (so it removes the preference for length, not real
  quality). Without ratings the slope is the within-model one (as in AlpacaEval's length
  control), which may also absorb real quality differences; the result says which was used.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from medinjection.evaluation.stats import bootstrap_draws, percentile_interval

JUDGE_SCORES = ("judge_binary", "judge_graded")
SCORES = ("judge_binary", "judge_graded", "bleu_sentence", "rouge2", "meteor", "bertscore_f1")
TARGETS = ("rating", "equivalent")
METHODS = ("pearson", "spearman", "kendall")


class CalibrationError(ValueError):
    pass


# --- correlations -----------------------------------------------------------------------------


def _rank(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values)


def correlation(x: Sequence[float], y: Sequence[float], method: str) -> float:
    """Pearson, Spearman or Kendall tau-b; NaN when either side is constant or n < 3."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    if method == "pearson":
        return float(np.corrcoef(x, y)[0, 1])
    if method == "spearman":
        return float(np.corrcoef(_rank(x), _rank(y))[0, 1])
    if method == "kendall":
        return float(stats.kendalltau(x, y).statistic)
    raise ValueError(f"unknown correlation {method!r}; known: {list(METHODS)}")


def correlations(
    x: Sequence[float], y: Sequence[float], *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, Any]:
    """``{"n", "pearson": {"value", "ci95"}, "spearman": ..., "kendall": ...}`` over the pairs."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    draws = bootstrap_draws(n, resamples, np.random.default_rng(seed)) if n else []
    out: dict[str, Any] = {"n": n}
    for method in METHODS:
        value = correlation(x, y, method)
        out[method] = {
            "value": None if math.isnan(value) else value,
            "ci95": percentile_interval((correlation(x[d], y[d], method) for d in draws), confidence),
        }
    return out


# --- joining ratings and predictions -----------------------------------------------------------


def human_scores(ratings: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per rated answer ``(item_id, model)``: mean rating, share "equivalent", annotators."""
    by_answer: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for number, row in enumerate(ratings):
        for key in ("item_id", "model", "rating", "equivalent"):
            if key not in row:
                raise CalibrationError(
                    f"ratings row {number}: no {key!r} column (a `quality ratings pull` table?)"
                )
        by_answer[(row["item_id"], row["model"])].append(row)
    out = {}
    for key, rows in by_answer.items():
        ratings_given = [r["rating"] for r in rows if r["rating"] is not None]
        equivalent = [r["equivalent"] for r in rows if r["equivalent"] is not None]
        out[key] = {
            "rating": float(np.mean(ratings_given)) if ratings_given else None,
            "equivalent": float(np.mean(equivalent)) if equivalent else None,
            "n_annotators": len(rows),
        }
    return out


def join(
    ratings: Iterable[dict[str, Any]], predictions: dict[str, Sequence[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """One row per rated answer found in the predictions: the human scores beside the model's scores.

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
        joined.append(
            {"item_id": item, "model": model, **human, **_scores(row), "length": answer_length(row)}
        )
    return joined


def _scores(row: dict[str, Any]) -> dict[str, float | None]:
    out = {}
    for name in SCORES:
        value = row.get(name)
        out[name] = (
            None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        )
    return out


def answer_length(row: dict[str, Any]) -> int:
    """The answer's length in tokens (``answer_tokens``; words when a file lacks the column)."""
    tokens = row.get("answer_tokens")
    if tokens is not None and not (isinstance(tokens, float) and math.isnan(tokens)):
        return int(tokens)
    return len((row.get("answer_text") or "").split())


def log_length(tokens: Sequence[float]) -> np.ndarray:
    """log2(1 + tokens): a doubling of a long answer is one unit."""
    return np.log2(1.0 + np.asarray(tokens, dtype=float))


def _pairs(rows: Sequence[dict], x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    kept = [(r[x], r[y]) for r in rows if r.get(x) is not None and r.get(y) is not None]
    if not kept:
        return np.array([]), np.array([])
    a, b = zip(*kept, strict=True)
    return np.asarray(a, dtype=float), np.asarray(b, dtype=float)


def human_correlations(
    joined: Sequence[dict[str, Any]], *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{score: {target: correlations(...)}}`` for every score present in the joined rows."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for score in SCORES:
        if not any(r.get(score) is not None for r in joined):
            continue
        out[score] = {}
        for target in TARGETS:
            x, y = _pairs(joined, score, target)
            out[score][target] = correlations(x, y, resamples=resamples, seed=seed, confidence=confidence)
    return out


# --- verbosity bias ---------------------------------------------------------------------------


def _centred(values: np.ndarray, groups: Sequence[Any]) -> np.ndarray:
    out = np.array(values, dtype=float)
    groups = np.asarray([str(g) for g in groups])
    for group in np.unique(groups):
        mask = groups == group
        out[mask] -= out[mask].mean()
    return out


def within_slope(score: np.ndarray, loglen: np.ndarray, groups: Sequence[Any]) -> float:
    """OLS slope of score on log length with one intercept per group (the pooled within-group slope)."""
    s, ell = _centred(score, groups), _centred(loglen, groups)
    denominator = float(np.dot(ell, ell))
    return math.nan if denominator == 0 else float(np.dot(s, ell) / denominator)


def within_correlation(score: np.ndarray, loglen: np.ndarray, groups: Sequence[Any]) -> float:
    """Pearson correlation of score and log length after centring both within each group."""
    s, ell = _centred(score, groups), _centred(loglen, groups)
    if np.dot(s, s) == 0 or np.dot(ell, ell) == 0:
        return math.nan
    return float(np.dot(s, ell) / math.sqrt(np.dot(s, s) * np.dot(ell, ell)))


def _entry(value: float, samples: Iterable[float], n: int, confidence: float) -> dict[str, Any]:
    return {
        "value": None if math.isnan(value) else value,
        "ci95": percentile_interval(samples, confidence),
        "n": n,
    }


def verbosity_bias(
    joined: Sequence[dict[str, Any]],
    score: str = "judge_graded",
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any] | None:
    """Length preference of ``score`` on rated answers: overall and at equal human rating."""
    rows = [r for r in joined if r.get(score) is not None and r.get("rating") is not None]
    if not rows:
        return None
    s = np.asarray([r[score] for r in rows], dtype=float)
    ell = log_length([r["length"] for r in rows])
    levels = [r["rating"] for r in rows]
    n = len(rows)
    draws = bootstrap_draws(n, resamples, np.random.default_rng(seed))
    lv = np.asarray(levels, dtype=float)
    return {
        "score": score,
        "length": "log2(1 + answer tokens)",
        "length_correlation": _entry(
            correlation(s, ell, "pearson"),
            (correlation(s[d], ell[d], "pearson") for d in draws),
            n,
            confidence,
        ),
        "within_rating_correlation": _entry(
            within_correlation(s, ell, levels),
            (within_correlation(s[d], ell[d], lv[d]) for d in draws),
            n,
            confidence,
        ),
        "within_rating_slope": _entry(
            within_slope(s, ell, levels), (within_slope(s[d], ell[d], lv[d]) for d in draws), n, confidence
        ),
    }


def length_controlled(
    predictions: dict[str, Sequence[dict[str, Any]]],
    score: str = "judge_graded",
    joined: Sequence[dict[str, Any]] | None = None,
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any] | None:
    """Length-controlled ``score`` per model (see the module docstring).

    Args:
        predictions: OEQ prediction rows by model (every judged answer, rated or not).
        joined: the rated answers (``join``); with them the slope is taken at equal human rating,
            else within models.
    """
    per_model: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for model, rows in sorted(predictions.items()):
        kept = [r for r in rows if _scores(r).get(score) is not None]
        if kept:
            per_model[model] = (
                np.asarray([float(r[score]) for r in kept], dtype=float),
                log_length([answer_length(r) for r in kept]),
            )
    if not per_model:
        return None
    reference = float(np.mean(np.concatenate([ell for _, ell in per_model.values()])))
    rated = [r for r in (joined or []) if r.get(score) is not None and r.get("rating") is not None]
    if rated:
        slope_source = "within human-rating levels (rated answers)"
        s = np.asarray([r[score] for r in rated], dtype=float)
        ell = log_length([r["length"] for r in rated])
        groups = np.asarray([r["rating"] for r in rated], dtype=float)
    else:
        slope_source = "within models (no human ratings: may absorb real quality differences)"
        s = np.concatenate([v for v, _ in per_model.values()])
        ell = np.concatenate([e for _, e in per_model.values()])
        groups = np.asarray([m for m, (v, _) in per_model.items() for _ in range(len(v))])
    slope = within_slope(s, ell, groups)
    if math.isnan(slope):
        slope = 0.0
        slope_source += "; lengths do not vary: slope 0"
    # One generator: the slope's resamples, then each model's, in turn.
    rng = np.random.default_rng(seed)
    slope_draws = [within_slope(s[d], ell[d], groups[d]) for d in bootstrap_draws(len(s), resamples, rng)]
    slope_draws = [0.0 if math.isnan(b) else b for b in slope_draws]
    models = {}
    for model, (values, lengths) in per_model.items():
        n = len(values)
        draws = bootstrap_draws(n, resamples, rng)
        samples = [
            float(values[d].mean() - b * (lengths[d].mean() - reference))
            for b, d in zip(slope_draws, draws, strict=True)
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


def calibrate(
    ratings: Sequence[dict[str, Any]],
    predictions: dict[str, Sequence[dict[str, Any]]],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Everything above for a ratings table and the OEQ predictions of the rated models."""
    options = {"resamples": resamples, "seed": seed, "confidence": confidence}
    joined = join(ratings, predictions) if ratings else []
    judges = [s for s in ("judge_graded", "judge_binary") if any(r.get(s) is not None for r in joined)]
    annotators = {r.get("annotator") for r in ratings}
    return {
        "n_rated_answers": len(joined),
        "n_ratings": len(ratings),
        "n_annotators": len(annotators),
        "bootstrap": {"method": "percentile", **options},
        "correlations": human_correlations(joined, **options),
        "verbosity": {s: verbosity_bias(joined, s, **options) for s in judges},
        "length_controlled": {
            s: length_controlled(predictions, s, joined, **options)
            for s in JUDGE_SCORES
            if any(_scores(r).get(s) is not None for rows in predictions.values() for r in rows)
        },
    }
