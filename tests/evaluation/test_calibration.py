"""Judge-human correlations, verbosity bias and the length-controlled judge score on crafted data
whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medinjection.evaluation.calibration import (
    CalibrationError,
    calibrate,
    correlation,
    correlations,
    human_scores,
    join,
    length_controlled,
    verbosity_bias,
    within_correlation,
)


def test_correlations_by_hand():
    x, y = [1, 2, 3, 4], [1, 3, 2, 4]
    # Pearson: cov = (-1.5*-1.5 + -0.5*0.5 + 0.5*-0.5 + 1.5*1.5)/n, var = 1.25 each -> 4/5
    assert correlation(x, y, "pearson") == pytest.approx(0.8)
    assert correlation(x, y, "spearman") == pytest.approx(0.8)  # ranks are the values
    # Kendall: 6 pairs, 5 concordant, 1 discordant -> (5 - 1) / 6
    assert correlation(x, y, "kendall") == pytest.approx(4 / 6)
    # a monotone but curved relation: rank correlations 1, Pearson below
    x2 = np.arange(1, 11, dtype=float)
    result = correlations(x2, np.exp(x2), resamples=200)
    assert result["n"] == 10
    assert result["spearman"]["value"] == pytest.approx(1.0) and result["kendall"]["value"] == pytest.approx(
        1.0
    )
    assert result["pearson"]["value"] < 0.9
    low, high = result["pearson"]["ci95"]
    assert low <= result["pearson"]["value"] <= high
    # a constant score correlates with nothing: no value, never 0
    flat = correlations([3, 3, 3, 3], [1, 2, 3, 4], resamples=50)
    assert flat["pearson"]["value"] is None and flat["pearson"]["ci95"] is None
    with pytest.raises(ValueError, match="unknown correlation"):
        correlation(x, y, "cosine")


def test_human_scores_average_annotators():
    ratings = [
        {"item_id": "q1", "model": "nat", "annotator": "a", "rating": 5, "equivalent": True},
        {"item_id": "q1", "model": "nat", "annotator": "b", "rating": 4, "equivalent": False},
        {"item_id": "q1", "model": "base", "annotator": "a", "rating": None, "equivalent": False},
    ]
    scores = human_scores(ratings)
    assert scores[("q1", "nat")] == {"rating": 4.5, "equivalent": 0.5, "n_annotators": 2}
    assert scores[("q1", "base")] == {"rating": None, "equivalent": 0.0, "n_annotators": 1}
    with pytest.raises(CalibrationError, match="ratings row 0: no 'rating' column"):
        human_scores([{"item_id": "q", "model": "m", "equivalent": True}])


def crafted(slope: float = 0.5, noise: bool = False):
    """Two models of equal quality; b's answers are 4x longer. judge = rating + slope * log2(1 + tokens)."""
    predictions, ratings = {"a": [], "b": []}, []
    for model, base_len in (("a", 7), ("b", 31)):
        for i in range(40):
            rating = 1 + i % 5
            tokens = base_len * (1 + i % 2)  # two lengths within every rating level
            judge = rating + slope * math.log2(1 + tokens)
            if noise:
                judge += 0.1 if (i // 10) % 2 else -0.1  # orthogonal to length within each level
            predictions[model].append(
                {"id": f"q{i}", "answer_tokens": tokens, "judge_graded": judge, "rouge2": rating / 5}
            )
            ratings.append(
                {
                    "item_id": f"q{i}",
                    "model": model,
                    "annotator": "x",
                    "rating": rating,
                    "equivalent": rating > 3,
                }
            )
    return predictions, ratings


def test_verbosity_bias_and_length_control_recover_the_planted_slope():
    predictions, ratings = crafted(slope=0.5)
    joined = join(ratings, predictions)
    bias = verbosity_bias(joined, "judge_graded", resamples=200)
    assert bias["within_rating_slope"]["value"] == pytest.approx(0.5)
    assert bias["within_rating_correlation"]["value"] == pytest.approx(1.0)
    assert bias["within_rating_correlation"]["n"] == 80
    assert 0 < bias["length_correlation"]["value"] < 1  # length and rating mixed over all answers
    controlled = length_controlled(predictions, "judge_graded", joined, resamples=200)
    assert controlled["slope"] == pytest.approx(0.5)
    assert controlled["slope_source"].startswith("within human-rating levels")
    a, b = controlled["models"]["a"], controlled["models"]["b"]
    assert b["raw"] - a["raw"] == pytest.approx(0.5 * (b["mean_log2_length"] - a["mean_log2_length"]))
    assert b["raw"] > a["raw"] + 0.9  # the raw judge prefers the long answers
    assert a["value"] == pytest.approx(b["value"])  # equal quality once length is controlled
    # the mean of the length-controlled scores stays the mean raw score (reference = mean length)
    assert (a["value"] + b["value"]) / 2 == pytest.approx((a["raw"] + b["raw"]) / 2)
    assert a["ci95"][0] <= a["value"] <= a["ci95"][1]


def test_a_judge_without_length_bias():
    predictions, ratings = crafted(slope=0.0, noise=True)
    joined = join(ratings, predictions)
    bias = verbosity_bias(joined, "judge_graded", resamples=200)
    assert bias["within_rating_correlation"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert bias["within_rating_slope"]["value"] == pytest.approx(0.0, abs=1e-12)
    controlled = length_controlled(predictions, "judge_graded", joined, resamples=50)
    assert controlled["models"]["a"]["value"] == pytest.approx(controlled["models"]["a"]["raw"])


def test_length_control_without_ratings_uses_the_within_model_slope():
    predictions, _ = crafted(slope=0.5)
    controlled = length_controlled(predictions, "judge_graded", None, resamples=50)
    assert controlled["slope_source"].startswith("within models")
    # within a model, judge = rating + 0.5 log2 length and the two lengths are balanced over ratings
    assert controlled["slope"] == pytest.approx(0.5)


def test_within_correlation_centres_by_group():
    # across groups the score follows length, within each group it runs against it
    score = np.array([1.0, 0.0, 11.0, 10.0])
    length = np.array([0.0, 1.0, 10.0, 11.0])
    assert correlation(score, length, "pearson") > 0.9
    assert within_correlation(score, length, ["g1", "g1", "g2", "g2"]) == pytest.approx(-1.0)


def test_calibrate_end_to_end_and_bad_joins():
    predictions, ratings = crafted(slope=0.5)
    result = calibrate(ratings, predictions, resamples=100)
    assert result["n_rated_answers"] == 80 and result["n_annotators"] == 1
    rouge = result["correlations"]["rouge2"]["rating"]
    assert rouge["pearson"]["value"] == pytest.approx(1.0) and rouge["n"] == 80  # rouge2 = rating / 5
    assert set(result["correlations"]) == {"judge_graded", "rouge2"}  # only the scores present
    assert result["verbosity"]["judge_graded"]["within_rating_slope"]["value"] == pytest.approx(0.5)
    with pytest.raises(CalibrationError, match=r"1 rated answers are not in the predictions given: q0 \(c\)"):
        join(ratings + [{"item_id": "q0", "model": "c", "rating": 3, "equivalent": True}], predictions)
