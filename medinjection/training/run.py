"""``train(script_args, training_args, model_args) -> RunLayout``: one SFT run of a DoRA adapter on one mix.

The steps, each in its own module: the data of the mix (``data``), its tokens and labels for the loss
mode (``tokens``), the same-maths speed-ups for this hardware (``speed``), resume (``resume``), TRL's
``SFTTrainer`` for the training itself, then the adapter files with the base model's Hub id and the
provenance manifest (``provenance``, ``manifest``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medinjection.runs import RunLayout
from medinjection.training.arguments import TrainArguments, effective_settings, paper_deviations
from medinjection.training.data import load_training_data
from medinjection.training.manifest import build_manifest, final_metrics, write_manifest
from medinjection.training.provenance import base_model, rewrite_adapter_config
from medinjection.training.resume import SettingsCallback, resume_point
from medinjection.training.speed import plan_speed
from medinjection.training.tokens import prepare

logger = logging.getLogger(__name__)


class TrainError(ValueError):
    """The run cannot start as asked; the message says what to change."""


def apply_effective_batch(training_args, effective_batch: int | None, world_size: int) -> None:
    """Set gradient accumulation so that per-device batch x processes x accumulation = ``effective_batch``."""
    if effective_batch is None:
        return
    per_step = training_args.per_device_train_batch_size * world_size
    if effective_batch % per_step:
        raise TrainError(
            f"--effective_batch {effective_batch} is not a multiple of per_device_train_batch_size "
            f"{training_args.per_device_train_batch_size} x {world_size} process(es) = {per_step}"
        )
    training_args.gradient_accumulation_steps = effective_batch // per_step


def drop_trl_card(run_dir: Path) -> None:
    """Remove the README.md TRL writes beside the adapter: it names the local model path as the base model.
    The model card is written from the manifest when the adapter is published (cards/model_card.py)."""
    card = run_dir / "README.md"
    if card.is_file() and "trained using [TRL]" in card.read_text(encoding="utf-8"):
        card.unlink()


def train(script_args: TrainArguments, training_args, model_args, argv: list[str] | None = None) -> RunLayout:
    """Train a DoRA adapter as the recipe says and write the run folder (``training_args.output_dir``).

    Args:
        script_args: the dataset (``dataset_name``, ``dataset_config``, splits) and our options (loss
            mode, speed, effective batch, resume).
        training_args: TRL's ``SFTConfig``; ``output_dir`` is the run folder.
        model_args: TRL's ``ModelConfig`` (model, dtype, attention, DoRA settings).
        argv: the command line, recorded in the manifest.

    Returns:
        The ``RunLayout`` of the finished run folder.
    """
    from trl import SFTTrainer, get_peft_config, get_quantization_config

    if not model_args.use_peft:
        raise TrainError(
            "medinjection train trains adapters: set use_peft: true (and use_dora: true for DoRA)"
        )
    if script_args.dataset_streaming:
        raise TrainError("dataset_streaming is not supported: the mix is read whole (it fits in memory)")
    layout = RunLayout(Path(training_args.output_dir))
    world_size = training_args.world_size
    apply_effective_batch(training_args, script_args.effective_batch, world_size)
    base = base_model(model_args.model_name_or_path, model_args.model_revision, script_args.base_model_id)

    evaluate = str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) != "no"
    data = load_training_data(
        script_args.dataset_name,
        script_args.dataset_config,
        revision=script_args.dataset_revision,
        train_split=script_args.dataset_train_split,
        eval_split=script_args.dataset_test_split if evaluate else None,
    )
    recipe_settings = effective_settings(script_args, training_args, model_args, world_size)
    resume_settings = {
        **recipe_settings,
        "dataset": data.info["name"],
        "dataset_config": data.info["config"],
        "dataset_revision": data.info.get("revision"),
        "dataset_sha256": data.info.get("fingerprint", {}).get("sha256"),
    }
    with training_args.main_process_first(desc="checking the run folder", local=False):
        checkpoint = resume_point(layout, resume_settings, script_args.resume, script_args.overwrite)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    max_length = training_args.max_length
    with training_args.main_process_first(desc="tokenizing"):
        train_set, train_stats = prepare(
            data.train, tokenizer, script_args.loss, max_length, training_args.dataset_num_proc
        )
        eval_set, eval_stats = (None, None)
        if data.eval is not None:
            eval_set, eval_stats = prepare(
                data.eval, tokenizer, script_args.loss, max_length, training_args.dataset_num_proc
            )

    plan = plan_speed(script_args.speed, training_args, model_args)
    if training_args.padding_free and not training_args.packing:
        # TRL refuses max_length with padding-free batches; the sequences are already cut to it (tokens.prepare).
        training_args.max_length = None
    run_settings = effective_settings(script_args, training_args, model_args, world_size)
    run_settings["max_length"] = max_length

    model_init_kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs

    trainer = SFTTrainer(
        model=model_args.model_name_or_path,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
        callbacks=[SettingsCallback(resume_settings)],
    )
    if not base["made_on_the_fly"]:  # the commit the Hub id resolved to (for a branch, or when not given)
        base["revision_resolved"] = getattr(trainer.model.config, "_commit_hash", None) or base["revision"]
    if checkpoint is not None:
        logger.warning("resuming from %s", checkpoint)
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    metrics = final_metrics(trainer, result, evaluate=eval_set is not None)
    trainer.save_model(training_args.output_dir)

    if trainer.accelerator.is_main_process:
        rewrite_adapter_config(layout.root, base["hub_id"])
        drop_trl_card(layout.root)
        manifest = build_manifest(
            layout=layout,
            base=base,
            data=data.info,
            script_args=asdict(script_args),
            recipe_settings=recipe_settings,
            run_settings=run_settings,
            deviations=paper_deviations(recipe_settings),
            speed=plan.as_dict(),
            tokens={"train": train_stats.as_dict(), "eval": eval_stats.as_dict() if eval_stats else None},
            metrics=metrics,
            resumed_from=checkpoint.name if checkpoint else None,
            world_size=world_size,
            argv=argv,
            peft_config=trainer.model.peft_config["default"],
        )
        write_manifest(layout, manifest)
    trainer.accelerator.wait_for_everyone()
    if hasattr(trainer, "end"):
        trainer.end()
    return layout
