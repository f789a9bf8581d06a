"""``train(script_args, training_args, model_args) -> RunLayout``: one SFT run of a DoRA adapter on one mix.

The steps, each in its own module: the run folder's lock (``core.runs``), the data of the mix (``data``),
resume (``resume``), its tokens and labels for the loss mode (``tokens``), the same-maths speed-ups for
this hardware (``speed``), the comparison with the authors' run from the settings then in use
(``authors``), TRL's ``SFTTrainer`` for the training itself (or ``dump`` for ``--dump_tokens``), then the
adapter files with the base model's Hub id and the provenance manifest (``manifest``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medinjection.core.runs import RunError, RunLayout, rewrite_adapter_config
from medinjection.models.identity import base_model
from medinjection.training import authors
from medinjection.training.arguments import RESUME_KEYS, TrainArguments, effective_settings
from medinjection.training.data import load_training_data
from medinjection.training.manifest import build_manifest, final_metrics, write_manifest
from medinjection.training.recipe_files import declared_settings
from medinjection.training.resume import ResumeError, SettingsCallback, resume_point
from medinjection.training.speed import plan_speed
from medinjection.training.tokens import prepare

logger = logging.getLogger(__name__)


class TrainError(ValueError):
    """The run cannot start as asked; the message says what to change."""


def apply_effective_batch(
    training_args, effective_batch: int | None, world_size: int, source: str = "--effective_batch"
) -> None:
    """Set gradient accumulation so that per-device batch x processes x accumulation = ``effective_batch``."""
    if effective_batch is None:
        return
    per_step = training_args.per_device_train_batch_size * world_size
    if effective_batch % per_step:
        raise TrainError(
            f"effective batch {effective_batch} ({source}) is not a multiple of per_device_train_batch_size "
            f"{training_args.per_device_train_batch_size} x {world_size} process(es) = {per_step}; pass "
            "--effective_batch N or another --per_device_train_batch_size"
        )
    training_args.gradient_accumulation_steps = effective_batch // per_step


def resolve_effective_batch(script_args: TrainArguments, training_args, world_size: int) -> dict[str, Any]:
    """Set the run's gradient accumulation and say where its effective batch comes from.

    ``--effective_batch`` wins. A recipe that trains what the authors trained (``authors.is_authors_recipe``
    on what the file says) and whose ``gradient_accumulation_steps`` is still the file's (written for their
    2 GPUs) gets their effective batch on any number of processes. Otherwise the accumulation is the
    recipe's. An authors' recipe run at another effective batch is logged as a warning, which the manifest
    keeps.

    Returns:
        ``{"value", "source", "authors", "warning"}`` (``authors`` and ``warning`` None for another recipe).
    """
    declared = declared_settings(script_args.recipe_file) if script_args.recipe_file else None
    theirs = authors.authors_value("effective_batch")
    ours = declared is not None and authors.is_authors_recipe(declared)
    if script_args.effective_batch is not None:
        wanted, source = script_args.effective_batch, "--effective_batch"
    elif ours and training_args.gradient_accumulation_steps == declared["gradient_accumulation_steps"]:
        wanted, source = theirs, "the authors', the default of a recipe that trains what they trained"
    else:
        wanted, source = None, "the recipe's gradient_accumulation_steps"
    apply_effective_batch(training_args, wanted, world_size, source=source)
    per_device, steps = training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps
    value = per_device * steps * world_size
    warning = None
    if ours and value != theirs:
        warning = (
            f"effective batch {value} ({per_device} per device x {world_size} process(es) x {steps} accumulation) "
            f"is not the authors' {theirs} of this recipe; pass --effective_batch {theirs} to train as they did"
        )
        logger.warning(warning)
    return {"value": value, "source": source, "authors": theirs if ours else None, "warning": warning}


def run_facts(data_info: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The facts of a run that no recipe key holds, as ``authors.AUTHORS`` names them: the base model by its
    Hub id (wherever it was read from), the training data, the validation set, the embedding resize."""
    mix = data_info["mix"]
    validation = next((v for v in data_info["splits"].values() if isinstance(v, dict)), None)
    return {
        "model_name_or_path": base["hub_id"],
        "train_types": sorted(mix.get("types") or []),
        "train_examples": mix.get("size"),
        "validation_set": (
            f"the {validation['split']} split of the dataset's {data_info['config']!r} config, cut to the mix's "
            f"types {', '.join(validation.get('kept_types') or []) or 'all'}: {validation['used']} of "
            f"{validation['rows']} items"
            if validation
            else None
        ),
        "resize_token_embeddings": False,  # never: see README, "Why the embedding matrix is not resized"
    }


