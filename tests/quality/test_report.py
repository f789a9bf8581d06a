"""The review report's statistics against values computed by hand (no server needed)."""

from __future__ import annotations

import json
import math

import pytest

from medinjection.quality.report import (
    build_report,
    cohen_kappa,
    krippendorff_alpha_nominal,
    to_markdown,
    verdict,
    wilson_interval,
    write_report,
)

Z = 1.959963984540054  # the 0.975 quantile of the standard normal


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = p + Z**2 / (2 * n)
    spread = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return ((centre - spread) / (1 + Z**2 / n), (centre + spread) / (1 + Z**2 / n))


def test_wilson_interval_matches_published_values():
    # 1 of 4 and 0 of 10 (Newcombe 1998, Table I style values, 4 decimals)
    assert wilson_interval(1, 4) == pytest.approx((0.0456, 0.6994), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_cohen_kappa_textbook_table():
    # 2x2 table [[20, 5], [10, 15]]: p_o = 35/50 = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5 -> kappa 0.4
    pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([("a", "a"), ("a", "a")]) is None  # p_e = 1: undefined
    assert cohen_kappa([]) is None


def test_krippendorff_alpha_nominal_small_cases():
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)
    # units (a,b), (a,b): o_ab = o_ba = 2, n_a = n_b = 2, n = 4 -> 1 - 3 * 4 / 8 = -0.5
    assert krippendorff_alpha_nominal([["a", "b"], ["a", "b"]]) == pytest.approx(-0.5)
    assert krippendorff_alpha_nominal([["a", "a"], ["a"]]) is None  # one value throughout
    assert krippendorff_alpha_nominal([["a"], ["b"]]) is None  # nothing pairable


def response(user: str, label: str, status: str = "submitted", errors=(), quality: int = 4) -> dict:
    return {
        "user": user,
        "status": status,
        "values": {"answer_correct": label, "language_quality": quality, "error_types": list(errors)},
    }


def record(rid: str, provenance: str, source: str, *responses: dict) -> dict:
    return {"id": rid, "metadata": {"provenance": provenance, "source": source}, "responses": list(responses)}


RECORDS = [
    record(
        "r1",
        "native",
        "s_a",
        response("alice", "incorrect", errors=["factual_error", "wrong_answer_key"]),
        response("bob", "incorrect", errors=["factual_error"]),
    ),
    record("r2", "native", "s_a", response("alice", "correct"), response("bob", "correct")),
    record("r3", "native", "s_b", response("alice", "incorrect"), response("bob", "correct")),
    record(
        "r4",
        "translated",
        "s_c",
        response("alice", "incorrect", errors=["bad_translation"]),
        response("bob", "incorrect", errors=["bad_translation"]),
    ),
    record("r5", "translated", "s_c", response("alice", "correct"), response("bob", "unsure")),
    record(
        "r6",
        "translated",
        "s_c",
        response("alice", "incorrect", errors=["bad_translation"]),
        response("bob", "correct", "draft", ["other"]),
    ),
    record("r7", "translated", "s_c"),
    record(
        "r8",
        "native",
        "s_a",
        response("alice", "correct"),
        response("bob", "correct"),
        response("carol", "incorrect", quality=2),
    ),
]


@pytest.fixture(scope="module")
def report() -> dict:
    return build_report(RECORDS, "review-test", "ws")


def test_verdict_rule():
    assert [verdict(r) for r in RECORDS] == [
        "incorrect",
        "ok",
        "ok",
        "incorrect",
        "ok",
        "incorrect",
        None,
        "ok",
    ]


def test_error_rates_and_intervals_by_hand(report):
    rates = report["error_rate"]
    # native: r1 r2 r3 r8 reviewed, r1 incorrect; translated: r4 r5 r6 reviewed (r7 not), r4 r6 incorrect
    expected = {
        ("by_provenance", "native"): (1, 4),
        ("by_provenance", "translated"): (2, 3),
        ("by_source", "s_a"): (1, 3),
        ("by_source", "s_b"): (0, 1),
        ("by_source", "s_c"): (2, 3),
    }
    for (kind, group), (k, n) in expected.items():
        value = rates[kind][group]
        assert (value["incorrect"], value["reviewed"]) == (k, n), group
        assert value["rate"] == pytest.approx(k / n)
        assert value["ci95"] == pytest.approx(wilson_by_hand(k, n)), group
    assert set(rates["by_provenance"]) == {"native", "translated"}
    assert (rates["overall"]["incorrect"], rates["overall"]["reviewed"]) == (3, 7)
    assert report["records"] == {
        "total": 8,
        "reviewed": 7,
        "complete": 6,
        "min_submitted": 2,
        "submitted_responses": 14,
    }


