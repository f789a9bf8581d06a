"""``--dump_tokens FILE``: every training example exactly as it enters the trainer, then stop.

The run is built as for training (the same tokens, labels, speed plan, collator and sampler), then
``Trainer.train`` runs its own loop for the first epoch with ``training_step`` replaced: each micro-batch
the data loader yields is cut back into its examples and written as one JSON line each (``id``,
``input_ids``, ``labels`` as the batch holds them, before the model shifts them), in the order the
loader yields them; nothing is computed, and the loop stops once the epoch's examples are written.

What is read is the collated batch: padding is cut off (right padding, by each example's length), and
a padding-free batch is cut at the example boundaries, so its labels show the ``-100`` TRL's collator
puts on the first token of each flattened example. With packing, a line is a packed row (``id`` null).

The record ids ride along the batch: the prepared dataset keeps its ``id`` column, the trainer is told
not to drop unused columns (only the collator sees them; TRL's collator reads ``input_ids``, ``labels``
and ``seq_lengths`` and nothing else), and a wrapper takes the ids out before TRL's collator runs and
puts them beside the batch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import SFTTrainer

DUMP_KEY = "_medinjection_dump"


class DumpDone(Exception):
    """Raised out of the training loop once the first epoch's examples are written."""


class _StopAfterFirstEpoch(TrainerCallback):
    """Ends the dump at the end of the first epoch when the loader yields fewer examples than the dataset
    holds (``dataloader_drop_last``)."""

    def on_epoch_end(self, args, state, control, **kwargs):
        raise DumpDone


class CollatorWithIds:
    """TRL's collator, with the examples' ids and lengths carried beside the batch."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        ids = [example.pop("id", None) for example in examples]
        lengths = [len(example["input_ids"]) for example in examples]
        batch = self.collator(examples)
        batch[DUMP_KEY] = {"ids": ids, "lengths": lengths}
        return batch


def split_batch(batch: dict[str, Any], lengths: list[int]) -> list[tuple[list[int], list[int]]]:
    """The (input_ids, labels) of each example of a collated batch, padding cut off."""
    input_ids, labels = batch["input_ids"].tolist(), batch["labels"].tolist()
    if "attention_mask" in batch:  # padded, one row per example (TRL pads on the right)
        return [(input_ids[row][:n], labels[row][:n]) for row, n in enumerate(lengths)]
    flat_ids, flat_labels, start, pieces = input_ids[0], labels[0], 0, []
    for n in lengths:  # padding-free: one flattened row, the examples one after the other
        pieces.append((flat_ids[start : start + n], flat_labels[start : start + n]))
        start += n
    return pieces


class TokenDumpTrainer(SFTTrainer):
    """``SFTTrainer`` whose training step writes its micro-batch's examples instead of computing a loss."""

    def __init__(self, *args, dump_to: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_collator = CollatorWithIds(self.data_collator)
        self.add_callback(_StopAfterFirstEpoch())
        self.dump_to = Path(dump_to)
        self.dump_stream = None
        self.dumped = 0

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        extra = inputs.pop(DUMP_KEY)
        for example_id, (ids, labels) in zip(
            extra["ids"], split_batch(inputs, extra["lengths"]), strict=True
        ):
            line = {"id": example_id, "input_ids": ids, "labels": labels}
            self.dump_stream.write(json.dumps(line, ensure_ascii=False) + "\n")
            self.dumped += 1
        if self.dumped >= len(self.train_dataset):
            raise DumpDone
        return torch.zeros((), device=self.args.device)

    def dump(self) -> int:
        """Write the first epoch's examples to ``dump_to`` (replaced whole at the end); their number."""
        self.dump_to.parent.mkdir(parents=True, exist_ok=True)
        partial = self.dump_to.with_name(f".{self.dump_to.name}.partial")
        with partial.open("w", encoding="utf-8") as stream:
            self.dump_stream = stream
            try:
                self.train()
            except DumpDone:
                pass
            finally:
                self.dump_stream = None
        os.replace(partial, self.dump_to)
        return self.dumped
