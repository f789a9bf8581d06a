"""The provenance manifest of a run folder (``RUN_DIR/manifest.json``).

It ties the adapter files (their sha256, as ``RunLayout.adapter_sha256`` computes it) to exactly what
produced them: the base model's Hub id and revision; the dataset (Hub repo and resolved commit, or the
local folder with a sha256 of every file read); the mix's name, size and types and the chat format
version; the recipe file and its sha256, the command line and the settings (as written and as run,
with every difference from the authors' run, by kind, and every speed-up); the loss mode and its token counts;
the seed, the code's git commit, the package versions and the hardware; the final training and
validation metrics.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medinjection.core import environment
from medinjection.core.files import sha256_file, write_text_atomic
from medinjection.core.runs import RunLayout

FORMAT = 2
"""2: ``paper_deviations`` entries carry their ``kind`` (``authors.KINDS``) and the authors' value under
``authors``; ``paper_deviations_by_kind``; ``faithful_to_paper`` from the settings the run used."""
LOSS_LABELS = {
    "full": "every token of the chat rendered with its template (system, user, assistant), no end token "
    "appended: exactly the authors' tokens",
    "assistant": "the answer tokens and their end-of-turn token only",
}


def _number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def final_metrics(trainer, result, evaluate: bool) -> dict[str, Any]:
    """Training metrics (last logged loss, mean loss over the run, runtime) and the final validation ones."""
    history = trainer.state.log_history
    train_logs = [entry for entry in history if "loss" in entry]
    last = train_logs[-1] if train_logs else {}
    train = {
        "global_step": trainer.state.global_step,
        "epoch": trainer.state.epoch,
        "last_logged_loss": _number(last.get("loss")),
        "last_logged_step": last.get("step"),
        "first_logged_loss": _number(train_logs[0].get("loss")) if train_logs else None,
        "mean_token_accuracy": _number(last.get("mean_token_accuracy")),
        **{k: _number(v) for k, v in result.metrics.items()},
    }
    validation = None
    if evaluate:
        evals = [entry for entry in history if "eval_loss" in entry]
        if not evals or evals[-1].get("step") != trainer.state.global_step:
            evals.append({**trainer.evaluate(), "step": trainer.state.global_step})
        validation = {k: _number(v) for k, v in evals[-1].items()}
    return {"train": train, "validation": validation}


def build_manifest(
    *,
    layout: RunLayout,
    base: dict[str, Any],
    data: dict[str, Any],
    script_args: dict[str, Any],
    recipe_settings: dict[str, Any],
    run_settings: dict[str, Any],
    labels: dict[str, Any],
    speed: dict[str, Any],
    tokens: dict[str, Any],
    metrics: dict[str, Any],
    resumed_from: str | None,
    effective_batch: dict[str, Any] | None = None,
    warnings: list[str] | None = None,
    world_size: int,
    argv: list[str] | None,
    peft_config,
) -> dict[str, Any]:
    mix = dict(data["mix"])
    return {
        "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_model": base,
        "dataset": {k: v for k, v in data.items() if k not in ("mix", "chat_version", "chat_version_source")},
        "mix": mix,
        "chat_version": data.get("chat_version"),
        "chat_version_source": data.get("chat_version_source"),
        "recipe": recipe(script_args.get("recipe_file")),
        "command": argv,
        "options": {
            k: script_args[k]
            for k in (
                "loss",
                "speed",
                "effective_batch",
                "resume",
                "overwrite",
                "dataset_revision",
                "base_model_id",
                "base_model_revision",
            )
        },
        "effective_batch": effective_batch,
        "seed": run_settings["seed"],
        "loss": {"mode": script_args["loss"], "labels": LOSS_LABELS[script_args["loss"]], "tokens": tokens},
        "settings": {"recipe": recipe_settings, "run": run_settings},
        "paper_deviations": labels["paper_deviations"],
        "paper_deviations_by_kind": labels["paper_deviations_by_kind"],
        "faithful_to_paper": labels["faithful_to_paper"],
        "speed": speed,
        "resumed_from": resumed_from,
        "warnings": list(warnings or []),
        "adapter": {
            "files": [p.name for p in layout.adapter_paths()],
            "sha256": layout.adapter_sha256(),
            "peft_type": str(getattr(peft_config.peft_type, "value", peft_config.peft_type)),
            "use_dora": bool(peft_config.use_dora),
            "r": peft_config.r,
            "lora_alpha": peft_config.lora_alpha,
            "lora_dropout": peft_config.lora_dropout,
            "target_modules": sorted(peft_config.target_modules),
            "base_model_name_or_path": base["hub_id"],
        },
        "metrics": metrics,
        "code": environment.git_state(),
        "versions": environment.package_versions(),
        "hardware": environment.hardware(world_size),
    }


def write_manifest(layout: RunLayout, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=False, default=str) + "\n"
    write_text_atomic(layout.manifest_path, text)


def recipe(recipe_file: str | None) -> dict[str, Any] | None:
    if not recipe_file:
        return None
    return {"path": str(recipe_file), "sha256": sha256_file(Path(recipe_file))}
