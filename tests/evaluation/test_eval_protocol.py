"""The authors' protocol as pure functions: strict parser, gold, EM, Hamming, allowed tokens, budgets."""

from __future__ import annotations

import re

import pytest

from medinjection.evaluation import protocol
from medinjection.evaluation.items import ItemError, item_from_record
from medinjection.evaluation.mcq import score_texts

LETTERS = ("A", "B", "C", "D", "E")


@pytest.mark.parametrize(
    ("text", "multi", "expected"),
    [
        ("B", False, ["B"]),
        (" b ", False, ["B"]),  # upper-cased and stripped
        ("B.", False, ["B"]),
        ("(C)", False, ["C"]),
        ("B, C", False, []),  # MCQU: exactly one letter
        ("A, C", True, ["A", "C"]),
        ("C;A/C", True, ["C", "A"]),  # order kept, repeats dropped
        ("A C\nE", True, ["A", "C", "E"]),
        ("AC", True, ["A", "C"]),  # letters need no separator
        ("F", False, []),  # a letter that is not an option
        ("A, F", True, []),
        ("Réponse : A", False, []),  # other letters (É, P, ...) make it empty
        ("A1", True, []),  # a digit is not a tolerated character
        ("A\tB", True, []),  # nor a tab
        ("", True, []),
        (",", False, []),  # a separator as the whole answer (MCQU constrained step)
        (None, False, []),
    ],
)
def test_strict_parser(text, multi, expected):
    assert protocol.parse_prediction(text, LETTERS, multi) == expected


def test_parser_respects_the_options_of_the_item():
    assert protocol.parse_prediction("D", ("A", "B", "C"), multi=False) == []
    assert protocol.parse_prediction("C", ("A", "B", "C"), multi=False) == ["C"]


def test_gold_from_answer():
    assert protocol.gold_letters("A, C") == ["A", "C"]
    assert protocol.gold_letters("b,d e") == ["B", "D", "E"]
    assert protocol.gold_letters(" C ") == ["C"]


def test_exact_match_and_hamming_hand_computed():
    assert protocol.exact_match(["A", "C"], ["C", "A"]) == 1.0
    assert protocol.exact_match(["A", "C"], ["A"]) == 0.0
    assert protocol.exact_match(["A"], []) == 0.0
    assert protocol.hamming(["A", "C"], ["A"]) == pytest.approx(1 / 2)
    assert protocol.hamming(["A", "C"], ["A", "B"]) == pytest.approx(1 / 3)
    assert protocol.hamming(["A", "B", "C"], ["B", "C", "D", "E"]) == pytest.approx(2 / 5)
    assert protocol.hamming(["A"], []) == 0.0
    assert protocol.hamming([], []) == 1.0


def record(kind="MCQ", answer="A, C", letters="ABCDE", correct=None):
    return {
        "id": "r1",
        "type": kind,
        "source": "frenchmedmcqa",
        "options": [{"letter": x, "text": f"option {x}"} for x in letters],
        "correct_letters": correct if correct is not None else protocol.gold_letters(answer),
        "answer": answer,
        "messages": [
            {"role": "system", "content": "Tu es un assistant médical."},
            {"role": "user", "content": "Question : ?"},
            {"role": "assistant", "content": answer},
        ],
    }


def test_scored_rows_on_crafted_predictions():
    mcq = item_from_record(record("MCQ", "A, C"))
    assert mcq.messages[-1]["role"] == "user" and len(mcq.messages) == 2  # assistant turn dropped
    row = score_texts(
        mcq, {"constrained_text": "A, B", "greedy_text": "C A", "constrained_letters_text": "Je pense A"}
    )
    assert (row["constrained"], row["em_constrained"], row["hamming_constrained"]) == (
        ["A", "B"],
        0.0,
        pytest.approx(1 / 3),
    )
    assert (row["greedy"], row["em_greedy"], row["hamming_greedy"]) == (["C", "A"], 1.0, 1.0)
    assert (
        row["constrained_letters"],
        row["em_constrained_letters"],
        row["hamming_constrained_letters"],
    ) == ([], 0.0, 0.0)
    mcqu = item_from_record(record("MCQU", "B"))
    row = score_texts(mcqu, {"constrained_text": "", "greedy_text": "B"})
    assert row["em_constrained"] == 0.0 and row["hamming_constrained"] is None  # Hamming: MCQ only
    assert row["em_greedy"] == 1.0 and row["hamming_greedy"] is None


