"""The whole loop on the bundled demo data, offline: ``medinjection demo`` (the README's main command).

mixes -> train -> evaluate -> report -> publish, each step the real one, with a tiny random Qwen3
made on the fly (``medinjection.models.tiny``) instead of Qwen3-4B-Instruct-2507::

    DIR/medinjection-fr/      the dataset: build (translate, synthesize, filter, dedup, decontaminate),
                              the seven mixes (multiple choice, --allow-smaller) and the cards
    DIR/tiny-qwen3/           the tiny base model
    DIR/runs/<mix>/           a DoRA adapter per mix (trl_configs/tiny/<mix>.yaml) + manifest.json
    DIR/eval/                 the base model and every adapter on the demo's three test splits,
                              through the tiny evaluation recipe (recipes/evaluation/tiny.yaml):
                              multiple choice with one option permutation; open-ended answers (at
                              most 48 new tokens) with BLEU, ROUGE-2, METEOR and the tiny model as an
                              in-process judge
    DIR/report/               report.md and its PNG plots
    DIR/publish-preview/<mix>/  what `publish adapter` would push (model card, adapter, summaries)

Every step prints one line; what the libraries print goes to ``DIR/logs/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medinjection.core.console import Console, capture_logs
from medinjection.dataset_builders.mixes import MIXES

EVAL_RECIPE = "tiny"
"""The evaluation recipe the demo runs (``recipes/evaluation/tiny.yaml``), with its folders set to DIR's."""


@dataclass
class DemoResult:
    root: Path
    dataset: Path
    model: Path
    runs: list[Path] = field(default_factory=list)
    eval_dir: Path | None = None
    report: Path | None = None
    previews: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def train_mix(mix: str, dataset: Path, model: Path, output: Path, log: Path) -> Path:
    """Train the tiny recipe of ``mix`` in process (TRL's parser, our ``train``), its output in ``log``."""
    import contextlib
    import logging

    from medinjection.training import parse_args, recipe_path, train

    argv = [
        "--config",
        str(recipe_path("tiny", mix)),
        "--model_name_or_path",
        str(model),
        "--dataset_name",
        str(dataset),
        "--output_dir",
        str(output),
        "--disable_tqdm",
        "true",
        "--log_level",
        "error",
        "--overwrite",
        "true",
    ]
    with log.open("a", encoding="utf-8") as handle, contextlib.redirect_stdout(handle):
        with capture_logs(log):
            # the trainer sets transformers' log level from --log_level for the whole process: put it back
            previous = logging.getLogger("transformers").level
            try:
                layout = train(
                    *parse_args(argv, prog="medinjection train"), argv=["medinjection", "train", *argv]
                )
            finally:
                logging.getLogger("transformers").setLevel(previous)
    return layout.root


