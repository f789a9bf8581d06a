"""The model card of a trained, scored adapter, filled from its run folder with huggingface_hub.

Everything comes from the run folder (``medinjection.core.runs.RunLayout``): the provenance manifest
that ``medinjection train`` wrote (base model, dataset and mix, recipe, settings, final losses) and
the evaluation summaries that ``medinjection evaluate`` wrote into ``RUN_DIR/eval/`` for exactly
these adapter files. The metadata is a ``ModelCardData``: ``base_model`` (the Hub id, never a local
path), ``library_name: peft``, ``pipeline_tag: text-generation``, ``language: fr``, the licence, the
training dataset, and ``model-index`` results for every evaluation task and metric scored. The Hub's
newer ``.eval_results/<task>.yaml`` files are made from the same figures by ``eval_result_files``.

A template variable without a value is an error (``ModelCardError``), never an empty string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from medinjection.core.runs import RunLayout, read_json
from medinjection.training import authors

TEMPLATE = "model_card.md"
SINGLE_PROVENANCE = {
    "native": "native French items only",
    "translated": "items translated from English only",
    "synthetic": "synthetic items only",
}
BASE_LICENSES = {"Qwen/Qwen3-4B-Instruct-2507": "apache-2.0"}
"""Licences of known base models, the adapter's default licence (an adapter is a derivative of its base)."""
TINY_LICENSE = "mit"
"""The tiny model is made on the fly by this project (MIT): the default licence of its adapters."""
HEADLINE_METRICS = (
    "em_constrained",
    "em_greedy",
    "hamming_constrained",
    "hamming_greedy",
    "em_constrained_letters",
    "hamming_constrained_letters",
    "em_constrained_perm",
    "em_constrained_robust",
    "bleu",
    "rouge2",
    "meteor",
    "bertscore_f1",
    "judge_binary",
    "judge_graded",
)
"""Metrics put in ``model-index`` and the card's table, in this order (breakdowns stay in the summaries)."""
OEQ_METRICS = frozenset({"bleu", "rouge2", "meteor", "bertscore_f1", "judge_binary", "judge_graded"})


class ModelCardError(ValueError):
    """The card cannot be written from this run folder; the message names the folder and what is missing."""


@dataclass(frozen=True)
class Scored:
    """One task's evaluation summary of the run, checked against the adapter files in the folder."""

    task: str
    summary: dict
    path: Path


