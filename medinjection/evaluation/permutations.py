"""Position bias: the same items with their options reordered by seeded permutations.

Permutation ``k`` (1..K) of an item is drawn from a generator seeded by ``(seed, item id, k)``, so
an item gets the same K orders whatever else is scored with it, and never the original order
(items with two options have one other order: every k gives it). Letters stay in place (A, B, ...);
the texts move, and the gold letters follow their texts (a gold letter that is no option stays). The prompt is rebuilt from the permuted
record with the chat format the original prompt was made with; an original whose messages that
format does not reproduce is refused (its permuted prompts would differ in more than the order).
"""

from __future__ import annotations

import copy
import hashlib
import random
from collections.abc import Sequence
from dataclasses import replace

from medinjection.core.chat import to_messages
from medinjection.evaluation.items import EvalItem, ItemError, prompt_messages


def permutation_order(item_id: str, n_options: int, k: int, seed: int) -> tuple[int, ...]:
    """Original option index at each position for permutation ``k`` (never the identity when n > 1)."""
    identity = tuple(range(n_options))
    if n_options < 2:
        return identity
    key = hashlib.sha256(f"{seed}\0{item_id}\0{k}".encode()).digest()
    rng = random.Random(int.from_bytes(key[:8], "big"))
    while True:
        order = list(identity)
        rng.shuffle(order)
        if tuple(order) != identity:
            return tuple(order)


def permute_item(item: EvalItem, order: Sequence[int], k: int, chat_version: str = "v1") -> EvalItem:
    """``item`` with its options shown in ``order`` (original indices), letters and gold re-mapped."""
    record = item.record
    options = record.get("options") or []
    if len(order) != len(options) or sorted(order) != list(range(len(options))):
        raise ItemError(
            f"record {item.id}: order {list(order)} is not a permutation of its {len(options)} options"
        )
    if prompt_messages(to_messages(record, chat_version)) != item.messages:
        raise ItemError(
            f"record {item.id}: its prompt is not the chat format {chat_version!r} of the record, so it "
            "cannot be rebuilt with reordered options (give the dataset's chat_version)"
        )
    letters = [opt["letter"] for opt in options]
    new_options = [{"letter": letters[pos], "text": options[src]["text"]} for pos, src in enumerate(order)]
    # gold letter of original option `src` -> the letter of the position it moved to; a gold letter
    # that is no option stays as it is (always wrong, as in the original order)
    moved_to = {letters[src]: letters[pos] for pos, src in enumerate(order)}
    gold = tuple(sorted(moved_to.get(letter, letter) for letter in item.gold))
    permuted = copy.deepcopy(record)
    permuted["options"] = new_options
    permuted["correct_letters"] = list(gold)
    permuted["answer"] = ", ".join(gold)
    return replace(
        item,
        messages=prompt_messages(to_messages(permuted, chat_version)),
        gold=gold,
        reference=permuted["answer"],
        record=permuted,
        permutation=k,
        order=tuple(order),
    )


def permuted_items(
    items: Sequence[EvalItem], k_max: int, seed: int, chat_version: str = "v1"
) -> list[EvalItem]:
    """The K permuted copies of every multiple-choice item (permutation 1..K), item by item."""
    out = []
    for item in items:
        if not item.is_mc:
            continue
        for k in range(1, k_max + 1):
            out.append(
                permute_item(item, permutation_order(item.id, len(item.letters), k, seed), k, chat_version)
            )
    return out