def label_run(settings: dict[str, Any]) -> dict[str, Any]:
    """What the manifest says about a run against the authors': every difference with its kind, the names
    by kind, and ``faithful_to_paper`` (no difference of data or objective). ``settings`` are those the run
    actually used (after the speed plan), with ``run_facts``."""
    found = authors.differences(settings)
    return {
        "paper_deviations": found,
        "paper_deviations_by_kind": authors.by_kind(found),
        "faithful_to_paper": authors.faithful(found),
    }


def shared_from_main(training_args, action):
    """``action()`` on the main process only; its result, or the error it raised, on every process (so that
    no other process touches the run folder, and all of them stop when the main process refuses)."""
    if training_args.world_size <= 1:
        return action()
    import torch.distributed as dist

    box: list[Any] = [None]
    if training_args.process_index == 0:
        try:
            box[0] = ("ok", action())
        except (ResumeError, RunError, TrainError) as err:
            box[0] = ("error", err)
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise value
    return value


def _checkpoint_name(checkpoint: Path | None, layout: RunLayout) -> str | None:
    """The checkpoint's folder name when it is in the run folder, its path otherwise."""
    if checkpoint is None:
        return None
    return checkpoint.name if checkpoint.resolve().parent == layout.root.resolve() else str(checkpoint)


def drop_trl_card(run_dir: Path) -> None:
    """Remove the README.md TRL writes beside the adapter: it names the local model path as the base model.
    The model card is written from the manifest when the adapter is published (cards/model_card.py)."""
    card = run_dir / "README.md"
    if card.is_file() and "trained using [TRL]" in card.read_text(encoding="utf-8"):
        card.unlink()


def train(
    script_args: TrainArguments, training_args, model_args, argv: list[str] | None = None
) -> RunLayout | None:
    """Train a DoRA adapter as the recipe says and write the run folder (``training_args.output_dir``).

    Args:
        script_args: the dataset (``dataset_name``, ``dataset_config``, splits) and our options (loss
            mode, speed, effective batch, resume, ``dump_tokens``).
        training_args: TRL's ``SFTConfig``; ``output_dir`` is the run folder.
        model_args: TRL's ``ModelConfig`` (model, dtype, attention, DoRA settings).
        argv: the command line, recorded in the manifest.

    Returns:
        The ``RunLayout`` of the finished run folder; None with ``dump_tokens`` (nothing is trained).
    """
    if not model_args.use_peft:
        raise TrainError(
            "medinjection train trains adapters: set use_peft: true (and use_dora: true for DoRA)"
        )
    if script_args.dataset_streaming:
        raise TrainError("dataset_streaming is not supported: the mix is read whole (it fits in memory)")
    if script_args.dump_tokens and training_args.world_size > 1:
        raise TrainError(
            "--dump_tokens runs in one process (it writes what that process trains on): launch it without "
            "accelerate or torchrun"
        )
    layout = RunLayout(Path(training_args.output_dir))
    if script_args.dump_tokens:
        return _train(script_args, training_args, model_args, argv, layout)
    lock = layout.lock(argv)
    shared_from_main(training_args, lock.acquire)
    try:
        return _train(script_args, training_args, model_args, argv, layout)
    finally:
        lock.release()