def portable(value: Any) -> Any:
    """``value`` (a manifest, a summary) with the local absolute paths it names made portable.

    What is published must not carry the trainer's file system (user names, scratch folders): a path
    into the package's ``trl_configs/`` keeps that tail (``trl_configs/tiny/nat.yaml``), any other
    absolute path becomes ``<local>/<its last component>``. Hub ids, revisions and hashes are untouched.
    """
    if isinstance(value, dict):
        return {key: portable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item) for item in value]
    if isinstance(value, str) and (value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", value)):
        parts = Path(value).parts
        if "trl_configs" in parts:
            return "/".join(parts[parts.index("trl_configs") :])
        return f"<local>/{Path(value).name}"
    return value


def is_hub_id(value: str | None) -> bool:
    """``ORG/NAME`` as the Hub validates repo ids, and not a folder on this machine."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not value or "/" not in value or Path(value).expanduser().exists():
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def base_model_id(run: RunLayout, manifest: dict) -> str:
    """The base model's Hub id, from the manifest and ``adapter_config.json``, which must agree."""
    config = read_json(run.root / "adapter_config.json")
    in_config = config.get("base_model_name_or_path")
    in_manifest = (manifest.get("base_model") or {}).get("hub_id")
    if not is_hub_id(in_config):
        raise ModelCardError(
            f"{run.root}/adapter_config.json: base_model_name_or_path is {in_config!r}, not a Hub id "
            "(ORG/NAME); the adapter would not load for anyone else. Retrain with medinjection train, "
            "or pass --base_model_id ORG/NAME"
        )
    if in_manifest and in_manifest != in_config:
        raise ModelCardError(
            f"{run.root}: manifest.json names base model {in_manifest!r} but adapter_config.json names {in_config!r}"
        )
    return in_config


def mix_description(entry: dict) -> str:
    """What a mix holds, from its ``mixes.json`` entry (copied into the run manifest as it is)."""
    provenances = list(entry.get("provenances") or [])
    if len(provenances) == 1:
        return SINGLE_PROVENANCE.get(provenances[0], f"{provenances[0]} items only")
    if not provenances:
        return "a mix the dataset's mixes.json does not describe"
    names = ", ".join(provenances[:-1]) + f" and {provenances[-1]}"
    return f"{names} items in equal shares"


def scale(metric: str) -> float:
    """Metrics are fractions, shown as percentages, except the report's raw ones (BLEU on sacrebleu's
    0-100 scale, the graded judge on 1-5), shown as they are."""
    from medinjection.evaluation.report_data import RAW_METRICS

    return (
        1.0
        if metric.split(":")[0].removesuffix("_by_type").removesuffix("_by_source") in RAW_METRICS
        else 100.0
    )


def _shown(metric: str, value: float | None) -> float | None:
    return None if value is None else round(scale(metric) * value, 2)


def _percent(metric: str, value: float | None) -> str:
    shown = _shown(metric, value)
    return "n/a" if shown is None else f"{shown:.2f}"


def _interval(metric: str, entry: dict) -> str:
    ci = entry.get("ci95")
    if not ci or ci[0] is None:
        return "n/a"
    return f"[{_percent(metric, ci[0])}, {_percent(metric, ci[1])}]"


def _vs_base(summary: dict, metric: str) -> str:
    comparison = (summary.get("vs_base") or {}).get(metric)
    if not comparison or comparison.get("diff") is None:
        return "not compared"
    p = comparison.get("p_adjusted", comparison.get("p_value"))
    return f"{comparison['verdict']} ({scale(metric) * comparison['diff']:+.2f}, p_adj {p:.3g})"


def _task_ref(summary: dict) -> dict[str, Any]:
    """Where a task's items came from: Hub id and revision when it has them, its split."""
    spec = summary.get("task_spec") or {}
    part = spec.get("source") or spec.get("dataset") or {}
    return {
        "hub_id": part.get("hub_id"),
        "revision": part.get("revision"),
        "config": part.get("config"),
        "split": spec.get("split"),
        "description": spec.get("description") or summary["task"],
    }


def results(scored: list[Scored]) -> list[tuple[Scored, str, dict]]:
    """(task, metric, entry) of every headline metric present with a value, in a stable order."""
    out = []
    for item in scored:
        metrics = item.summary.get("metrics") or {}
        for name in HEADLINE_METRICS:
            entry = metrics.get(name)
            if entry and entry.get("value") is not None:
                out.append((item, name, entry))
    return out


def eval_results(scored: list[Scored]) -> list[EvalResult]:
    """``model-index`` results: one per task and metric (values in percent, as the paper prints)."""
    found = []
    for item, name, entry in results(scored):
        ref = _task_ref(item.summary)
        found.append(
            EvalResult(
                task_type="text-generation" if name in OEQ_METRICS else "multiple-choice",
                dataset_type=ref["hub_id"] or item.task,
                dataset_name=item.task,
                dataset_config=ref["config"],
                dataset_split=ref["split"],
                dataset_revision=ref["revision"],
                metric_type=name,
                metric_name=name,
                metric_value=_shown(name, entry["value"]),
                metric_config=f"ci95 {_interval(name, entry)}, n={entry.get('n')}",
            )
        )
    return found


def eval_result_files(scored: list[Scored]) -> dict[str, str]:
    """``.eval_results/<task>.yaml`` (the Hub's newer format) for tasks with a Hub dataset id.

    The Hub links these files to the task dataset's page, so a task read from local files
    (no Hub id) has none: its figures stay in the card's ``model-index`` and table.
    """
    import yaml
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    files = {}
    by_task: dict[str, list] = {}
    for item, name, entry in results(scored):
        ref = _task_ref(item.summary)
        if not ref["hub_id"]:
            continue
        by_task.setdefault(item.task, []).append(
            EvalResultEntry(
                dataset_id=ref["hub_id"],
                task_id=f"{item.task}/{name}",
                value=_shown(name, entry["value"]),
                dataset_revision=ref["revision"],
                date=item.summary.get("created"),
                notes=f"medinjection evaluate; 95% CI {_interval(name, entry)}; n={entry.get('n')}",
            )
        )
    for task, entries in sorted(by_task.items()):
        files[f".eval_results/{task}.yaml"] = yaml.safe_dump(
            eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True
        )
    return files


def _hyperparameters(manifest: dict) -> list[dict[str, str]]:
    run = (manifest.get("settings") or {}).get("run") or {}
    adapter = manifest.get("adapter") or {}
    rows = [
        (
            "adapter",
            f"DoRA r={adapter.get('r')}, alpha={adapter.get('lora_alpha')}, dropout {adapter.get('lora_dropout')}",
        ),
        ("target modules", ", ".join(adapter.get("target_modules") or [])),
    ]
    for key in (
        "num_train_epochs",
        "effective_batch",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "world_size",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "max_length",
        "dtype",
        "seed",
        "padding_free",
        "packing",
        "train_sampling_strategy",
    ):
        if key in run and run[key] is not None:
            rows.append((key, str(run[key])))
    rows.append(
        ("loss", (manifest.get("loss") or {}).get("labels") or (manifest.get("loss") or {}).get("mode"))
    )
    return [{"name": name, "value": str(value)} for name, value in rows]


def _dataset_facts(manifest: dict, dataset_repo: str | None) -> tuple[str, list[str] | None, list[str]]:
    """(the card's training-data line, ``datasets`` metadata, provenance lines)."""
    dataset = manifest.get("dataset") or {}
    mix = manifest.get("mix") or {}
    lines = []
    if dataset.get("kind") == "hub":
        repo, revision = dataset["name"], dataset.get("revision") or dataset.get("revision_requested")
        line = f"Config `{mix.get('name')}` of [`{repo}`](https://huggingface.co/datasets/{repo}) at revision `{revision}`"
        meta = [repo]
        lines.append(f"dataset: {repo}@{revision}, config {mix.get('name')}")
    elif dataset_repo:
        repo, _, revision = dataset_repo.partition("@")
        line = (
            f"Config `{mix.get('name')}` of a local build of MedInjection-FR, published as "
            f"[`{repo}`](https://huggingface.co/datasets/{repo}){f' at revision `{revision}`' if revision else ''}"
        )
        meta = [repo]
        lines.append(f"dataset: local build {dataset.get('name')} (published as {dataset_repo})")
    else:
        line = f"Config `{mix.get('name')}` of a local build of MedInjection-FR (`{dataset.get('name')}`, not on the Hub)"
        meta = None
        lines.append(f"dataset: local build {dataset.get('name')}")
    fingerprint = dataset.get("fingerprint")
    if isinstance(fingerprint, dict) and fingerprint.get("sha256"):
        lines.append(f"dataset files sha256: {fingerprint['sha256']}")
    line += f": {mix.get('size')} train examples."
    return line, meta, lines


def card_facts(
    run: RunLayout,
    scored: list[Scored],
    *,
    repo_id: str,
    license: str | None = None,
    dataset_repo: str | None = None,
) -> tuple[ModelCardData, dict[str, Any]]:
    manifest = portable(run.manifest())
    base = base_model_id(run, manifest)
    made_on_the_fly = bool((manifest.get("base_model") or {}).get("made_on_the_fly"))
    if license is None:
        license = TINY_LICENSE if made_on_the_fly else BASE_LICENSES.get(base)
    if license is None:
        raise ModelCardError(
            f"{run.root}: no known licence for an adapter of {base}; pass --license (a Hub licence id, "
            "e.g. apache-2.0), compatible with the base model's and the training data's licences"
        )
    mix = manifest.get("mix") or {}
    data_line, datasets_meta, provenance = _dataset_facts(manifest, dataset_repo)
    metrics = manifest.get("metrics") or {}
    train = metrics.get("train") or {}
    validation = metrics.get("validation") or {}
    recipe = manifest.get("recipe") or {}
    code = manifest.get("code") or {}
    versions = manifest.get("versions") or {}
    hardware = manifest.get("hardware") or {}
    provenance += [
        f"recipe: {recipe.get('path')} (sha256 {recipe.get('sha256')})"
        if recipe
        else "recipe: command-line settings only",
        f"code: git commit {code.get('commit')}{' (uncommitted changes)' if code.get('dirty') else ''}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()) if v),
        "hardware: " + ", ".join(f"{k} {v}" for k, v in hardware.items() if v not in (None, "")),
        f"base model revision: {(manifest.get('base_model') or {}).get('revision')}",
        *(f"training warning: {warning}" for warning in manifest.get("warnings") or []),
    ]
    entry = mix.get("entry") or {}
    composition = [
        {"provenance": provenance_name, "type": kind, "count": count}
        for provenance_name, kinds in sorted((entry.get("by_provenance_type") or {}).items())
        for kind, count in sorted(kinds.items())
    ] or [
        {
            "provenance": ", ".join(sorted(mix.get("provenance_counts") or {})) or "?",
            "type": kind,
            "count": count,
        }
        for kind, count in sorted((mix.get("type_counts") or {}).items())
    ]
    model_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        base_model=base,
        library_name="peft",
        pipeline_tag="text-generation",
        language=["fr"],
        license=license,
        datasets=datasets_meta,
        tags=["medical", "biomedical", "french", "dora", "peft", "trl", "sft", "medinjection-fr"],
        model_name=model_name,
        eval_results=eval_results(scored) or None,
    )
    splits = (manifest.get("dataset") or {}).get("splits") or {}
    validation_split = next((v for v in splits.values() if isinstance(v, dict)), None)
    values = {
        "title": f"{model_name}: {base.split('/')[-1]} + DoRA on MedInjection-FR `{mix.get('name')}`",
        "base_model": base,
        "repo_id": repo_id,
        "mix": mix.get("name"),
        "mix_description": mix_description(entry),
        "base_note": (
            f"`{base}` is a tiny random model made on the fly by the medinjection demo, not a model on the "
            "Hub: this card is a preview of the format, and its scores mean nothing."
            if made_on_the_fly
            else ""
        ),
        "chat_version": manifest.get("chat_version") or "unknown",
        "data_line": data_line,
        "composition": composition,
        "types": ", ".join(mix.get("types") or []) or "unknown",
        "validation_line": (
            f"Validation during training: the `{validation_split['split']}` split, {validation_split['used']} items."
            if validation_split
            else "No validation split during training."
        ),
        "recipe_line": (
            f"TRL `SFTTrainer` with `{recipe.get('path')}`."
            if recipe
            else "TRL `SFTTrainer`, settings from the command line."
        ),
        "hyperparameters": _hyperparameters(manifest),
        "deviations_line": deviations_text(manifest),
        "train_loss": _loss(train.get("last_logged_loss", train.get("train_loss"))),
        "validation_loss": _loss(validation.get("eval_loss")) if validation else "",
        "adapter_sha256": run.adapter_sha256(),
        "results": [
            {
                "task": item.task,
                "n": entry.get("n"),
                "metric": name,
                "value": _percent(name, entry["value"]),
                "ci": _interval(name, entry),
                "vs_base": _vs_base(item.summary, name),
            }
            for item, name, entry in results(scored)
        ],
        "provenance": provenance,
    }
    return card_data, values


