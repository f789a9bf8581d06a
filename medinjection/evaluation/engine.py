"""Batched greedy decoding with per-row token masks: the fast path behind the evaluation tasks.

The authors score one item at a time with two ``generate`` calls. Here prompts are sorted by
length and batched with right padding (no attention mask needed, see ``_prefill``); one forward
pass over a batch gives every item's first-step
logits, from which the unconstrained (greedy) and the constrained first tokens are both taken
(argmax of the logits, and argmax of the logits with every disallowed id at -inf, exactly what a
-inf-adding ``LogitsProcessor`` does inside ``generate``). A single-token item (MCQU) is done after
that one pass. Items that need more tokens keep the prompt's KV cache, copied once per decoding
branch (greedy, constrained, ...), so the prompt is encoded once for all branches; each branch
then decodes greedily with its own mask and budget until it emits the stop id.

``generate`` runs no other logits processor here: the pinned ``GenerationConfig``
(``pinned_generation_config``) is greedy with no repetition penalty, no length or bad-word
constraints, so argmax of the (masked) logits is what ``generate`` would pick. The logits are cast to
float32 before the argmax, as ``generate`` does.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from medinjection.evaluation.protocol import stop_token_id


def pinned_generation_config(tokenizer, max_new_tokens: int = 1):
    """Greedy decoding with nothing else: the generation config of both the reference and the fast path.

    The model's own generation config is not used (Qwen3-Instruct-2507 ships sampling settings); the
    authors override it with ``do_sample=False`` and ``eos_token_id=tokenizer.eos_token_id``.
    """
    from transformers import GenerationConfig

    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        eos_token_id=stop_token_id(tokenizer),
        pad_token_id=pad_token_id(tokenizer),
        repetition_penalty=1.0,
        temperature=None,
        top_p=None,
        top_k=None,
    )


def generation_settings(tokenizer) -> dict:
    """What the summary records about decoding."""
    return {
        "do_sample": False,
        "num_beams": 1,
        "repetition_penalty": 1.0,
        "eos_token_id": stop_token_id(tokenizer),
        "pad_token_id": pad_token_id(tokenizer),
        "logits_dtype": "float32",
    }


def pad_token_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return stop_token_id(tokenizer)


@dataclass(frozen=True)
class Branch:
    """One decoding of a prompt: its token budget and the allowed ids (None: all) at the first step and after."""

    budget: int
    first: tuple[int, ...] | None = None
    later: tuple[int, ...] | None = None


class ChatEngine:
    """What both engines (``Engine``, ``vllm_backend.VLLMEngine``) share: chat prompts in, text out.

    A subclass sets ``tokenizer`` and implements ``run``.
    """

    tokenizer: Any

    def encode(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of the chat template applied to ``messages`` with the generation prompt."""
        encoded = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True
        )
        ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
        return list(ids)

    def encode_many(self, conversations: Sequence[Sequence[dict[str, str]]]) -> list[list[int]]:
        return [self.encode(messages) for messages in conversations]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of generated ids, special tokens skipped and stripped, as the authors decode."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()

    def generate_greedy(self, prompts: Sequence[Sequence[int]], max_new_tokens: int) -> list[list[int]]:
        """Plain greedy generation (no mask), batched, up to ``max_new_tokens`` each (open-ended answers)."""
        outputs = self.run(prompts, [[Branch(budget=max_new_tokens)] for _ in prompts])
        return [item[0] for item in outputs]


