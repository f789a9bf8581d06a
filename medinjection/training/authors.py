"""The authors' training run, defined once: what the paper recipes are generated from and what every
run is compared with.

Read setting by setting from the paper and the authors' released scripts (``../shared/docs/paper-notes.md``,
"The authors' released scripts"), in the names of the installed TRL and transformers: a setting with a
``section`` is a recipe key (``recipe_files`` writes it into the generated YAMLs), one without is a fact
of the run that no recipe key holds (the GPU count, the loss mode, the validation file, the embedding
resize, the training data).

A difference from the authors' run has one of three kinds:

* ``same maths``: the same computation (activation checkpointing replays the same forward; how many
  checkpoints are kept on disk);
* ``different numerics``: the same maths computed another way, so the figures differ by rounding (fused
  kernels, padding-free batches, padding to a multiple of 8 or not, the attention kernel, the weights'
  dtype, how the batch is spread over processes and accumulation steps);
* ``different data or objective``: anything that changes what is trained, on what, in which order, or
  what the run validates on and keeps (another model or adapter, hyperparameters, the training data,
  the validation set, the embedding resize, length-grouped batches formed over another number of
  examples, the eval batch size, the save steps, the loss mode, packing, the effective batch).

A run is faithful to the authors' only when no difference of the last kind exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SAME_MATHS = "same maths"
NUMERICS = "different numerics"
DATA = "different data or objective"
KINDS = (SAME_MATHS, NUMERICS, DATA)

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FUSED_ADAMW = ("adamw_torch", "adamw_torch_fused")


def _optimiser_kind(run: Any) -> str:
    """Fused AdamW is the same update in one kernel; any other optimiser trains another way."""
    return NUMERICS if value_of(run) in FUSED_ADAMW else DATA


@dataclass(frozen=True)
class Setting:
    """One setting of the authors' run.

    Attributes:
        name: the recipe key (TRL / transformers name), or the name of a fact of the run.
        value: the authors' value.
        kind: the kind of a difference in this setting, or a function of the run's value giving it.
        section: the recipe section that writes it (``model``, ``adapter``, ``data``, ``trainer``);
            None for a fact no recipe key holds.
        note: how the authors' script says it, when its name or meaning differs; written as a comment.
    """

    name: str
    value: Any
    kind: str | Callable[[Any], str]
    section: str | None = None
    note: str = ""

    def kind_of(self, run: Any) -> str:
        return self.kind(run) if callable(self.kind) else self.kind


AUTHORS: tuple[Setting, ...] = (
    # model
    Setting("model_name_or_path", "Qwen/Qwen3-4B-Instruct-2507", DATA, "model"),
    Setting("dtype", "bfloat16", NUMERICS, "model", "their torch_dtype=torch.bfloat16"),
    Setting("attn_implementation", "flash_attention_2", NUMERICS, "model"),
    # adapter
    Setting("use_peft", True, DATA, "adapter"),
    Setting("use_dora", True, DATA, "adapter"),
    Setting("lora_r", 16, DATA, "adapter"),
    Setting("lora_alpha", 16, DATA, "adapter", "TRL's default is 32"),
    Setting("lora_dropout", 0.05, DATA, "adapter"),
    Setting("lora_target_modules", list(PROJECTIONS), DATA, "adapter"),
    # data
    Setting("max_length", 2048, DATA, "data"),
    Setting("packing", False, DATA, "data"),
    # trainer
    Setting("num_train_epochs", 10, DATA, "trainer"),
    Setting("per_device_train_batch_size", 12, NUMERICS, "trainer"),
    Setting("gradient_accumulation_steps", 8, NUMERICS, "trainer", "12 per GPU x 2 GPUs x 8 = 192"),
    Setting("learning_rate", 1e-4, DATA, "trainer"),
    Setting("lr_scheduler_type", "cosine", DATA, "trainer"),
    Setting("warmup_steps", 0.05, DATA, "trainer", "their warmup_ratio 0.05: a float below 1 is a ratio"),
    Setting("optim", "adamw_torch", _optimiser_kind, "trainer"),
    Setting("bf16", True, NUMERICS, "trainer"),
    Setting("activation_checkpointing", True, SAME_MATHS, "trainer", "their gradient_checkpointing"),
    Setting("train_sampling_strategy", "group_by_length", DATA, "trainer", "their group_by_length=True"),
    Setting("pad_to_multiple_of", 8, NUMERICS, "trainer"),
    Setting("padding_free", False, NUMERICS, "trainer"),
    Setting("use_liger_kernel", False, NUMERICS, "trainer"),
    Setting("seed", 42, DATA, "trainer"),
    Setting("eval_strategy", "epoch", DATA, "trainer"),
    Setting(
        "per_device_eval_batch_size", 12, DATA, "trainer", "their batch_size, for training and evaluation"
    ),
    Setting("save_strategy", "steps", DATA, "trainer"),
    Setting("save_steps", 50, DATA, "trainer"),
    Setting("save_total_limit", None, SAME_MATHS, "trainer", "they kept every checkpoint"),
    Setting("load_best_model_at_end", False, DATA, "trainer", "the model after the last epoch is kept"),
    # facts of the run that no recipe key holds
    Setting("world_size", 2, NUMERICS, note="DDP on 2 H100"),
    Setting("effective_batch", 192, DATA, note="12 per GPU x 2 GPUs x 8 accumulation"),
    Setting(
        "length_group_size",
        96,
        DATA,
        note="the examples transformers' length-grouped sampler sorts together: per-device batch x "
        "accumulation, so it depends on the GPU count at a fixed effective batch",
    ),
    Setting(
        "loss",
        "full",
        DATA,
        note="every token of the chat rendered with the template; TRL appended no EOS to their "
        "`formatted_chat` column",
    ),
    Setting("train_types", ["MCQ", "MCQU"], DATA, note="the released models' cards: multiple choice only"),
    Setting("train_examples", 33_493, DATA, note="every mix has the size of the synthetic MCQ items"),
    Setting(
        "validation_set",
        "their own validation file (val_gen_balanced_chat.json, not published)",
        DATA,
    ),
    Setting(
        "resize_token_embeddings",
        True,
        DATA,
        note="resize_token_embeddings(len(tokenizer)) shrinks Qwen3's padded embedding matrix",
    ),
)

BY_NAME: dict[str, Setting] = {setting.name: setting for setting in AUTHORS}
RECIPE_KEYS: tuple[str, ...] = tuple(s.name for s in AUTHORS if s.section)


def value_of(value: Any) -> Any:
    """A setting's value as it compares: enum names (transformers prints ``Class.MEMBER``) as their value,
    the adapter's target modules as a sorted list, tuples as lists."""
    value = getattr(value, "value", value)
    if isinstance(value, list | tuple):
        return sorted(value_of(v) for v in value)
    return value


