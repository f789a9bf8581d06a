"""Every calibration figure against a direct computation (scipy, or the formula written out here),
on crafted data whose answers are known and on the labelled French fixture."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from medinjection.evaluation.calibration import (
    CalibrationError,
    Score,
    binary_agreement,
    calibrate,
    calibrate_answers,
    correlation,
    correlations,
    human_scores,
    join,
    length_controlled,
    parse_label,
    per_generator,
    prediction_scores,
    ranked,
    verbosity,
    within_correlation,
)

# --- labels (issue 17, point 7) ---------------------------------------------------------------


def test_labels_accept_the_usual_spellings_and_nothing_else():
    for value in ("yes", "Oui", " TRUE ", "1", 1, 1.0, True):
        assert parse_label("human_equivalent", value) == 1, value
    for value in ("no", "NON", "false", "0", 0, False):
        assert parse_label("equivalent", value) == 0, value
    for value in (None, "", "  ", math.nan):
        assert parse_label("human_equivalent", value) is None
        assert parse_label("human_rating", value) is None
    assert [parse_label("rating", v) for v in (1, "5", 3.0, " 4 ")] == [1, 5, 3, 4]
    for value in ("maybe", 2, 0.5, "vrai?"):
        with pytest.raises(CalibrationError, match="is not a yes/no label"):
            parse_label("human_equivalent", value)
    for value in (9, -1, 0, 6, 3.5, "4/5", "bon", True):
        with pytest.raises(CalibrationError, match="is not a rating from 1 to 5"):
            parse_label("human_rating", value)


def test_human_scores_average_annotators_and_name_bad_rows():
    ratings = [
        {"item_id": "q1", "model": "nat", "annotator": "a", "rating": 5, "equivalent": "oui"},
        {"item_id": "q1", "model": "nat", "annotator": "b", "rating": 4, "equivalent": False},
        {"item_id": "q1", "model": "base", "annotator": "a", "rating": None, "equivalent": "no"},
    ]
    scores = human_scores(ratings)
    assert scores[("q1", "nat")] == {"human_rating": 4.5, "human_equivalent": 0.5, "n_annotators": 2}
    assert scores[("q1", "base")] == {"human_rating": None, "human_equivalent": 0.0, "n_annotators": 1}
    with pytest.raises(CalibrationError, match="ratings row 0: no 'rating' column"):
        human_scores([{"item_id": "q", "model": "m", "equivalent": True}])
    bad = [
        *ratings,
        {"item_id": "q2", "model": "m", "rating": 9, "equivalent": None, "_where": "r.jsonl, line 7"},
    ]
    with pytest.raises(
        CalibrationError, match=r"r.jsonl, line 7: field 'rating': 9 is not a rating from 1 to 5"
    ):
        human_scores(bad)
    with pytest.raises(
        CalibrationError, match=r"ratings row 1: field 'equivalent': 'peut-être' is not a yes/no"
    ):
        human_scores([ratings[0], {**ratings[1], "equivalent": "peut-être"}])


# --- correlations -----------------------------------------------------------------------------


def test_correlations_match_scipy_and_a_bootstrap_done_by_hand():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    y = np.round(x + rng.normal(size=40), 1)  # ties, as human labels have
    result = correlations(x, y, resamples=300, seed=5)
    assert result["n"] == 40
    assert result["pearson"]["value"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert result["spearman"]["value"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert result["kendall"]["value"] == pytest.approx(stats.kendalltau(x, y).statistic)
    # the interval: percentiles of the statistic over the seeded resamples of the answers
    for method, fn in (("pearson", stats.pearsonr), ("kendall", stats.kendalltau)):
        gen = np.random.default_rng(5)
        samples = []
        for _ in range(300):
            d = gen.integers(0, 40, 40)
            samples.append(fn(x[d], y[d]).statistic)
        assert result[method]["ci95"] == pytest.approx(list(np.quantile(samples, [0.025, 0.975])))
    # Kendall by hand: 6 pairs, 5 concordant, 1 discordant
    assert correlation([1, 2, 3, 4], [1, 3, 2, 4], "kendall") == pytest.approx(4 / 6)
    flat = correlations([3, 3, 3, 3], [1, 2, 3, 4], resamples=50)
    assert flat["pearson"] == {"value": None, "ci95": None}  # a constant score correlates with nothing
    assert correlations([1, 2], [2, 1], resamples=10)["spearman"]["value"] is None  # n < 3
    with pytest.raises(ValueError, match="unknown correlation"):
        correlation([1, 2, 3], [1, 2, 3], "cosine")


# --- binary agreement -------------------------------------------------------------------------


def kappa_f1_by_hand(s: list[int], h: list[int]) -> tuple[float, float, float]:
    n = len(s)
    tp = sum(a == 1 and b == 1 for a, b in zip(s, h, strict=True))
    fp = sum(a == 1 and b == 0 for a, b in zip(s, h, strict=True))
    fn = sum(a == 0 and b == 1 for a, b in zip(s, h, strict=True))
    tn = n - tp - fp - fn
    observed = (tp + tn) / n
    expected = ((tp + fp) / n) * ((tp + fn) / n) + ((tn + fn) / n) * ((tn + fp) / n)
    return observed, (observed - expected) / (1 - expected), 2 * tp / (2 * tp + fp + fn)


def test_binary_agreement_by_hand():
    judge = [1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0]
    shares = [1, 0.5, 0, 1, 1, 0, 0, 1, 0, 2 / 3, 1 / 3, 0]  # 0.5: an even split, left out
    result = binary_agreement(judge, shares, resamples=200, seed=1)
    kept = [i for i, v in enumerate(shares) if v != 0.5]
    s = [judge[i] for i in kept]
    h = [1 if shares[i] > 0.5 else 0 for i in kept]
    accuracy, kappa, f1 = kappa_f1_by_hand(s, h)
    assert result["n"] == 11 and result["n_split"] == 1
    assert result["accuracy"]["value"] == pytest.approx(accuracy)
    assert result["cohen_kappa"]["value"] == pytest.approx(kappa)
    assert result["f1"]["value"] == pytest.approx(f1)
    tp = sum(a == b == 1 for a, b in zip(s, h, strict=True))
    fp = sum(a == 1 and b == 0 for a, b in zip(s, h, strict=True))
    fn = sum(a == 0 and b == 1 for a, b in zip(s, h, strict=True))
    assert (
        result["confusion"]
        == {"tp": tp, "fp": fp, "fn": fn, "tn": 11 - tp - fp - fn}
        == {
            "tp": 4,
            "fp": 2,
            "fn": 1,
            "tn": 4,
        }
    )
    for name in ("accuracy", "cohen_kappa", "f1"):
        low, high = result[name]["ci95"]
        assert low <= result[name]["value"] <= high
    with pytest.raises(CalibrationError, match="needs 0/1 scores"):
        binary_agreement([0.5, 1], [1, 0])


# --- verbosity --------------------------------------------------------------------------------


def crafted(slope: float = 0.5, noise: bool = False):
    """Two generators of equal quality; b's answers are 4x longer. judge = rating + slope * log2(1 + tokens)."""
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


