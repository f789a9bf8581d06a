"""Summary metrics from crafted prediction rows: means, breakdowns, position bias, aggregates."""

from __future__ import annotations

import pytest

from medinjection.evaluation import summary
from medinjection.evaluation.mcq import METRIC_COLUMNS


def row(rid, kind, perm, em, ham=None, source="frenchmedmcqa"):
    return {
        "id": rid,
        "type": kind,
        "source": source,
        "permutation": perm,
        "scorer": "mcq",
        "em_constrained": em,
        "hamming_constrained": ham,
    }


ROWS = [
    row("a", "MCQ", 0, 1.0, 1.0),
    row("a", "MCQ", 1, 0.0, 0.5),
    row("a", "MCQ", 2, 1.0, 1.0),
    row("b", "MCQU", 0, 1.0, source="mmlu_medical"),
    row("b", "MCQU", 1, 1.0, source="mmlu_medical"),
    row("b", "MCQU", 2, 1.0, source="mmlu_medical"),
    row("c", "MCQU", 0, 0.0),
    row("c", "MCQU", 1, 1.0),
    row("c", "MCQU", 2, 0.0),
]


def value(metrics, name):
    return metrics[name]["value"], metrics[name]["n"]


def test_means_over_the_original_order_and_breakdowns():
    metrics = summary.column_metrics(ROWS, ("em_constrained", "hamming_constrained"), resamples=200)
    assert value(metrics, "em_constrained") == (pytest.approx(2 / 3), 3)
    assert value(metrics, "hamming_constrained") == (1.0, 1)  # MCQ items only
    assert value(metrics, "em_constrained_by_type:MCQ") == (1.0, 1)
    assert value(metrics, "em_constrained_by_type:MCQU") == (0.5, 2)
    assert value(metrics, "em_constrained_by_source:mmlu_medical") == (1.0, 1)
    assert value(metrics, "em_constrained_by_source:frenchmedmcqa") == (0.5, 2)
    assert "hamming_constrained_by_type:MCQU" not in metrics
    for entry in metrics.values():
        low, high = entry["ci95"]
        if entry["n"] < 2:  # one item: no interval
            assert (low, high) == (None, None)
        else:
            assert low <= entry["value"] <= high


def test_position_bias_metrics():
    metrics = summary.permutation_metrics(ROWS, ("em_constrained",), resamples=200)
    assert value(metrics, "em_constrained_perm") == (pytest.approx(2 / 3), 3)  # items: 0.5, 1, 0.5
    assert value(metrics, "em_constrained_perm1") == (pytest.approx(2 / 3), 3)
    assert value(metrics, "em_constrained_perm2") == (pytest.approx(2 / 3), 3)
    assert value(metrics, "em_constrained_perm_drop") == (pytest.approx(0.0), 3)  # 0.5, 0, -0.5
    assert value(metrics, "em_constrained_robust") == (pytest.approx(1 / 3), 3)  # only b, every order
    assert summary.permutation_metrics([r for r in ROWS if r["permutation"] == 0], ("em_constrained",)) == {}


def test_micro_and_macro_aggregates():
    task_a = [row(str(i), "MCQU", 0, 1.0) for i in range(10)]
    task_b = [row(str(i), "MCQU", 0, float(i < 30)) for i in range(90)]
    metrics = summary.aggregate({"a": task_a, "b": task_b}, ("em_constrained",), resamples=200)
    assert metrics["em_constrained_micro"]["value"] == pytest.approx(40 / 100)
    assert metrics["em_constrained_macro"]["value"] == pytest.approx((1.0 + 30 / 90) / 2)
    assert metrics["em_constrained_macro"]["n"] == 100 and metrics["em_constrained_macro"]["tasks"] == 2
    assert summary.AGGREGATED == "macro"


def test_mcq_metric_columns():
    assert METRIC_COLUMNS == (
        "em_constrained",
        "em_greedy",
        "em_constrained_letters",
        "hamming_constrained",
        "hamming_greedy",
        "hamming_constrained_letters",
    )


def test_one_item_gives_a_value_without_an_interval():
    metrics = summary.column_metrics(ROWS, ("em_constrained", "hamming_constrained"), resamples=100)
    assert metrics["hamming_constrained"]["n"] == 1 and metrics["hamming_constrained"]["ci95"] == [None, None]
    assert metrics["em_constrained_by_source:mmlu_medical"]["ci95"] == [None, None]
    assert None not in metrics["em_constrained"]["ci95"]  # three items
    aggregate = summary.aggregate({"x": [ROWS[0]]}, ("em_constrained",), resamples=100)
    assert aggregate["em_constrained_macro"]["ci95"] == [None, None]


def test_one_open_ended_item_has_no_corpus_bleu_interval():
    from medinjection.evaluation.open_ended import (
        OEQOptions,
        paired_corpus_bleu,
        summarize,
        text_metric_columns,
    )

    answers = ["Une antibiothérapie par amoxicilline.", "Du repos et une hydratation."]
    references = ["Une antibiothérapie probabiliste par amoxicilline."] * 2
    columns = text_metric_columns(answers, references, OEQOptions(bertscore_model=None))
    rows = [
        {"id": f"o{i}", "type": "OEQ", "permutation": 0, "answer_text": a, "reference": r}
        | {name: values[i] for name, values in columns.items()}
        for i, (a, r) in enumerate(zip(answers, references, strict=True))
    ]
    one = summarize(rows[:1])
    assert one["bleu"]["value"] is not None and one["bleu"]["ci95"] is None
    assert one["rouge2"]["ci95"] == [None, None]
    assert summarize(rows)["bleu"]["ci95"] is not None
    paired = paired_corpus_bleu(rows[:1], [{**rows[0], "answer_text": "rien"}], resamples=50)
    assert paired["n"] == 1 and paired["ci95"] == [None, None]