def run_demo(
    root: Path,
    *,
    mixes: list[str] | None = None,
    seed: int = 0,
    build: Callable[[Path], Path] | None = None,
    console: Console | None = None,
) -> DemoResult:
    """Run the whole loop into ``root`` (see the module docstring); returns where everything is."""
    from medinjection.core.runs import RunLayout
    from medinjection.dataset_builders.mixes import build_mixes
    from medinjection.evaluation.report import build_report
    from medinjection.evaluation.runner import evaluate
    from medinjection.models.tiny import make_tiny_model
    from medinjection.publish.adapter import prepare_release, publish_release, repo_name

    console = console or Console()
    root = root.resolve()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    mixes = list(mixes or MIXES)
    unknown = sorted(set(mixes) - set(MIXES))
    if unknown:
        raise ValueError(f"unknown mix(es) {unknown}; the mixes are {list(MIXES)}")
    result = DemoResult(root=root, dataset=root / "medinjection-fr", model=root / "tiny-qwen3")
    steps = 5 + len(mixes)

    def timed(name: str):
        start = time.perf_counter()
        return lambda: result.seconds.__setitem__(name, time.perf_counter() - start)

    # 1. the dataset (the build prints its own stage lines), then the mixes and cards
    done = timed("dataset")
    if build is not None:
        build(result.dataset)
    with console.stage("mixes and cards", 1, steps) as line:
        with capture_logs(logs / "mixes.log"):
            mixed = build_mixes(result.dataset, seed=seed, allow_smaller=True)
        line.detail = f"7 mixes of {mixed.size} train examples ({'+'.join(mixed.report['types'])}), cards"
    done()

    # 2. the tiny base model, then one DoRA adapter per mix
    done = timed("train")
    with console.stage("tiny base model", 2, steps) as line:
        with capture_logs(logs / "tiny-model.log"):
            make_tiny_model(result.model)
        line.detail = str(result.model.relative_to(root))
    for index, mix in enumerate(mixes, 3):
        with console.stage(f"train {mix}", index, steps) as line:
            run = train_mix(mix, result.dataset, result.model, root / "runs" / mix, logs / f"train-{mix}.log")
            manifest = RunLayout(run).manifest()
            train_metrics = manifest["metrics"]["train"]
            line.detail = (
                f"DoRA, {manifest['mix']['size']} examples, loss {train_metrics['first_logged_loss']:.2f} -> "
                f"{train_metrics['last_logged_loss']:.2f}"
            )
        result.runs.append(run)
    done()

    # 3. evaluation of the base model and every adapter, then the report
    done = timed("evaluate")
    result.eval_dir = root / "eval"
    index = 3 + len(mixes)
    with console.stage("evaluate", index, steps) as line:
        lines: list[str] = []
        settings = evaluation_settings(root, result.eval_dir, seed)
        with capture_logs(logs / "evaluate.log"):
            evaluate(settings, log=lines.append)
        with (logs / "evaluate.log").open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        line.detail = f"base + {len(mixes)} adapters on {', '.join(settings.tasks)}"
    done()
    done = timed("report")
    with console.stage("report", index + 1, steps) as line:
        result.report = root / "report"
        with capture_logs(logs / "report.log"):
            report = build_report(result.eval_dir, result.report)
        line.detail = f"report.md + {len(report.figures)} plots"
    done()

    # 4. what publishing each scored adapter would push
    done = timed("publish")
    with console.stage("publish dry run", index + 2, steps) as line:
        with capture_logs(logs / "publish.log"):
            for run in result.runs:
                layout = RunLayout(run)
                release = prepare_release(run, repo_name(layout, "your-org", "{base}-MedInjection-FR-{mix}"))
                preview = root / "publish-preview" / layout.name
                publish_release(release, dry_run_dir=preview, compare_remote=False, echo=lambda text: None)
                result.previews.append(preview)
        line.detail = f"{len(result.previews)} model cards + adapters + summaries"
    done()
    return result


def evaluation_settings(root: Path, output: Path, seed: int = 0):
    """The tiny evaluation recipe, parsed as ``medinjection evaluate --config`` parses it, with its
    relative folders (model, runs, dataset, judge) made DIR's and the demo's seed."""
    from medinjection.evaluation.settings import recipe_path, settings_from

    recipe = recipe_path(EVAL_RECIPE)
    parsed = settings_from(recipe=recipe)
    return settings_from(
        {
            "model_name_or_path": str(root / parsed.model_name_or_path),
            "adapters": [str(root / path) for path in parsed.adapters],
            "data_dir": str(root),
            "judge": str(root / parsed.judge) if parsed.judge else None,
            "output_dir": str(output),
            "seed": seed,
        },
        recipe=recipe,
    )


def summary_rows(result: DemoResult) -> list[tuple[str, str]]:
    """Where each thing is, and the headline figures of the run."""
    from medinjection.core.outputs import AGGREGATE, read_json

    root = result.root

    def rel(path: Path) -> str:
        return f"./{path.relative_to(root)}" if path.is_relative_to(root) else str(path)

    rows = [
        ("dataset", f"{rel(result.dataset)}  (load_dataset({rel(result.dataset)!r}, 'nat_trad'))"),
        ("base model", f"{rel(result.model)}  (tiny random Qwen3, Qwen3-Instruct-2507 chat template)"),
        (
            "adapters",
            f"{rel(root / 'runs')}/<mix>/  ({', '.join(p.name for p in result.runs)}; manifest.json each)",
        ),
    ]
    if result.eval_dir is not None:
        rows.append(
            (
                "evaluation",
                f"{rel(result.eval_dir)}/<model>/<task>/predictions.parquet + summary.json, comparisons.json",
            )
        )
        aggregates = []
        for tag in ["base", *(p.name for p in result.runs)]:
            path = result.eval_dir / tag / AGGREGATE
            if path.is_file():
                entry = read_json(path)["metrics"].get("em_constrained_macro") or {}
                if entry.get("value") is not None:
                    aggregates.append(f"{tag} {100 * entry['value']:.1f}")
        if aggregates:
            rows.append(
                ("constrained EM", "aggregated (macro, %): " + ", ".join(aggregates) + "  (random weights)")
            )
    if result.report is not None:
        rows.append(("report", f"{rel(result.report / 'report.md')} + PNG plots"))
    if result.previews:
        rows.append(
            ("publish preview", f"{rel(root / 'publish-preview')}/<mix>/  (README.md is the model card)")
        )
    rows.append(("logs", f"{rel(root / 'logs')}/  and {rel(result.dataset / '_build' / 'build.log')}"))
    return rows