def test_verbosity_against_a_regression_by_hand():
    rng = np.random.default_rng(0)
    label = rng.integers(1, 6, 60).astype(float)
    tokens = rng.integers(3, 200, 60)
    score = label + 0.3 * np.log2(1 + tokens) + rng.normal(0, 0.5, 60)
    result = verbosity(score, tokens, label, resamples=200, seed=0)
    ell = np.log2(1 + tokens)
    assert result["with_length"]["value"] == pytest.approx(stats.pearsonr(score, ell).statistic)
    # at equal label: regress score on length with one intercept per label value (least squares)
    design = np.column_stack([ell, *[(label == v).astype(float) for v in np.unique(label)]])
    coef = np.linalg.lstsq(design, score, rcond=None)[0]
    assert result["slope_at_equal_label"]["value"] == pytest.approx(coef[0])
    # and the partial correlation: residuals of both on the label dummies, correlated
    dummies = design[:, 1:]
    res_s = score - dummies @ np.linalg.lstsq(dummies, score, rcond=None)[0]
    res_l = ell - dummies @ np.linalg.lstsq(dummies, ell, rcond=None)[0]
    assert result["at_equal_label"]["value"] == pytest.approx(stats.pearsonr(res_s, res_l).statistic)
    assert result["n"] == 60 and result["length"] == "log2(1 + answer tokens)"


