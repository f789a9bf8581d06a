"""``medinjection judge`` and ``medinjection report`` (logic in judge_files.py, report.py).

    medinjection judge eval-out/ --judge-model google/medgemma-27b-text-it --base-url http://127.0.0.1:8000/v1
    medinjection judge eval-out/nat/mediqal-oeq/predictions.parquet --judge-model gpt-4.1-mini \\
        --base-url https://api.openai.com/v1 --prompt binary-v1
    medinjection report eval-out/ --output report/ [--ratings ratings.parquet]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medinjection.core.console import fail as _fail

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
        help="Judge prompt file(s) of medinjection/prompts/judge/ (default: binary-v1 and graded-v1).",
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
    except (JudgeError, GenerationStageError, ValueError, OSError) as err:
        _fail(str(err))
    requests = sum(j.usage.get("requests", 0) for j in done)
    hits = sum(j.usage.get("cache_hits", 0) for j in done)
    typer.echo(
        f"judged {len(done)} output folder(s): {requests} requests, {hits} answers from the cache ({settings.cache})"
    )


def report_command(
    runs_dir: Annotated[Path, typer.Argument(help="The --output folder of `medinjection evaluate`.")],
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
        _fail(str(err))
    typer.echo(f"wrote {output / 'report.md'} ({len(report.figures)} plots)")