class Engine(ChatEngine):
    """A causal LM and its tokenizer, decoding batches of chat prompts greedily.

    Args:
        model: a ``transformers`` causal LM (a ``PeftModel`` too), put in eval mode.
        tokenizer: its tokenizer, with a chat template.
        batch_size: most prompts in one batch.
        max_batch_tokens: most padded prompt tokens in one batch (batch size x longest prompt).
    """

    def __init__(self, model, tokenizer, *, batch_size: int = 64, max_batch_tokens: int = 32768):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.stop_id = stop_token_id(tokenizer)
        self.pad_id = pad_token_id(tokenizer)
        self.device = next(model.parameters()).device
        self._masks: dict[tuple[int, ...], torch.Tensor] = {}
        # The decoder and the head are called apart so that each row's logits are computed at its
        # own last token only (PEFT injects its layers into these modules, so an adapter applies).
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        if getattr(base.config, "final_logit_softcapping", None):
            raise ValueError(
                f"{type(base).__name__}: logit soft-capping is not supported by the batched engine"
            )
        self._decoder = base.get_decoder()
        self._head = base.get_output_embeddings()
        # transformers 5.24 renamed `past_key_values` to `cache` (the old name is deprecated).
        self._cache_kw = (
            "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
        )

    @property
    def vocab_width(self) -> int:
        """Width of the logits (the embedding rows; more than the tokenizer's length for Qwen3)."""
        return self.model.get_output_embeddings().weight.shape[0]

    def mask(self, ids: tuple[int, ...] | None) -> torch.Tensor | None:
        """Bool mask over the logits for allowed ``ids`` (cached: items share a few sets)."""
        if ids is None:
            return None
        if ids not in self._masks:
            mask = torch.zeros(self.vocab_width, dtype=torch.bool, device=self.device)
            mask[torch.as_tensor(list(ids), dtype=torch.long, device=self.device)] = True
            self._masks[ids] = mask
        return self._masks[ids]

    def encode_many(self, conversations: Sequence[Sequence[dict[str, str]]]) -> list[list[int]]:
        """``encode`` of many prompts: the template rendered for each, then one batched tokenisation
        (the same ids: ``apply_chat_template`` tokenises its rendering without special tokens)."""
        texts = [
            self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
            for messages in conversations
        ]
        if not texts:  # the tokenizer refuses an empty batch
            return []
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped by length (longest first, so memory trouble shows on the first batch)."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            longest = lengths[current[0]] if current else lengths[index]
            if current and (
                len(current) >= self.batch_size or longest * (len(current) + 1) > self.max_batch_tokens
            ):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    @torch.inference_mode()
    def run(
        self, prompts: Sequence[Sequence[int]], branches: Sequence[Sequence[Branch]]
    ) -> list[list[list[int]]]:
        """Decode ``branches[i]`` of prompt ``i`` for every prompt, batching by length.

        Returns, per prompt, per branch, the generated ids (the stop id included when emitted).
        """
        results: list[list[list[int]] | None] = [None] * len(prompts)
        for batch in self.batches([len(p) for p in prompts]):
            outputs = self._run_batch([prompts[i] for i in batch], [branches[i] for i in batch])
            for index, output in zip(batch, outputs, strict=True):
                results[index] = output
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def first_step_logits(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Float32 next-token logits of each prompt (rows in prompt order), batched like ``run``."""
        rows: list[torch.Tensor | None] = [None] * len(prompts)
        for batch in self.batches([len(p) for p in prompts]):
            logits, _, _, _ = self._prefill([prompts[i] for i in batch], use_cache=False)
            for row, index in enumerate(batch):
                rows[index] = logits[row].cpu()
        return torch.stack(rows)  # type: ignore[arg-type]

    def _prefill(self, prompts: list[Sequence[int]], use_cache: bool):
        """Next-token logits of each prompt (float32), and the cache and mask to continue from.

        Right padding, no attention mask: a real token at position p attends to positions <= p
        only, which are all real, so the causal kernel (``is_causal``) computes every row exactly
        as alone; each row's logits are read at its own last token. Decoding then masks the pad
        slots of the cache (``attention``) and counts positions from each row's length.
        """
        lengths = [len(p) for p in prompts]
        width = max(lengths)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, : len(prompt)] = torch.as_tensor(list(prompt), dtype=torch.long)
            attention[row, : len(prompt)] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        positions = torch.arange(width, device=self.device).expand(len(prompts), width)
        out = self._decoder(input_ids=input_ids, position_ids=positions, use_cache=use_cache)
        last = torch.as_tensor(lengths, device=self.device) - 1
        hidden = out.last_hidden_state[torch.arange(len(prompts), device=self.device), last]
        logits = self._head(hidden).to(dtype=torch.float32)
        cache = (getattr(out, "cache", None) or out.past_key_values) if use_cache else None
        return logits, cache, attention, last[:, None]

    def _run_batch(
        self, prompts: list[Sequence[int]], branches: list[Sequence[Branch]]
    ) -> list[list[list[int]]]:
        needs_cache = any(branch.budget > 1 for item in branches for branch in item)
        first_logits, cache, attention, positions = self._prefill(prompts, needs_cache)
        pairs = [(i, b) for i, item in enumerate(branches) for b in range(len(item))]
        item_index = torch.as_tensor([i for i, _ in pairs], device=self.device)
        first = self._pick(first_logits[item_index], [branches[i][b].first for i, b in pairs])
        results: list[list[list[int]]] = [[[] for _ in item] for item in branches]
        keep = []
        for r, ((i, b), token) in enumerate(zip(pairs, first, strict=True)):
            results[i][b].append(token)
            if branches[i][b].budget > 1 and token != self.stop_id:
                keep.append(r)
        if not keep:
            return results

        # One copy of the prompt's cache per continuing branch: the prompt is encoded once.
        rows = [pairs[r] for r in keep]
        index = item_index[keep]
        cache.batch_select_indices(index)
        attention, positions = attention[index], positions[index, -1:]
        masks = self._stack([branches[i][b].later for i, b in rows])
        done = [False] * len(rows)
        while True:
            last = torch.as_tensor([results[i][b][-1] for i, b in rows], dtype=torch.long, device=self.device)
            attention = torch.cat([attention, attention.new_ones((len(rows), 1))], dim=1)
            positions = positions + 1
            out = self.model(
                input_ids=last[:, None],
                attention_mask=attention,
                position_ids=positions,
                use_cache=True,
                logits_to_keep=1,
                **{self._cache_kw: cache},
            )
            logits = out.logits[:, -1].to(dtype=torch.float32)
            if masks is not None:
                logits = logits.masked_fill(~masks, float("-inf"))
            tokens = torch.argmax(logits, dim=-1).tolist()
            for r, ((i, b), token) in enumerate(zip(rows, tokens, strict=True)):
                if done[r]:
                    continue
                results[i][b].append(token)
                done[r] = token == self.stop_id or len(results[i][b]) >= branches[i][b].budget
            if all(done):
                break
            if 4 * sum(done) >= len(rows):
                # Finished rows leave the batch once they are a quarter of it (each row attends only
                # to its own cache, so the others decode as before); until then they ride along.
                keep = [r for r, finished in enumerate(done) if not finished]
                rows, done = [rows[r] for r in keep], [False] * len(keep)
                index = torch.as_tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                attention, positions = attention[index], positions[index]
                masks = masks[index] if masks is not None else None
        return results

    def _stack(self, allowed: list[tuple[int, ...] | None]) -> torch.Tensor | None:
        """Row masks for a list of allowed-id sets (None when no row is constrained)."""
        if all(ids is None for ids in allowed):
            return None
        everything = torch.ones(self.vocab_width, dtype=torch.bool, device=self.device)
        return torch.stack([everything if ids is None else self.mask(ids) for ids in allowed])

    def _pick(self, logits: torch.Tensor, allowed: list[tuple[int, ...] | None]) -> list[int]:
        """Greedy token of each row, over the row's allowed ids (the -inf mask of a LogitsProcessor)."""
        masks = self._stack(allowed)
        if masks is not None:
            logits = logits.masked_fill(~masks, float("-inf"))
        return torch.argmax(logits, dim=-1).tolist()