def _train(
    script_args: TrainArguments, training_args, model_args, argv, layout: RunLayout
) -> RunLayout | None:
    from trl import SFTTrainer, get_peft_config, get_quantization_config

    world_size = training_args.world_size
    batch = resolve_effective_batch(script_args, training_args, world_size)
    warnings = [batch["warning"]] if batch["warning"] else []
    base = base_model(
        model_args.model_name_or_path,
        model_args.model_revision,
        script_args.base_model_id,
        script_args.base_model_revision,
    )

    dump = script_args.dump_tokens
    evaluate = training_args.eval_strategy != "no" and not dump  # IntervalStrategy is a str enum
    data = load_training_data(
        script_args.dataset_name,
        script_args.dataset_config,
        revision=script_args.dataset_revision,
        train_split=script_args.dataset_train_split,
        eval_split=script_args.dataset_test_split if evaluate else None,
    )
    facts = run_facts(data.info, base)
    recipe_settings = effective_settings(script_args, training_args, model_args, world_size)
    resume_settings = {
        **{k: recipe_settings[k] for k in RESUME_KEYS},
        "dataset": data.info["name"],
        "dataset_config": data.info["config"],
        "dataset_revision": data.info.get("revision"),
        "dataset_sha256": data.info.get("fingerprint", {}).get("sha256"),
    }
    checkpoint = None
    if not dump:  # a dump starts from the beginning and leaves the run folder as it is
        checkpoint = shared_from_main(
            training_args,
            lambda: resume_point(
                layout,
                resume_settings,
                script_args.resume,
                script_args.overwrite,
                requested=training_args.resume_from_checkpoint,
            ),
        )

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
    labels = label_run({**run_settings, **facts})

    model_init_kwargs: dict[str, Any] = {
        "revision": model_args.model_revision,
        "trust_remote_code": training_args.trust_remote_code,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs
    trainer_kwargs: dict[str, Any] = {
        "model": model_args.model_name_or_path,
        "args": training_args,
        "train_dataset": train_set,
        "eval_dataset": eval_set,
        "processing_class": tokenizer,
        "peft_config": get_peft_config(model_args),
        "quantization_config": get_quantization_config(model_args),
    }
    if dump:
        return _dump_tokens(trainer_kwargs, training_args, Path(dump))
    trainer = SFTTrainer(**trainer_kwargs, callbacks=[SettingsCallback(resume_settings)])
    if not base["made_on_the_fly"]:  # the commit the Hub id resolved to (for a branch, or when not given)
        commit = getattr(trainer.model.config, "_commit_hash", None)
        base["revision_resolved"] = commit or base["revision"]
        if base["revision"] is None and commit:
            base["revision"] = commit
            base["revision_source"] = "config._commit_hash (what transformers loaded)"
        if base["revision"] is None:
            warnings.append(
                f"the base model's revision is unknown ({model_args.model_name_or_path} is a local copy): pass "
                "--base_model_revision SHA to record the Hub commit it was taken at"
            )
            logger.warning(warnings[-1])
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
            run_settings={**run_settings, **facts},
            labels=labels,
            speed=plan.as_dict(),
            tokens={"train": train_stats.as_dict(), "eval": eval_stats.as_dict() if eval_stats else None},
            metrics=metrics,
            resumed_from=_checkpoint_name(checkpoint, layout),
            effective_batch=batch,
            warnings=warnings,
            world_size=world_size,
            argv=argv,
            peft_config=trainer.model.peft_config["default"],
        )
        write_manifest(layout, manifest)
    trainer.accelerator.wait_for_everyone()
    if hasattr(trainer, "end"):
        trainer.end()
    return layout


def _dump_tokens(trainer_kwargs: dict[str, Any], training_args, path: Path) -> None:
    """``--dump_tokens``: the trainer built as for training, its first epoch written to ``path``, nothing
    trained and nothing written into the run folder (the trainer's own output goes to a scratch folder)."""
    import shutil
    import tempfile

    from medinjection.training.dump import TokenDumpTrainer

    scratch = tempfile.mkdtemp(prefix="medinjection-dump-")
    # Only where the trainer writes and what it keeps change; the data, its order, the tokens, labels and
    # batches are those of training. The record ids must reach the collator (see dump.py).
    training_args.output_dir = scratch
    training_args.save_strategy = "no"
    training_args.eval_strategy = "no"
    training_args.remove_unused_columns = False
    try:
        trainer = TokenDumpTrainer(**trainer_kwargs, dump_to=path)
        written = trainer.dump()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.warning("wrote %d training examples to %s (nothing trained)", written, path)
    return None
