"""``medinjection calibrate`` (logic in calibrate.py; heavy imports wait for the command to run).

    medinjection calibrate answers.jsonl --output calib/
    medinjection calibrate answers.jsonl --output calib/ --judge google/medgemma-27b-text-it \\
        --judge-base-url http://127.0.0.1:8000/v1 --judge gpt-4.1-mini --judge-base-url https://api.openai.com/v1
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medinjection.core.console import fail


def calibrate_command(
    answers: Annotated[
        Path,
        typer.Argument(
            help="Labelled answers (.jsonl, .csv, .parquet): id, question, reference, answer, model, "
            "human_equivalent and/or human_rating [, annotator, answer_tokens]."
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="Folder for calibration.json, calibration.md and the plots."),
    ] = Path("calibration"),
    judge: Annotated[
        list[str] | None, typer.Option("--judge", help="A judge model (repeatable: judges side by side).")
    ] = None,
    judge_backend: Annotated[
        list[str] | None,
        typer.Option(
            "--judge-backend", help="openai, transformers or vllm: one for every judge, or one per --judge."
        ),
    ] = None,
    judge_base_url: Annotated[
        list[str] | None,
        typer.Option(
            "--judge-base-url", help="Endpoint of an openai judge: one for all, or one per --judge."
        ),
    ] = None,
    prompt: Annotated[
        list[str] | None,
        typer.Option(
            "--prompt",
            help="Judge prompt: a bundled name or a .yaml file (repeatable; every judge runs every prompt; "
            "default binary-lenient-v1 and graded-v1).",
        ),
    ] = None,
    bertscore_model: Annotated[
        str | None, typer.Option(help="BERTScore model (Hub id or local folder); none by default.")
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="The judge's response cache (default: OUTPUT/judge-cache.sqlite; give an evaluation's "
            "to reuse its verdicts)."
        ),
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="New tokens of a verdict (default: the prompt's).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight (openai judges).")] = 16,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples and permutations.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstraps and the permutation tests.")] = 0,
) -> None:
    """Which judge and which metric agree with human labels: correlations with intervals, length and generator bias."""
    from medinjection.dataset_builders.generation.backends import GenerationStageError
    from medinjection.evaluation.calibrate import MARKDOWN, best, judge_specs, run_calibration
    from medinjection.evaluation.calibration import CalibrationError
    from medinjection.evaluation.judge import JudgeError

    try:
        result = run_calibration(
            answers,
            output,
            judges=judge_specs(judge, judge_backend, judge_base_url, prompt),
            bertscore_model=bertscore_model,
            cache=cache,
            max_tokens=max_tokens,
            concurrency=concurrency,
            resamples=resamples,
            seed=seed,
            log=typer.echo,
        )
    except (CalibrationError, JudgeError, GenerationStageError, ValueError, OSError) as err:
        fail(str(err))
    scores = len(result["judges"]) + len(result["metrics"])
    typer.echo(f"calibrated {scores} score-label pairs on {result['n']} answers -> {output / MARKDOWN}")
    for label, entry in best(result).items():
        typer.echo(f"  best against {label}: {entry['name']} (Pearson r {entry['pearson']['value']:.2f})")
