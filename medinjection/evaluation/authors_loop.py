"""The authors' per-item multiple-choice loop, kept as the reference the fast path must equal.

One item at a time (batch 1, no padding), two ``generate`` calls: unconstrained greedy, then
greedy with a ``LogitsProcessor`` that adds -inf to every logit outside the allowed ids. Both use
the pinned greedy ``GenerationConfig`` and stop on the tokenizer's ``eos_token_id``, with the
protocol's budgets (MCQU 1 new token, MCQ 2 x options). It is slow by construction: the
benchmark (``benchmarks/evaluate.py``) times it against ``mcq.score_items`` and the tests check
that both give the same predictions (in float32; in bfloat16 near ties can flip: its ``agreement``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from medinjection.evaluation.engine import pinned_generation_config
from medinjection.evaluation.items import EvalItem
from medinjection.evaluation.protocol import allowed_token_ids, letter_token_ids, max_new_tokens


class AllowedTokens(LogitsProcessor):
    """Adds -inf to every score outside ``allowed`` (the authors' letter-masking processor)."""

    def __init__(self, allowed: Sequence[int]):
        self.allowed = torch.tensor(sorted(set(allowed)), dtype=torch.long)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full((scores.shape[-1],), float("-inf"), device=scores.device)
        mask[self.allowed.to(scores.device)] = 0.0
        return scores + mask


class FirstStepAllowedTokens(AllowedTokens):
    """``AllowedTokens`` at the first new token only, then ``later`` (the letters-only variant)."""

    def __init__(self, first: Sequence[int], later: Sequence[int], prompt_length: int):
        super().__init__(first)
        self.later = AllowedTokens(later)
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[-1] == self.prompt_length:
            return super().__call__(input_ids, scores)
        return self.later(input_ids, scores)


@torch.inference_mode()
def reference_predict(model, tokenizer, item: EvalItem, letters_only: bool = False) -> dict[str, str]:
    """Decoded texts of one item: ``greedy_text``, ``constrained_text`` (and ``constrained_letters_text``)."""
    encoded = tokenizer.apply_chat_template(
        list(item.messages), add_generation_prompt=True, return_tensors="pt"
    )
    prompt = (encoded["input_ids"] if hasattr(encoded, "keys") else encoded).to(model.device)
    config = pinned_generation_config(tokenizer, max_new_tokens(item.type, len(item.letters)))
    allowed = allowed_token_ids(tokenizer, item.letters)

    def run(processors: list[LogitsProcessor]) -> str:
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            generation_config=config,
            logits_processor=LogitsProcessorList(processors),
        )
        return tokenizer.decode(out[0, prompt.shape[1] :], skip_special_tokens=True).strip()

    texts = {"greedy_text": run([]), "constrained_text": run([AllowedTokens(allowed)])}
    if letters_only:
        first = letter_token_ids(tokenizer, item.letters)
        texts["constrained_letters_text"] = run([FirstStepAllowedTokens(first, allowed, prompt.shape[1])])
    return texts


def reference_predictions(
    model, tokenizer, items: Sequence[EvalItem], letters_only: bool = False
) -> list[dict[str, str]]:
    model.eval()
    return [reference_predict(model, tokenizer, item, letters_only) for item in items]
