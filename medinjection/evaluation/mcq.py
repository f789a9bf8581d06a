"""Multiple-choice scoring (MCQ, MCQU): the authors' two predictions per item, batched.

Per item, from one shared prompt encoding (``Engine``):

- ``constrained``: greedy over the allowed ids (option letters, separators, end ids), MCQU 1 new
  token, MCQ up to 2 x options; a separator or the end token as an MCQU answer parses to nothing
  and scores wrong, as in the authors' runs;
- ``greedy``: unconstrained greedy with the same budgets, parsed strictly;
- ``constrained_letters`` (ours, beside the faithful one): the first new token restricted to the
  option letters, later tokens as ``constrained``; an MCQU answer is then always a letter.

Metric columns (per row): ``em_*`` for every item, ``hamming_*`` for MCQ items only (null for
MCQU), as the authors compute them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medinjection.evaluation.engine import Branch, Engine
from medinjection.evaluation.items import EvalItem
from medinjection.evaluation.protocol import (
    allowed_token_ids,
    exact_match,
    hamming,
    letter_token_ids,
    max_new_tokens,
    parse_prediction,
)
from medinjection.evaluation.scorers import Scorer, ScoringContext

PREDICTIONS = ("constrained", "greedy", "constrained_letters")
"""The predictions of an item; ``constrained`` and ``greedy`` are the authors'."""
METRIC_COLUMNS = tuple(f"{metric}_{p}" for metric in ("em", "hamming") for p in PREDICTIONS)


def score_texts(item: EvalItem, texts: dict[str, str]) -> dict[str, Any]:
    """A prediction row from the decoded texts of an item (``<prediction>_text`` keys)."""
    multi = item.type == "MCQ"
    row: dict[str, Any] = {
        "options": list(item.letters),
        "order": list(item.order),
        "gold": list(item.gold),
    }
    for name in PREDICTIONS:
        key = f"{name}_text"
        if key not in texts:
            continue
        pred = parse_prediction(texts[key], item.letters, multi)
        row[key] = texts[key]
        row[name] = pred
        row[f"em_{name}"] = exact_match(item.gold, pred)
        row[f"hamming_{name}"] = hamming(item.gold, pred) if multi else None
    return row


def predict_texts(
    engine: Engine, items: Sequence[EvalItem], letters_only: bool = True
) -> list[dict[str, str]]:
    """Decoded texts of every item's predictions, batched (see the module docstring)."""
    tokenizer = engine.tokenizer
    allowed_sets: dict[tuple[str, ...], tuple] = {}
    branches = []
    for item in items:
        if item.letters not in allowed_sets:
            allowed_sets[item.letters] = (
                tuple(allowed_token_ids(tokenizer, item.letters)),
                tuple(letter_token_ids(tokenizer, item.letters)),
            )
        allowed, letters = allowed_sets[item.letters]
        budget = max_new_tokens(item.type, len(item.letters))
        item_branches = [Branch(budget), Branch(budget, allowed, allowed)]
        if letters_only:
            item_branches.append(Branch(budget, letters, allowed))
        branches.append(item_branches)
    prompts = engine.encode_many([item.messages for item in items])
    outputs = engine.run(prompts, branches)
    names = ["greedy_text", "constrained_text", "constrained_letters_text"]
    return [
        {names[b]: engine.decode(ids) for b, ids in enumerate(output)} | {"n_prompt_tokens": len(prompt)}
        for output, prompt in zip(outputs, prompts, strict=True)
    ]


def score_items(engine: Engine, items: Sequence[EvalItem], letters_only: bool = True) -> list[dict[str, Any]]:
    """Prediction rows (texts, parsed letters, EM, Hamming) of multiple-choice items, in order."""
    rows = []
    for item, texts in zip(items, predict_texts(engine, items, letters_only), strict=True):
        row = score_texts(item, texts)
        row["n_prompt_tokens"] = texts["n_prompt_tokens"]
        rows.append(row)
    return rows


def score_items_reference(
    engine: Engine, items: Sequence[EvalItem], letters_only: bool = True
) -> list[dict[str, Any]]:
    """The same rows from the authors' per-item loop (``engine: reference``: slow, for checking)."""
    from medinjection.evaluation.authors_loop import reference_predictions

    texts = reference_predictions(engine.model, engine.tokenizer, items, letters_only)
    return [
        score_texts(item, text) | {"n_prompt_tokens": len(engine.encode(item.messages))}
        for item, text in zip(items, texts, strict=True)
    ]


def _score(context: ScoringContext, items: list[EvalItem]) -> list[dict[str, Any]]:
    score = score_items_reference if context.settings.engine == "reference" else score_items
    return score(context.engine, items, letters_only=context.settings.letters_only)


SCORER = Scorer(
    name="mcq",
    types=frozenset({"MCQ", "MCQU"}),
    score=_score,
    metric_columns=METRIC_COLUMNS,
    binary_metrics=frozenset(f"em_{p}" for p in PREDICTIONS),
    primary_metrics=("em_constrained", "em_greedy", "hamming_constrained", "hamming_greedy"),
    permutable=True,
)
