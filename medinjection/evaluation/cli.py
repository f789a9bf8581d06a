"""The evaluation's commands: ``evaluate``, ``tasks``, ``judge``, ``report`` (logic in the modules beside).

    medinjection evaluate --config recipes/evaluation/qwen3-4b-instruct-2507.yaml
    medinjection evaluate --config tiny --adapters runs/nat --limit 3 --output_dir scratch
    medinjection tasks
    medinjection judge eval/ --judge-model google/medgemma-27b-text-it --base-url http://127.0.0.1:8000/v1
    medinjection report eval/ --output report/ [--ratings ratings.parquet]

``evaluate`` is a shell over ``settings.EvalArguments``: its arguments go untouched to TRL's parser
(``--config FILE`` plus any ``--key value``), so ``medinjection evaluate`` and
``python -m medinjection.recipes.evaluate`` accept exactly the same things.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medinjection.core.console import fail

EVALUATE_COMMAND = {
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    "add_help_option": False,
}


def evaluate_command(ctx: typer.Context) -> None:
    """Score the base model and adapters on tasks: medinjection evaluate --config RECIPE [--key value ...]."""
    args = list(ctx.args)
    from medinjection.evaluation.settings import known_recipes, make_parser, parse_args

    if not args or "--help" in args or "-h" in args:
        typer.echo("Usage: medinjection evaluate --config RECIPE.yaml [--key value ...]\n")
        typer.echo(evaluate_command.__doc__.strip())
        typer.echo(f"Bundled recipes (--config NAME): {', '.join(known_recipes())}\n")
        typer.echo(make_parser(prog="medinjection evaluate").format_help())
        raise typer.Exit(0 if args else 2)
    try:
        settings = parse_args(args, prog="medinjection evaluate")
    except ValueError as err:
        fail(str(err), 2)
    run(settings)


def run(settings) -> None:
    """Run an evaluation, its expected errors as one line (``medinjection evaluate`` and the recipe script)."""
    from medinjection.core.outputs import OutputError
    from medinjection.core.runs import RunError
    from medinjection.dataset_builders.generation.backends import GenerationStageError
    from medinjection.dataset_builders.sources import SourceUnavailable
    from medinjection.evaluation.items import ItemError
    from medinjection.evaluation.judge import JudgeError
    from medinjection.evaluation.models import ModelLoadError
    from medinjection.evaluation.runner import EvaluationError, evaluate
    from medinjection.evaluation.settings import scorer_options
    from medinjection.evaluation.tasks import TaskError
    from medinjection.evaluation.text_metrics import MetricUnavailable
    from medinjection.evaluation.vllm_backend import BackendUnavailable
    from medinjection.models.identity import BaseModelError

    try:
        scorer_options(settings)  # a bad judge prompt or option: one line, before anything is read
    except (JudgeError, ValueError) as err:
        fail(str(err))
    try:
        evaluate(settings, log=typer.echo)
    except (
        JudgeError,
        GenerationStageError,
        TaskError,
        ItemError,
        ModelLoadError,
        EvaluationError,
        OutputError,
        BackendUnavailable,
        RunError,
        SourceUnavailable,
        MetricUnavailable,
        BaseModelError,
    ) as err:
        fail(str(err))
    output = Path(settings.output_dir)
    typer.echo(f"wrote {output} (comparisons: {output / 'comparisons.json'})")


def tasks_command() -> None:
    """List the bundled evaluation tasks: name, language, split, types, where the items come from."""
    from medinjection.evaluation.tasks import known_tasks, load_task

    for name in known_tasks():
        spec = load_task(name)
        where = spec.source.adapter if spec.source else f"dataset:{spec.dataset.config}"
        typer.echo(
            f"{name:26} {spec.language}  {spec.split:10} {'/'.join(spec.types):14} {where:22} {spec.description}"
        )


# ---- judge ------------------------------------------------------------------------------------------
JudgeModel = Annotated[
    str,
    typer.Option(
        "--judge-model",
        help="The judge: a model name at an OpenAI-compatible --base-url, or a local folder / Hub id with "
        "--judge-backend transformers or vllm.",
    ),
]
JudgeBackend = Annotated[
    str, typer.Option("--judge-backend", help="openai (any compatible server), transformers, vllm.")
]
JudgeBaseUrl = Annotated[
    str | None, typer.Option("--base-url", help="Endpoint of an openai backend (default: $OPENAI_BASE_URL).")
]
JudgePrompts = Annotated[
    list[str] | None,
    typer.Option(
        "--prompt",
        help="Judge prompt: a name of medinjection/prompts/judge/ or a .yaml file of the same keys "
        "(repeatable; default: binary-lenient-v1 and graded-v1; binary-strict-v1 is stricter).",
    ),
]
JudgeCache = Annotated[
    Path | None,
    typer.Option("--cache", help="The response cache (default: <output folder>/judge-cache.sqlite)."),
]
JudgeMaxTokens = Annotated[
    int | None,
    typer.Option("--max-tokens", help="New tokens of a verdict (default: the prompt's, 1 as in the paper)."),
]
JudgeConcurrency = Annotated[int, typer.Option("--concurrency", help="Requests in flight (openai backend).")]


def judge_command(
    predictions: Annotated[
        Path,
        typer.Argument(
            help="A predictions.parquet of `medinjection evaluate`, or its output folder (all of them)."
        ),
    ],
    judge_model: JudgeModel,
    judge_backend: JudgeBackend = "openai",
    base_url: JudgeBaseUrl = None,
    prompt: JudgePrompts = None,
    cache: JudgeCache = None,
    max_tokens: JudgeMaxTokens = None,
    concurrency: JudgeConcurrency = 16,
) -> None:
    """Judge open-ended answers with an LLM (cached, resumable); verdicts go into the predictions and summaries."""
    from medinjection.core.outputs import OutputError
    from medinjection.dataset_builders.generation.backends import GenerationStageError
    from medinjection.evaluation.judge import JUDGE_CACHE, JudgeError, make_judge_settings
    from medinjection.evaluation.judge_files import judge_outputs, output_root

    try:
        settings = make_judge_settings(
            judge_model,
            cache or output_root(predictions) / JUDGE_CACHE,
            backend=judge_backend,
            base_url=base_url,
            prompts=prompt,
            max_tokens=max_tokens,
            concurrency=concurrency,
        )
        done = judge_outputs(predictions, settings, log=typer.echo)
    except (JudgeError, GenerationStageError, OutputError, ValueError, OSError) as err:
        fail(str(err))
    requests = sum(j.usage.get("requests", 0) for j in done)
    hits = sum(j.usage.get("cache_hits", 0) for j in done)
    typer.echo(
        f"judged {len(done)} output folder(s): {requests} requests, {hits} answers from the cache ({settings.cache})"
    )


# ---- report -----------------------------------------------------------------------------------------
def report_command(
    runs_dir: Annotated[Path, typer.Argument(help="The output_dir of `medinjection evaluate`.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for report.md, report.json and the plots.")
    ] = Path("report"),
    ratings: Annotated[
        Path | None,
        typer.Option(
            help="Human ratings (`medinjection quality ratings pull` table) for judge-human correlations."
        ),
    ] = None,
    resamples: Annotated[
        int, typer.Option(help="Bootstrap resamples of the intervals the report computes.")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the report's bootstraps and tests.")] = 0,
) -> None:
    """The paper's comparison tables and plots from evaluation outputs (same inputs, same bytes)."""
    from medinjection.core.outputs import OutputError
    from medinjection.evaluation.calibration import CalibrationError
    from medinjection.evaluation.report import ReportError, build_report

    try:
        report = build_report(runs_dir, output, ratings, resamples=resamples, seed=seed)
    except (ReportError, CalibrationError, OutputError, OSError) as err:
        fail(str(err))
    typer.echo(f"wrote {output / 'report.md'} ({len(report.figures)} plots)")