def test_verbosity_recovers_the_planted_slope_and_length_control():
    predictions, ratings = crafted(slope=0.5)
    joined = join(ratings, predictions)
    rows = [r for r in joined if r["judge_graded"] is not None]
    bias = verbosity(
        [r["judge_graded"] for r in rows],
        [r["length"] for r in rows],
        [r["human_rating"] for r in rows],
        resamples=100,
    )
    assert bias["slope_at_equal_label"]["value"] == pytest.approx(0.5)
    assert bias["at_equal_label"]["value"] == pytest.approx(1.0)
    assert 0 < bias["with_length"]["value"] < 1  # length and rating mixed over all answers
    controlled = length_controlled(predictions, "judge_graded", joined, resamples=200)
    assert controlled["slope"] == pytest.approx(0.5)
    assert controlled["slope_source"].startswith("within human-rating levels")
    a, b = controlled["models"]["a"], controlled["models"]["b"]
    assert b["raw"] - a["raw"] == pytest.approx(0.5 * (b["mean_log2_length"] - a["mean_log2_length"]))
    assert a["value"] == pytest.approx(b["value"])  # equal quality once length is controlled
    assert (a["value"] + b["value"]) / 2 == pytest.approx((a["raw"] + b["raw"]) / 2)
    assert a["ci95"][0] <= a["value"] <= a["ci95"][1]
    unrated = length_controlled(predictions, "judge_graded", None, resamples=50)
    assert unrated["slope_source"].startswith("within models") and unrated["slope"] == pytest.approx(0.5)


