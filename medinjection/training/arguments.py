"""The settings of a training run: TRL's own dataclasses plus the few that ``medinjection train`` adds.

A recipe YAML holds only keys of TRL's ``ScriptArguments``, ``SFTConfig`` and ``ModelConfig``, so the
same file runs with ``trl sft --config FILE`` and with ``medinjection train --config FILE``. The options
below exist only on the ``medinjection train`` command line (``trl sft`` does not know them); their
defaults are what a run gets when they are not given.

The authors' settings are ``medinjection.training.authors.AUTHORS`` (one definition: the recipes are
generated from it and every run is compared with it); ``effective_settings`` gives a run's value of each
of them, from the parsed arguments.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

from medinjection.training.authors import RECIPE_KEYS, value_of

LOSS_MODES = ("full", "assistant")
SPEED_MODES = ("auto", "faithful")


@dataclass
class TrainArguments(ScriptArguments):
    """TRL's ``ScriptArguments`` (dataset name, config, splits) plus the options of ``medinjection train``."""

    dataset_revision: str | None = field(
        default=None,
        metadata={
            "help": "Commit sha or tag of a Hub dataset (ignored for a local folder); pin it for a real run."
        },
    )
    loss: str = field(
        default="full",
        metadata={
            "help": "full: loss on every token of the chat (system, user, assistant), exactly the authors' "
            "tokens (the chat template's text, tokenized, no end token appended). assistant: loss on the answer "
            "and its end-of-turn token only.",
            "choices": list(LOSS_MODES),
        },
    )
    speed: str = field(
        default="auto",
        metadata={
            "help": "auto: add what computes the same loss faster on this hardware (padding-free batches with "
            "flash-attention, Liger kernels, fused AdamW on GPU; no activation recomputation or pad-to-8 on "
            "CPU); every change is recorded in the manifest. faithful: the recipe exactly as written.",
            "choices": list(SPEED_MODES),
        },
    )
    effective_batch: int | None = field(
        default=None,
        metadata={
            "help": "Examples per optimiser step; sets gradient_accumulation_steps from the per-device batch and "
            "the number of processes. Default: for a recipe that trains what the authors trained (its settings "
            "of data and objective are theirs, as in trl_configs/qwen3-4b-instruct-2507/), their 192 on any "
            "number of processes, unless gradient_accumulation_steps is set to another value than the file's; "
            "for any other recipe, its gradient_accumulation_steps. An authors' recipe run at another effective "
            "batch is warned about and the manifest says so."
        },
    )
    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "Hub id of the base model, written into adapter_config.json and the manifest. Needed when "
            "model_name_or_path is a local copy that does not say what it is (the tiny model's marker and a Hub "
            "cache snapshot do)."
        },
    )
    base_model_revision: str | None = field(
        default=None,
        metadata={
            "help": "Hub commit the local copy of the base model was taken at (with --base_model_id), recorded in "
            "the manifest; a Hub id is pinned with model_revision instead."
        },
    )
    resume: bool = field(
        default=True,
        metadata={
            "help": "Resume from the last complete checkpoint in output_dir when there is one (after checking it "
            "was written with the same settings); --resume_from_checkpoint PATH picks another checkpoint."
        },
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Train again into an output_dir that already holds a finished run (its files are replaced)."
        },
    )
    dump_tokens: str | None = field(
        default=None,
        metadata={
            "help": "Write every training example as it enters the trainer to this file, one JSON line each "
            "(id, input_ids, labels before the shift), in the order the trainer's data loader yields them in "
            "the first epoch, after every preprocessing and speed choice; then stop without training (nothing "
            "is written into output_dir). One process only."
        },
    )
    recipe_file: str | None = field(
        default=None,
        metadata={"help": "Set from --config: the recipe file the manifest names and hashes."},
    )

    def __post_init__(self) -> None:
        if self.loss not in LOSS_MODES:
            raise ValueError(f"loss {self.loss!r}: expected one of {list(LOSS_MODES)}")
        if self.speed not in SPEED_MODES:
            raise ValueError(f"speed {self.speed!r}: expected one of {list(SPEED_MODES)}")
        if self.effective_batch is not None and self.effective_batch < 1:
            raise ValueError(f"effective_batch must be positive, got {self.effective_batch}")


def make_parser(prog: str | None = None) -> TrlParser:
    """The parser of ``medinjection train``: TRL's dataclasses for the recipe, ours for the extra options."""
    return TrlParser((TrainArguments, SFTConfig, ModelConfig), prog=prog)


def parse_args(
    argv: Sequence[str] | None = None, prog: str | None = None
) -> tuple[TrainArguments, SFTConfig, ModelConfig]:
    """Parse ``--config FILE`` plus command-line overrides (which win); unknown keys in the file fail."""
    args = list(sys.argv[1:] if argv is None else argv)
    recipe = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    script_args, training_args, model_args = make_parser(prog).parse_args_and_config(args)
    if recipe and not script_args.recipe_file:
        script_args.recipe_file = recipe
    return script_args, training_args, model_args


LAYOUT_SETTINGS = ("gradient_accumulation_steps", "world_size", "padding_free")
"""How the effective batch is laid out on the hardware: recorded, but a resume may change them (the effective
batch, the per-device batch and every other setting must stay)."""

RESUME_KEYS = (
    "model_name_or_path",
    "dtype",
    "bf16",
    "attn_implementation",
    "use_peft",
    "use_dora",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_modules",
    "num_train_epochs",
    "per_device_train_batch_size",
    "effective_batch",
    "learning_rate",
    "lr_scheduler_type",
    "warmup_steps",
    "max_length",
    "activation_checkpointing",
    "train_sampling_strategy",
    "pad_to_multiple_of",
    "optim",
    "seed",
    "loss",
    "packing",
    "eval_strategy",
)
"""The settings a checkpoint carries and a resume must keep (as the recipe and command line give them, before
the speed plan, so that a run may resume on other hardware)."""


def effective_settings(
    script_args: TrainArguments, training_args: SFTConfig, model_args: ModelConfig, world_size: int
) -> dict[str, Any]:
    """The run's value of every recipe key of the authors' settings (``authors.RECIPE_KEYS``, read from the
    parsed arguments as they are now), with the batch layout: ``world_size``, ``effective_batch``,
    ``length_group_size`` (what transformers' length-grouped sampler sorts together: per-device batch x
    accumulation; None for another sampling strategy) and the loss mode."""
    sources = (training_args, model_args, script_args)
    settings: dict[str, Any] = {}
    for key in RECIPE_KEYS:
        owner = next(source for source in sources if hasattr(source, key))
        value = value_of(getattr(owner, key))
        settings[key] = bool(value) if key in ("bf16", "activation_checkpointing") else value
    per_step = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    settings.update(
        world_size=world_size,
        effective_batch=per_step * world_size,
        length_group_size=per_step if settings["train_sampling_strategy"] == "group_by_length" else None,
        loss=script_args.loss,
    )
    return settings