def authors_value(name: str) -> Any:
    return BY_NAME[name].value


def differences(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every setting of ``settings`` (a run's, by ``Setting.name``) that differs from the authors', with its
    kind: ``{name: {"authors": ..., "run": ..., "kind": ..., "note": ...}}``, in ``AUTHORS`` order. A setting
    the run does not report counts as differing (its value is None)."""
    found = {}
    for setting in AUTHORS:
        run = settings.get(setting.name)
        if value_of(run) != value_of(setting.value):
            entry = {"authors": setting.value, "run": run, "kind": setting.kind_of(run)}
            if setting.note:
                entry["note"] = setting.note
            found[setting.name] = entry
    return found


def by_kind(found: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The names of the differences, grouped by kind (every kind present, in ``KINDS`` order)."""
    return {kind: [name for name, entry in found.items() if entry["kind"] == kind] for kind in KINDS}


def faithful(found: dict[str, dict[str, Any]]) -> bool:
    """No difference that changes the data or the objective (numerics and same-maths ones are allowed)."""
    return not any(entry["kind"] == DATA for entry in found.values())


def is_authors_recipe(declared: dict[str, Any]) -> bool:
    """Whether a recipe trains what the authors trained: every recipe key whose difference would change
    the data or the objective has the authors' value in ``declared`` (the recipe's keys, with the
    libraries' defaults for the keys it leaves out). Numerics (attention kernel, batch layout...) may
    differ: such a recipe is still the authors'."""
    return all(
        value_of(declared.get(s.name)) == value_of(s.value)
        for s in AUTHORS
        if s.section and s.kind_of(declared.get(s.name)) == DATA
    )