DEVIATION_KINDS = (authors.DATA, authors.NUMERICS, authors.SAME_MATHS)
"""The kinds of a difference from the authors' run, as the manifest writes them, in the card's order."""


def deviations_text(manifest: dict) -> str:
    """The card's paragraph on the authors' run: whether this run is faithful to it (no difference of data
    or objective), then every difference the manifest lists, by kind (computed from the settings the run
    used, after its speed plan)."""
    deviations = manifest.get("paper_deviations") or {}
    if not deviations:
        return "\nSame settings as the paper's released scripts (the authors' run), setting by setting."
    groups: dict[str, list[str]] = {}
    for name, entry in deviations.items():
        kind = entry.get("kind") if isinstance(entry, dict) else None
        groups.setdefault(kind or "kind not recorded (an older manifest)", []).append(
            f"`{name}` {_plain(entry)}"
        )
    faithful = manifest.get("faithful_to_paper")
    verdict = (
        "Faithful to the authors' run: its data and objective are theirs; it differs only in how it is computed."
        if faithful
        else "Not the authors' run: it differs from it in data or objective."
        if faithful is False or DEVIATION_KINDS[0] in groups
        else ""
    )
    order = [*DEVIATION_KINDS, *sorted(k for k in groups if k not in DEVIATION_KINDS)]
    lines = [f"- {kind}: " + "; ".join(groups[kind]) for kind in order if kind in groups]
    heading = f"{verdict} Differences from the authors' run (theirs → this run), by kind:".strip()
    return "\n" + heading + "\n\n" + "\n".join(lines)


def _plain(deviation: Any) -> str:
    if isinstance(deviation, dict) and "run" in deviation and ({"authors", "paper"} & set(deviation)):
        theirs = deviation["authors"] if "authors" in deviation else deviation["paper"]
        return f"{theirs} → {deviation['run']}"
    return str(deviation)


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def render_model_card(
    run: RunLayout,
    scored: list[Scored],
    *,
    repo_id: str,
    license: str | None = None,
    dataset_repo: str | None = None,
) -> ModelCard:
    """The model card of ``run`` as it would be published to ``repo_id``."""
    card_data, values = card_facts(run, scored, repo_id=repo_id, license=license, dataset_repo=dataset_repo)
    template = (resources.files("medinjection.cards") / "templates" / TEMPLATE).read_text(encoding="utf-8")
    wanted = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(template)) - {"card_data"}
    missing = sorted(name for name in wanted if values.get(name) is None)
    if missing:
        raise ModelCardError(f"{TEMPLATE}: no value for {', '.join(missing)} (run folder {run.root})")
    if not values["results"]:
        raise ModelCardError(f"{run.root}: the evaluation summaries hold no metric with a value")
    return ModelCard.from_template(card_data, template_str=template, **values)
