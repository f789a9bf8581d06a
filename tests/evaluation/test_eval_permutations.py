"""Permutations reorder the options, re-map the gold letters to where their texts went, and rebuild
the prompt; seeded per item."""

from __future__ import annotations

import pytest

from medinjection.core.chat import to_messages
from medinjection.evaluation.items import ItemError, item_from_record
from medinjection.evaluation.permutations import permutation_order, permute_item, permuted_items

TEXTS = ["l'aspirine", "le paracétamol", "l'ibuprofène", "la morphine", "la codéine"]


def item(kind="MCQ", correct=("B", "D"), n=5, rid="fmm-1"):
    record = {
        "id": rid,
        "type": kind,
        "source": "frenchmedmcqa",
        "instruction": "Parmi ces médicaments, lequel est un antalgique de palier 1 ?",
        "context": "",
        "options": [{"letter": "ABCDE"[i], "text": TEXTS[i]} for i in range(n)],
        "correct_letters": list(correct),
        "answer": ", ".join(correct),
    }
    return item_from_record(record, to_messages(record))


def text_of(it, letter):
    return next(o["text"] for o in it.record["options"] if o["letter"] == letter)


def test_gold_follows_its_text():
    original = item()
    order = (3, 0, 4, 1, 2)  # position 0 shows original D, position 1 original A, ...
    permuted = permute_item(original, order, k=1)
    assert [o["text"] for o in permuted.record["options"]] == [TEXTS[i] for i in order]
    assert permuted.letters == original.letters  # letters stay A..E
    # original B (paracétamol) is now at position 3 (D); original D (morphine) at position 0 (A)
    assert permuted.gold == ("A", "D")
    assert {text_of(permuted, g) for g in permuted.gold} == {text_of(original, g) for g in original.gold}
    assert permuted.record["answer"] == "A, D" and permuted.record["correct_letters"] == ["A", "D"]
    assert (permuted.permutation, permuted.order) == (1, order)
    user = permuted.messages[-1]["content"]
    assert user.index("A. la morphine") < user.index("B. l'aspirine") < user.index("D. le paracétamol")
    assert permuted.id == original.id and original.gold == ("B", "D")  # the original is untouched


def test_orders_are_seeded_per_item_and_never_the_identity():
    first = [permutation_order("fmm-1", 5, k, seed=0) for k in range(1, 6)]
    assert first == [permutation_order("fmm-1", 5, k, seed=0) for k in range(1, 6)]
    assert first != [permutation_order("fmm-1", 5, k, seed=1) for k in range(1, 6)]
    assert permutation_order("fmm-2", 5, 1, seed=0) != permutation_order("fmm-1", 5, 1, seed=0) or (
        permutation_order("fmm-2", 5, 2, seed=0) != permutation_order("fmm-1", 5, 2, seed=0)
    )
    for k in range(1, 30):
        order = permutation_order("fmm-1", 5, k, seed=0)
        assert sorted(order) == list(range(5)) and order != tuple(range(5))
    assert permutation_order("yes-no", 2, 1, seed=0) == (1, 0)


def test_permuted_copies_of_every_mc_item():
    items = [item(rid="a"), item("MCQU", ("C",), rid="b")]
    copies = permuted_items(items, k_max=3, seed=0)
    assert [(c.id, c.permutation) for c in copies] == [
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("b", 1),
        ("b", 2),
        ("b", 3),
    ]
    for c in copies:
        original = items[0] if c.id == "a" else items[1]
        assert {text_of(c, g) for g in c.gold} == {text_of(original, g) for g in original.gold}


def test_a_prompt_the_chat_format_does_not_rebuild_is_refused():
    original = item()
    other = item_from_record(
        original.record, [{"role": "system", "content": "autre"}, {"role": "user", "content": "?"}]
    )
    with pytest.raises(ItemError, match="cannot be rebuilt"):
        permute_item(other, (1, 0, 2, 3, 4), k=1)
    with pytest.raises(ItemError, match="not a permutation"):
        permute_item(original, (0, 0, 1, 2, 3), k=1)