def test_agreement_by_hand(report):
    agreement = report["agreement"]
    # Coincidences over r1 r2 r3 r4 r5 r8 (r6 has one submitted label): o_ii=4, o_cc=3, o_ic=o_ci=2,
    # o_cu=o_uc=1 -> n_i=6, n_c=6, n_u=1, n=13; alpha = 1 - 12 * 6 / (13^2 - 36 - 36 - 1) = 1 - 72/96
    assert agreement["krippendorff_alpha_nominal"] == pytest.approx(0.25)
    assert agreement["units"] == 6
    kappas = {tuple(k["annotators"]): (k["items"], k["kappa"]) for k in agreement["cohen_kappa"]}
    # alice/bob on r1 r2 r3 r4 r5 r8: p_o = 4/6; alice (i3, c3), bob (i2, c3, u1): p_e = 15/36 -> 9/21
    assert kappas[("alice", "bob")] == (6, pytest.approx(3 / 7))
    # one shared record with different labels: p_o = 0, p_e = 0 -> 0
    assert kappas[("alice", "carol")] == (1, pytest.approx(0.0))
    assert kappas[("bob", "carol")] == (1, pytest.approx(0.0))


def test_error_types_ratings_and_exclusions(report):
    # the draft's "other" is not counted
    assert report["error_types"] == [
        {"error_type": "bad_translation", "count": 3},
        {"error_type": "factual_error", "count": 2},
        {"error_type": "wrong_answer_key", "count": 1},
    ]
    assert report["excluded"] == ["r1", "r4", "r6"]
    assert report["annotators"] == ["alice", "bob", "carol"]
    # native: 4 + 4 (r1..r3 x2, r8 alice bob) = 8 responses of 4 and carol's 2 -> (8*4 + 2) / 9
    assert report["language_quality"]["native"] == {"mean": pytest.approx(34 / 9), "responses": 9}


def test_report_files(report, tmp_path):
    paths = write_report(report, tmp_path / "out")
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(report))
    markdown = paths["markdown"].read_text()
    assert markdown == to_markdown(report)
    assert "| provenance: translated | 3 | 2 | 66.7% |" in markdown
    assert "Wilson" in markdown and "0.250" in markdown and "0.429" in markdown
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = paths["excluded"].read_text().splitlines()
    assert lines[0].startswith("#") and lines[1:] == ["r1", "r4", "r6"]


def test_the_quality_screen_against_the_reviewers_by_hand():
    """Precision and recall of "score below t" against "reviewers judged it incorrect", counted by hand."""
    from medinjection.quality.report import screen_agreement

    scores = {"r1": 1, "r2": 5, "r3": 2, "r4": 2, "r5": 4, "r6": 3, "r7": 1, "r8": 5}
    scored = [{**r, "metadata": {**r["metadata"], "quality_score": scores[r["id"]]}} for r in RECORDS]
    # reviewed: r1..r6, r8 (r7 has no response); judged incorrect: r1 (score 1), r4 (2), r6 (3: only
    # alice's answer is submitted, 1 of 1); r3's 1 of 2 is not a majority, r8's 1 of 3 neither
    found = screen_agreement(scored)
    assert found["reviewed_with_score"] == 7 and found["judged_incorrect"] == 3
    by_t = {row["threshold"]: row for row in found["thresholds"]}
    # t=2: flagged r1 (wrong) -> precision 1/1, recall 1/3
    assert (by_t[2]["flagged"], by_t[2]["flagged_and_wrong"]) == (1, 1)
    assert by_t[2]["precision"] == 1.0 and by_t[2]["recall"] == pytest.approx(1 / 3)
    # t=3: flagged r1, r3, r4 -> wrong r1, r4: precision 2/3, recall 2/3
    assert by_t[3]["precision"] == pytest.approx(2 / 3) and by_t[3]["recall"] == pytest.approx(2 / 3)
    # t=4: + r6 (3, wrong) -> 3/4 and 3/3
    assert by_t[4]["precision"] == pytest.approx(3 / 4) and by_t[4]["recall"] == 1.0
    assert by_t[4]["precision_ci95"] == pytest.approx(list(wilson_by_hand(3, 4)))
    # t=5: + r5 (4, correct) -> 3/5 and 3/3
    assert (by_t[5]["flagged"], by_t[5]["precision"]) == (5, pytest.approx(3 / 5))
    assert screen_agreement(RECORDS) is None  # no record carries a score
    report = build_report(scored, "review-test", "ws")
    assert report["screen_agreement"] == found
    assert "| score < 4 | 4 | 3 | 75.0%" in to_markdown(report)