def authors_scores(answer: str, predicted: list[str], multi: bool) -> tuple[float, float | None]:
    """EM and Hamming as the authors' Eval.py computes them, written out here from their rules (gold:
    ``answer`` split on commas and white space, upper-cased; EM: set equality; Hamming: |p & g| /
    |p | g|, 1 when both are empty, multi-answer items only)."""
    gold = {part.upper() for part in re.split(r"[\s,]+", answer) if part}
    pred = set(predicted)
    hamming = (1.0 if not gold and not pred else len(gold & pred) / len(gold | pred)) if multi else None
    return float(gold == pred), hamming


IRREGULAR = [
    # answer, correct_letters, type, the kinds of irregular gold, constrained text, greedy text
    ("A, F", ["A"], "MCQ", ("gold_outside_options", "answer_disagrees_with_correct_letters"), "A", "A, F"),
    ("", [], "MCQ", ("empty_gold",), ",", "B"),
    ("", [], "MCQU", ("empty_gold",), "", "C"),
    ("A, C", ["A", "D"], "MCQ", ("answer_disagrees_with_correct_letters",), "C, A", "A, D"),
    ("B, C", ["B", "C"], "MCQU", ("several_gold_single_answer",), "B", "B, C"),
    ("G", ["G"], "MCQU", ("gold_outside_options",), "A", "G"),
]


@pytest.mark.parametrize(("answer", "correct", "kind", "issues", "constrained", "greedy"), IRREGULAR)
def test_items_with_irregular_gold_are_scored_as_the_authors(
    answer, correct, kind, issues, constrained, greedy
):
    """16.6: such an item is no longer refused; it is scored with the gold of its ``answer`` and
    carries the kinds of its irregular gold."""
    item = item_from_record(record(kind, answer, correct=correct))
    assert item.gold_issues == issues and item.gold == tuple(protocol.gold_letters(answer))
    row = score_texts(item, {"constrained_text": constrained, "greedy_text": greedy})
    for name in ("constrained", "greedy"):
        em, hamming = authors_scores(answer, row[name], kind == "MCQ")
        assert row[f"em_{name}"] == em and row[f"hamming_{name}"] == hamming, (name, row)


def test_a_regular_item_has_no_gold_issue_and_empty_gold_scores_one_for_an_empty_answer():
    assert item_from_record(record("MCQ", "A, C")).gold_issues == ()
    empty = item_from_record(record("MCQ", "", correct=[]))
    row = score_texts(empty, {"constrained_text": ",", "greedy_text": "B"})
    assert (row["em_constrained"], row["hamming_constrained"]) == (1.0, 1.0)  # both empty
    assert (row["em_greedy"], row["hamming_greedy"]) == (0.0, 0.0)


def test_permutations_keep_a_gold_letter_that_is_no_option():
    from medinjection.core.chat import to_messages
    from medinjection.evaluation.permutations import permute_item

    rec = record("MCQ", "A, F", correct=["A"])
    rec["instruction"] = "Question : ?"
    item = item_from_record(rec, to_messages(rec))
    permuted = permute_item(item, (1, 0, 2, 3, 4), 1)  # A's text moves to B
    assert permuted.gold == ("B", "F") and permuted.gold_issues == item.gold_issues
    row = score_texts(permuted, {"constrained_text": "B", "greedy_text": "B, F"})
    assert row["em_constrained"] == 0.0 and row["hamming_constrained"] == pytest.approx(1 / 2)
    with pytest.raises(ItemError, match="r1: a MCQ item with 1 option"):
        item_from_record(record("MCQ", "A", letters="A"))  # no multiple choice to prompt: still refused


def test_budgets():
    assert protocol.max_new_tokens("MCQU", 5) == 1
    assert protocol.max_new_tokens("MCQ", 5) == 10
    assert protocol.max_new_tokens("MCQ", 4) == 8
    with pytest.raises(ValueError, match="OEQ"):
        protocol.max_new_tokens("OEQ", 0)


def test_allowed_tokens_on_the_tiny_tokenizer(tiny):
    _, tokenizer = tiny
    ids = set(protocol.allowed_token_ids(tokenizer, ("A", "B", "C")))
    for text in ("A", " A", "B", " B", "C", " C", ",", " ", ", ", ",\n"):
        assert tokenizer.encode(text, add_special_tokens=False)[-1] in ids, text
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert protocol.end_token_ids(tokenizer) == [im_end]
    assert im_end in ids and protocol.stop_token_id(tokenizer) == im_end
    # <|endoftext|> is the pad token: neither allowed nor a stop (the authors' rule, see protocol.py)
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") not in ids
    assert tokenizer.encode("D", add_special_tokens=False)[-1] not in ids
    # letters, separators (",", " ", and the last tokens of ", " and ",\n"), the end token
    assert len(ids) == 6 + 3 + 1
