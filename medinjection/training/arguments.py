"""The settings of a training run: TRL's own dataclasses plus the few that ``medinjection train`` adds.

A recipe YAML holds only keys of TRL's ``ScriptArguments``, ``SFTConfig`` and ``ModelConfig``, so the
same file runs with ``trl sft --config FILE`` and with ``medinjection train --config FILE``. The options
below exist only on the ``medinjection train`` command line (``trl sft`` does not know them); their
defaults are what a run gets when they are not given.

``PAPER`` is the authors' setup (paper + released scripts, see ../shared/docs/paper-notes.md) in the
names of the installed TRL/transformers; ``paper_deviations`` lists where a run's settings differ
from it, and the manifest records that list.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser

LOSS_MODES = ("full", "assistant")
SPEED_MODES = ("auto", "faithful")
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

PAPER: dict[str, Any] = {
    "model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507",
    "dtype": "bfloat16",
    "bf16": True,
    "attn_implementation": "flash_attention_2",
    "use_peft": True,
    "use_dora": True,
    "lora_r": 16,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_target_modules": sorted(PROJECTIONS),
    "num_train_epochs": 10,
    "per_device_train_batch_size": 12,
    "effective_batch": 192,
    "learning_rate": 1e-4,
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05,
    "max_length": 2048,
    "activation_checkpointing": True,
    "train_sampling_strategy": "group_by_length",
    "pad_to_multiple_of": 8,
    "optim": "adamw_torch",
    "seed": 42,
    "loss": "full",
    "packing": False,
    "eval_strategy": "epoch",
}
"""The authors' settings. ``warmup_steps`` 0.05 is their warm-up *ratio* (transformers 5 takes a float
below 1 as a ratio); ``train_sampling_strategy: group_by_length`` is their ``group_by_length``;
``activation_checkpointing`` is the new name of ``gradient_checkpointing``."""


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
            "help": "full: loss on every token of the chat (system, user, assistant), the authors' setup. "
            "assistant: loss on the answer and its end-of-turn token only.",
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
            "the number of processes. Default: for a paper recipe (trl_configs/qwen3-4b-instruct-2507/), the "
            "paper's 192 on any number of processes, unless gradient_accumulation_steps is set to another value "
            "than the file's; for any other recipe, its gradient_accumulation_steps. A paper recipe run at "
            "another effective batch is warned about and the manifest says so."
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


def _value(setting: Any) -> str:
    """The name of an enum setting (transformers' enums print as ``Class.MEMBER``), or the string itself."""
    return str(getattr(setting, "value", setting))


def effective_settings(
    script_args: TrainArguments, training_args: SFTConfig, model_args: ModelConfig, world_size: int
) -> dict[str, Any]:
    """The run's values of the settings in ``PAPER`` (what the manifest compares) and of ``LAYOUT_SETTINGS``."""
    targets = model_args.lora_target_modules
    return {
        "model_name_or_path": model_args.model_name_or_path,
        "dtype": model_args.dtype,
        "bf16": bool(training_args.bf16),
        "attn_implementation": model_args.attn_implementation,
        "use_peft": model_args.use_peft,
        "use_dora": model_args.use_dora,
        "lora_r": model_args.lora_r,
        "lora_alpha": model_args.lora_alpha,
        "lora_dropout": model_args.lora_dropout,
        "lora_target_modules": sorted(targets) if isinstance(targets, list) else targets,
        "num_train_epochs": training_args.num_train_epochs,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "world_size": world_size,
        "effective_batch": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * world_size,
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": _value(training_args.lr_scheduler_type),
        "warmup_steps": training_args.warmup_steps,
        "max_length": training_args.max_length,
        "activation_checkpointing": bool(training_args.activation_checkpointing),
        "train_sampling_strategy": training_args.train_sampling_strategy,
        "pad_to_multiple_of": training_args.pad_to_multiple_of,
        "optim": _value(training_args.optim),
        "seed": training_args.seed,
        "loss": script_args.loss,
        "packing": bool(training_args.packing),
        "padding_free": bool(training_args.padding_free),
        "eval_strategy": _value(training_args.eval_strategy),
    }


def paper_deviations(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{setting: {"paper": ..., "run": ...}}`` for every setting that differs from the authors'."""
    return {
        key: {"paper": paper, "run": settings.get(key)}
        for key, paper in PAPER.items()
        if settings.get(key) != paper
    }
