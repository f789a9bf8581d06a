"""Tokens and labels of the two loss modes, computed once before training.

**full** (the authors' setup). The authors rendered each chat to text with the tokenizer's chat template
into a column named ``formatted_chat`` and trained with ``dataset_text_field="formatted_chat"``. The TRL
releases they used (0.17 to 1.14) append an end-of-sequence token only to a column named exactly
``text``, so their text was tokenized as it was: the Qwen3-Instruct-2507 template ends every turn with
``<|im_end|>\n``, and their sequences end there, nothing after. Every token (system, user, assistant) is a
label. ``full_sequence_ids`` gives exactly those ids; the tests compare them with an independent rendering
(chat template, then tokenizer). TRL 1.15 and later append the EOS to the ``dataset_text_field`` column
whatever its name (one more ``<|im_end|>`` on this template), which is why the tokens are computed here and
not left to the installed TRL. ``trl sft`` on a ``messages`` column (the conversational path) gives the
same tokens.

**assistant**. The conversational rendering; the label mask covers the answer and its end-of-turn
token only. The mask comes from TRL's training variant of the chat template (``{% generation %}``
markers), which also marks the newline after ``<|im_end|>``; that newline is never generated (decoding
stops at ``<|im_end|>``), so it is dropped from the mask.

The sequences are truncated to ``max_length`` here (keeping the start, as TRL does) and an example left
without any label is dropped and counted, so that padded and padding-free batches see the same data
(TRL's padding-free mode refuses ``max_length`` and would not truncate).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from medinjection.training.data import DataError

IGNORE = -100
ROLES = ("system", "user", "assistant")


@dataclass
class PreparedStats:
    examples: int = 0
    truncated: int = 0
    dropped_without_labels: int = 0
    dropped_ids: list[str] = field(default_factory=list)
    tokens: int = 0
    label_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dropped_ids": self.dropped_ids[:20]}


def full_sequence_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """The authors' token ids: the chat template's text, tokenized as it is (no end token appended)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return list(tokenizer(text=text)["input_ids"])


def training_chat_template(tokenizer) -> str:
    """A chat template with ``{% generation %}`` markers (TRL's training variant when needed)."""
    from trl.chat_template_utils import get_training_chat_template

    template = get_training_chat_template(tokenizer)
    return template if template is not None else tokenizer.chat_template


def assistant_ids_and_labels(
    tokenizer, messages: list[dict[str, str]], chat_template: str
) -> tuple[list[int], list[int]]:
    """Conversational ids; labels = ids on the answer tokens and their end-of-turn token, -100 elsewhere."""
    out = tokenizer.apply_chat_template(
        messages,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        chat_template=chat_template,
    )
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    end = tokenizer.eos_token_id
    labels, closed = [], False
    for token, marked in zip(ids, mask, strict=True):
        # A marked span runs from the answer's first token through its end-of-turn token; what the
        # template marks after that token (the newline) is not something the model emits.
        if not marked:
            closed = False
            labels.append(IGNORE)
        elif closed:
            labels.append(IGNORE)
        else:
            labels.append(token)
            closed = token == end
    return ids, labels


def prepare(dataset, tokenizer, loss: str, max_length: int | None, num_proc: int | None = None):
    """``dataset`` (with ``messages``) as ``input_ids`` + ``labels``, truncated; returns (dataset, stats).

    Raises ``DataError`` naming the record (its ``id``, else its row) whose ``messages`` are missing, are
    not (role, content) turns, or cannot be rendered with the chat template.
    """
    if loss not in ("full", "assistant"):
        raise ValueError(f"loss {loss!r}: expected 'full' or 'assistant'")
    if "messages" not in dataset.column_names:
        raise DataError(f"no `messages` column to tokenize (columns: {dataset.column_names})")
    from jinja2 import TemplateError

    template = training_chat_template(tokenizer) if loss == "assistant" else None

    def encode(example: dict[str, Any], index: int) -> dict[str, Any]:
        record = f"record {example['id']!r}" if example.get("id") is not None else f"row {index}"
        messages = example.get("messages")
        if not messages:
            raise DataError(f"{record} has no `messages` to train on")
        for turn in messages:
            if (
                not isinstance(turn, dict)
                or turn.get("role") not in ROLES
                or not isinstance(turn.get("content"), str)
            ):
                raise DataError(
                    f"{record}: every message needs a role ({', '.join(ROLES)}) and a text content, got {turn!r}"
                )
        try:
            if loss == "full":
                ids = full_sequence_ids(tokenizer, messages)
                labels = list(ids)
            else:
                ids, labels = assistant_ids_and_labels(tokenizer, messages, template)
        except (KeyError, TypeError, ValueError, TemplateError) as err:
            raise DataError(
                f"{record}: its `messages` cannot be rendered with the chat template ({err!r})"
            ) from err
        truncated = max_length is not None and len(ids) > max_length
        if truncated:
            ids, labels = ids[:max_length], labels[:max_length]
        return {
            "input_ids": ids,
            "labels": labels,
            "_truncated": truncated,
            "_tokens": len(ids),
            # the first token is never predicted: a label there alone trains nothing
            "_label_tokens": sum(1 for label in labels[1:] if label != IGNORE),
        }

    keep_id = "id" in dataset.column_names
    encoded = dataset.map(
        encode,
        with_indices=True,
        remove_columns=[c for c in dataset.column_names if c != "id"],
        num_proc=num_proc,
        desc=f"Tokenizing ({loss} loss)",
    )
    # the counts come from the per-row columns: the token columns are not read back into Python
    label_tokens = list(encoded["_label_tokens"])
    dropped = [i for i, n in enumerate(label_tokens) if not n]
    stats = PreparedStats(
        examples=len(encoded),
        truncated=int(sum(encoded["_truncated"])),
        dropped_without_labels=len(dropped),
        label_tokens=sum(label_tokens),  # a dropped row has none
    )
    if dropped:
        if keep_id:
            stats.dropped_ids = [encoded[i]["id"] for i in dropped[:20]]
        encoded = encoded.select([i for i, n in enumerate(label_tokens) if n])
    stats.tokens = int(sum(encoded["_tokens"]))
    # ``id`` stays: the trainer drops columns the model does not take, and --dump_tokens reads it
    encoded = encoded.remove_columns(
        [c for c in ("_truncated", "_tokens", "_label_tokens") if c in encoded.column_names]
    )
    return encoded, stats