def test_a_score_without_length_bias():
    predictions, ratings = crafted(slope=0.0, noise=True)
    rows = join(ratings, predictions)
    bias = verbosity(
        [r["judge_graded"] for r in rows],
        [r["length"] for r in rows],
        [r["human_rating"] for r in rows],
        resamples=50,
    )
    assert bias["at_equal_label"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert bias["slope_at_equal_label"]["value"] == pytest.approx(0.0, abs=1e-12)
    # across groups the score follows length, within each group it runs against it
    assert within_correlation([1.0, 0.0, 11.0, 10.0], [0.0, 1.0, 10.0, 11.0], ["g1", "g1", "g2", "g2"]) == (
        pytest.approx(-1.0)
    )


# --- per generator ----------------------------------------------------------------------------


def generators(bias: float, seed: int = 0):
    """Three generators; c writes mostly good answers (narrow label range). The score is the label
    plus noise, plus ``bias`` for generator b's answers at any label."""
    rng = np.random.default_rng(seed)
    labels, models = [], []
    for model, choices in (("a", [1, 2, 3, 4, 5]), ("b", [1, 2, 3, 4, 5]), ("c", [4, 5])):
        for _ in range(30):
            labels.append(float(rng.choice(choices)))
            models.append(model)
    labels = np.asarray(labels)
    score = labels + rng.normal(0, 1.0, len(labels)) + bias * (np.asarray(models) == "b")
    return score, labels, models


def effect_by_hand(score, labels, models) -> float:
    """Between-generator sum of squares of the score within each label value."""
    total = 0.0
    for value in set(labels.tolist()):
        stratum = [i for i in range(len(labels)) if labels[i] == value]
        mean = np.mean(score[stratum])
        for model in set(models):
            cell = [i for i in stratum if models[i] == model]
            if cell:
                total += len(cell) * (np.mean(score[cell]) - mean) ** 2
    return total


def test_per_generator_agreement_and_its_stratified_test():
    score, labels, models = generators(bias=0.0)
    neutral = per_generator(score, labels, models, resamples=300, seed=0)
    for model in ("a", "b", "c"):
        mine = [i for i, m in enumerate(models) if m == model]
        entry = neutral["models"][model]
        assert entry["n"] == 30
        assert entry["value"] == pytest.approx(stats.pearsonr(score[mine], labels[mine]).statistic)
        assert entry["ci95"][0] <= entry["value"] <= entry["ci95"][1]
    values = [neutral["models"][m]["value"] for m in "abc"]
    assert neutral["spread"] == pytest.approx(max(values) - min(values))
    assert neutral["test"]["effect"] == pytest.approx(effect_by_hand(score, labels, models))
    # c's narrow label range shrinks its correlation, yet a neutral score is not called biased
    assert neutral["models"]["c"]["value"] < neutral["models"]["a"]["value"] - 0.2
    assert neutral["test"]["p_value"] > 0.05
    # b's answers scored 2.5 points higher at equal label: a generator effect, b's offset the largest
    bscore, blabels, bmodels = generators(bias=2.5)
    biased = per_generator(bscore, blabels, bmodels, resamples=300, seed=0)
    assert biased["test"]["p_value"] < 0.01
    assert biased["test"]["effect"] == pytest.approx(effect_by_hand(bscore, blabels, bmodels))
    offsets = {m: e["offset"] for m, e in biased["models"].items()}
    assert max(offsets, key=offsets.get) == "b"
    mine = [i for i, m in enumerate(bmodels) if m == "b"]
    same_label = [np.mean([bscore[j] for j in range(90) if blabels[j] == blabels[i]]) for i in mine]
    assert offsets["b"] == pytest.approx(np.mean(bscore[mine] - same_label))
    # the same with a 0/1 judge against the majority 'equivalent': accuracy per generator
    fair = per_generator(
        (score > 3.5).astype(float), (labels >= 4).astype(float), models, "accuracy", resamples=300
    )
    judge, good = (bscore > 3.5).astype(float), (blabels >= 4).astype(float)
    unfair = per_generator(judge, good, bmodels, "accuracy", resamples=300)
    assert unfair["test"]["p_value"] < 0.05 < fair["test"]["p_value"]
    assert unfair["models"]["b"]["value"] == pytest.approx(np.mean(judge[mine] == good[mine]))
    # one generator: nothing to compare
    assert per_generator(score[:30], labels[:30], models[:30], resamples=50)["test"]["p_value"] is None


# --- entries --------------------------------------------------------------------------------


def test_calibrate_answers_and_the_ranking():
    predictions, ratings = crafted(slope=0.5)
    for rows in predictions.values():
        for i, row in enumerate(rows):
            row["judge_binary"] = float(row["rouge2"] > 0.6) if i != 3 else None
            row["judge_binary_status"] = "ok" if i != 3 else "unparseable"
    answers = join(ratings, predictions)
    scores = [
        Score("judge_binary", "judge_binary", "judge", True, {"model": "google/medgemma-27b-text-it"}),
        Score("judge_graded", "judge_graded", "judge"),
        Score("rouge2", "rouge2"),
    ]
    result = calibrate_answers(answers, scores, resamples=100)
    assert result["n"] == 80 and result["labels"]["human_equivalent"] == {
        "n": 80,
        "equivalent": 32,
        "not_equivalent": 48,
        "split": 0,
    }
    binary = next(
        e for e in result["judges"] if e["name"] == "judge_binary" and e["label"] == "human_equivalent"
    )
    assert binary["verdicts"] == {"ok": 78, "unparseable": 2, "failed": 0} and binary["n"] == 78
    assert binary["accuracy"]["value"] == pytest.approx(1.0)  # rouge2 > 0.6 <=> rating > 3
    assert binary["model"] == "google/medgemma-27b-text-it"
    assert "accuracy" not in next(e for e in result["judges"] if e["name"] == "judge_graded")
    rouge = next(e for e in result["metrics"] if e["label"] == "human_rating")
    assert rouge["pearson"]["value"] == pytest.approx(1.0) and rouge["n"] == 80  # rouge2 = rating / 5
    order = [e["name"] for e in ranked(result, "human_rating")]
    values = [e["pearson"]["value"] for e in ranked(result, "human_rating")]
    assert values == sorted(values, reverse=True) and order[0] == "rouge2"
    from medinjection.evaluation.calibration import paper_figure

    assert paper_figure(binary) == ("MedGemma-27B", 0.61) and paper_figure(rouge) == ("ROUGE-2", 0.36)


def test_the_reports_calibration_and_bad_joins():
    predictions, ratings = crafted(slope=0.5)
    result = calibrate(ratings, predictions, resamples=100)
    assert result["n"] == 80 and result["n_annotators"] == 1 and result["n_ratings"] == 80
    names = {(e["name"], e["label"]) for e in (*result["judges"], *result["metrics"])}
    assert names == {
        (s, label) for s in ("judge_graded", "rouge2") for label in ("human_equivalent", "human_rating")
    }
    graded = next(e for e in result["judges"] if e["label"] == "human_rating")
    assert graded["bias"]["verbosity"]["slope_at_equal_label"]["value"] == pytest.approx(0.5)
    assert result["length_controlled"]["judge_graded"]["slope"] == pytest.approx(0.5)
    with pytest.raises(CalibrationError, match=r"1 rated answers are not in the predictions given: q0 \(c\)"):
        join(ratings + [{"item_id": "q0", "model": "c", "rating": 3, "equivalent": True}], predictions)


def test_the_reports_judge_entries_name_the_prompt_and_its_hash():
    """``report --ratings``: a judge's entries carry the judge model, prompt version and prompt hash that
    its prediction columns recorded."""
    rows = [
        {
            "judge_binary": 1.0,
            "judge_binary_status": "ok",
            "judge_binary_model": "judge-model",
            "judge_binary_prompt": "judge-binary-lenient-v1",
            "judge_binary_prompt_sha256": "4ff591ae",
        }
    ]
    (score,) = prediction_scores(rows, {"nat": rows})
    assert score.details == {
        "model": "judge-model",
        "prompt": "judge-binary-lenient-v1",
        "prompt_sha256": "4ff591ae",
    }
