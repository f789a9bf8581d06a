"""The authors' multiple-choice protocol, as their released evaluation script runs it.

Pure functions, no model: which token ids constrained decoding may pick, when generation stops, how
an answer is parsed and scored. Both the fast scorer (``mcq.py``) and the per-item reference
(``reference.py``) use them, so the two differ only in how they run the model.

- Allowed tokens (constrained decoding): for each option letter ``X`` the last token id of ``"X"``
  and of ``" X"``; the last token ids of ``","``, ``", "``, ``" "`` and ``",\\n"``; the end ids.
- End ids: the tokenizer's ``eos_token_id`` plus any special token of ``special_tokens_map`` whose
  text contains ``eos``, ``eot`` or ``im_end`` (for Qwen3-Instruct-2507: ``<|im_end|>`` only).
  Generation stops on ``eos_token_id`` alone, which the authors pass to ``generate``.
- New tokens: MCQU 1, MCQ 2 x the number of options.
- Parsing (both predictions): upper-case and strip; a letter that is not an option, or any other
  character outside ``, ; / | + space newline . ( ) :``, makes the answer empty; otherwise the
  option letters in order without repeats; an MCQU answer must be exactly one letter.
- Gold: ``answer`` split on commas and white space, upper-cased.
- Exact match: set equality. Hamming: |pred ∩ gold| / |pred ∪ gold|, 1 when both are empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

SEPARATORS = (",", ", ", " ", ",\n")
"""Strings whose last token constrained decoding may pick between letters."""
PARSER_NON_LETTERS = frozenset(",;/|+ \n.():")
"""Characters other than option letters that the strict parser tolerates."""
END_TOKEN_TAGS = ("eos", "eot", "im_end")
MC_TYPES = ("MCQ", "MCQU")


def last_token_ids(tokenizer, strings: Iterable[str]) -> list[int]:
    """Sorted distinct last token ids of ``strings`` encoded without special tokens."""
    ids = set()
    for text in strings:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if encoded:
            ids.add(encoded[-1])
    return sorted(ids)


def letter_token_ids(tokenizer, letters: Sequence[str]) -> list[int]:
    """The last token ids of ``"X"`` and ``" X"`` for every option letter."""
    return last_token_ids(tokenizer, [*letters, *(f" {letter}" for letter in letters)])


def end_token_ids(tokenizer) -> list[int]:
    """End-of-sequence / end-of-turn ids allowed in constrained decoding (see the module docstring)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for value in (tokenizer.special_tokens_map or {}).values():
        if isinstance(value, str) and any(tag in value.lower() for tag in END_TOKEN_TAGS):
            token_id = tokenizer.convert_tokens_to_ids(value)
            if isinstance(token_id, int) and token_id >= 0:
                ids.add(token_id)
    return sorted(ids)


def stop_token_id(tokenizer) -> int:
    """The one id generation stops on (the authors pass ``eos_token_id=tokenizer.eos_token_id``)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token: the protocol stops generation on it")
    return int(tokenizer.eos_token_id)


def allowed_token_ids(tokenizer, letters: Sequence[str]) -> list[int]:
    """Token ids constrained decoding may pick for an item with these option letters."""
    return sorted(
        {
            *letter_token_ids(tokenizer, letters),
            *last_token_ids(tokenizer, SEPARATORS),
            *end_token_ids(tokenizer),
        }
    )


def max_new_tokens(item_type: str, n_options: int) -> int:
    """The token budget of both predictions: MCQU 1, MCQ 2 x the number of options."""
    if item_type == "MCQU":
        return 1
    if item_type == "MCQ":
        return max(2 * n_options, 1)
    raise ValueError(f"type {item_type!r} is not a multiple-choice type {MC_TYPES}")


def parse_prediction(text: str | None, letters: Sequence[str], multi: bool) -> list[str]:
    """The authors' strict parser; ``[]`` is the empty (wrong) answer."""
    if text is None:
        return []
    upper = text.upper().strip()
    valid = {letter.upper() for letter in letters}
    for char in upper:
        # str.isalpha, as the authors: an accented or non-Latin letter also makes the answer empty
        if char.isalpha() and char not in valid:
            return []
        if not char.isalpha() and char not in PARSER_NON_LETTERS:
            return []
    seen: list[str] = []
    for char in upper:
        if char in valid and char not in seen:
            seen.append(char)
    if not multi:
        return seen if len(seen) == 1 else []
    return seen


def gold_letters(answer: str | Sequence[str]) -> list[str]:
    """Gold letters from the ``answer`` string (split on commas and white space, upper-cased)."""
    parts = answer if isinstance(answer, list | tuple) else re.split(r"[\s,]+", str(answer))
    return [part.strip().upper() for part in parts if part.strip()]


def exact_match(gold: Iterable[str], pred: Iterable[str]) -> float:
    return 1.0 if set(gold) == set(pred) else 0.0


def hamming(gold: Iterable[str], pred: Iterable[str]) -> float:
    """|pred ∩ gold| / |pred ∪ gold| (1 when both are empty), the authors' "Hamming score"."""
    gold, pred = set(gold), set(pred)
    if not gold and not pred:
        return 1.0
    return len(gold & pred) / len(gold | pred)