def mc(rid, kind, origin, em):
    return {
        "id": rid,
        "type": kind,
        "origin": origin,
        "permutation": 0,
        "scorer": "mcq",
        "em_constrained": em,
    }


def test_the_halves_aggregate_against_a_hand_computation():
    """0.5 x the mean over the MCQ datasets + 0.5 x the mean over the MCQU datasets (a dataset: one
    task's (origin, type)), each dataset weighing the same whatever its size: the formula of the
    authors' later code (ikram28/MedAdapt Evaluation/bootstrap.py), computed here by hand."""
    native = (
        [mc(f"f{i}", "MCQ", "FrenchMedMCQA", float(i < 3)) for i in range(4)]  # 3/4
        + [mc(f"m{i}", "MCQU", "MediQAl", float(i < 1)) for i in range(10)]  # 1/10
        + [mc(f"q{i}", "MCQ", "MediQAl", float(i < 1)) for i in range(2)]  # 1/2
        + [{**mc("o1", "OEQ", "MediQAl", None), "scorer": "oeq"}]  # open-ended: in no dataset
        + [{**mc("f0", "MCQ", "FrenchMedMCQA", 0.0), "permutation": 1}]  # permuted copy: left out
    )
    translated = [mc(f"t{i}", "MCQU", "MedQA", float(i < 4)) for i in range(5)]  # 4/5
    translated += [mc(f"p{i}", "MCQU", "PubMedQA", float(i < 1)) for i in range(2)]  # 1/2
    # two MCQ datasets, three MCQU ones: each kind weighs half, whatever its number of datasets
    by_hand = 0.5 * (3 / 4 + 1 / 2) / 2 + 0.5 * (1 / 10 + 4 / 5 + 1 / 2) / 3
    metrics = summary.aggregate(
        {"native": native, "translated": translated}, ("em_constrained",), resamples=300
    )
    halves = metrics["em_constrained_halves"]
    assert halves["value"] == pytest.approx(by_hand)
    assert halves["n"] == 4 + 10 + 2 + 5 + 2 and halves["tasks"] == 2
    assert halves["datasets"] == {
        "MCQ": ["native: FrenchMedMCQA MCQ", "native: MediQAl MCQ"],
        "MCQU": ["native: MediQAl MCQU", "translated: MedQA MCQU", "translated: PubMedQA MCQU"],
    }
    assert halves["ci95"][0] < by_hand < halves["ci95"][1]
    # not the macro mean over tasks, nor the micro mean over items
    assert metrics["em_constrained_macro"]["value"] == pytest.approx(((3 + 1 + 1) / 16 + 5 / 7) / 2)
    assert metrics["em_constrained_micro"]["value"] == pytest.approx(10 / 23)
    # one kind only: no value, and why
    alone = summary.aggregate({"translated": translated}, ("em_constrained",), resamples=50)
    assert alone["em_constrained_halves"]["value"] is None
    assert alone["em_constrained_halves"]["missing"].startswith("no MCQ dataset scored")
    assert "hamming_constrained_halves" not in summary.aggregate(
        {"native": [{**r, "hamming_constrained": 1.0} for r in native]}, ("hamming_constrained",)
    )  # exact match only


def test_the_halves_interval_and_test_resample_within_each_dataset():
    from medinjection.evaluation import stats

    groups = [[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0]]
    weights = [0.25, 0.25, 0.5]
    value = stats.weighted_mean(groups, weights)
    assert value == pytest.approx(0.25 * 0.75 + 0.25 / 3 + 0.5)
    low, high, draws = stats.stratified_bootstrap_ci(groups, "weighted", weights=weights, resamples=400)
    assert low < value < high and draws.min() >= 0.5  # the constant dataset always gives its 0.5
    # the sign-flip test of a weighted statistic, against brute force over every sign pattern
    import itertools

    import numpy as np

    diffs = [[1.0, 0.0, -1.0], [1.0, 1.0]]
    w = [0.5, 0.5]
    observed = abs(sum(wi * np.mean(d) for wi, d in zip(w, diffs, strict=True)))
    flat = [v for d in diffs for v in d]
    hits = []
    for signs in itertools.product((1, -1), repeat=len(flat)):
        signed = [s * v for s, v in zip(signs, flat, strict=True)]
        parts = [signed[:3], signed[3:]]
        hits.append(abs(sum(wi * np.mean(p) for wi, p in zip(w, parts, strict=True))) >= observed - 1e-12)
    assert stats.sign_flip_test(diffs, "weighted", weights=w) == pytest.approx(sum(hits) / len(hits))
    with pytest.raises(ValueError, match="weights"):
        stats.stratified_bootstrap_ci(groups, "weighted")
