"""``medinjection evaluate``: the command line of the evaluation runner (logic in ``runner.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medinjection.core.console import fail as _fail


def list_benchmarks() -> None:
    from medinjection.evaluation.benchmarks import known_benchmarks, load_benchmark

    for name in known_benchmarks():
        spec = load_benchmark(name)
        where = spec.source.adapter if spec.source else f"dataset:{spec.dataset.config}"
        typer.echo(
            f"{name:26} {spec.language}  {spec.split:10} {'/'.join(spec.types):14} {where:22} {spec.description}"
        )


def evaluate_command(
    model: Annotated[
        str | None, typer.Option(help="Base model: a Hub id (with --revision) or a local folder.")
    ] = None,
    adapter: Annotated[
        list[Path] | None,
        typer.Option(help="A run folder (adapter files + manifest), or a folder of run folders; repeatable."),
    ] = None,
    benchmark: Annotated[
        list[str] | None,
        typer.Option(
            help="A bundled benchmark name (see --list-benchmarks) or a benchmark YAML; repeatable."
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="A built MedInjection-FR folder or Hub repo to score (with --config).")
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="Config of --dataset: native, translated, synthetic, a mix.")
    ] = None,
    split: Annotated[str, typer.Option(help="Split of --dataset.")] = "test",
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output folder: <model_tag>/<benchmark>/...")
    ] = Path("eval"),
    revision: Annotated[str | None, typer.Option(help="Pinned revision of a Hub --model.")] = None,
    dataset_revision: Annotated[str | None, typer.Option(help="Pinned revision of a Hub --dataset.")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Folder that relative benchmark paths resolve against (default: here)."),
    ] = None,
    base: Annotated[
        bool,
        typer.Option(help="Also score the base model (the baseline of the comparisons; reused if scored)."),
    ] = True,
    permutations: Annotated[
        int, typer.Option(help="K seeded option orders per multiple-choice item (position bias).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the permutations and the bootstrap.")] = 0,
    letters_only: Annotated[
        bool, typer.Option(help="Also score the letters-only constrained variant (beside the authors').")
    ] = True,
    batch_size: Annotated[int, typer.Option(help="Most prompts per batch.")] = 64,
    max_batch_tokens: Annotated[int, typer.Option(help="Most padded prompt tokens per batch.")] = 32768,
    dtype: Annotated[
        str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.")
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    backend: Annotated[
        str, typer.Option(help="transformers, or vllm (merged weights; needs vLLM).")
    ] = "transformers",
    engine: Annotated[
        str, typer.Option(help="batched (fast), or reference (the authors' per-item loop, for checking).")
    ] = "batched",
    merge: Annotated[
        bool, typer.Option(help="Merge each adapter for speed, after checking it predicts the same.")
    ] = False,
    merge_check_items: Annotated[int, typer.Option(help="Items the merge check compares.")] = 32,
    bootstrap_resamples: Annotated[int, typer.Option(help="Bootstrap resamples of every interval.")] = 1000,
    alpha: Annotated[
        float, typer.Option(help="False discovery rate of the comparisons (Benjamini-Hochberg).")
    ] = 0.05,
    skip_bad_rows: Annotated[
        bool, typer.Option(help="Score the other rows when some cannot be read (kept in rejected.jsonl).")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Rescore even when the same scoring is already there.")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(help="Only the first N items of each benchmark (a smoke run).")
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list-benchmarks", help="List the bundled benchmarks and exit.")
    ] = False,
    # --- OEQ options (issue 12) ---
    oeq_max_new_tokens: Annotated[
        int, typer.Option(help="New tokens of an open-ended answer (greedy; the paper: 512).")
    ] = 512,
    bertscore_model: Annotated[
        str,
        typer.Option(
            help="BERTScore model: a Hub id or a local folder ('none': BERTScore reported missing). "
            "Default: bert-score's choice for French."
        ),
    ] = "bert-base-multilingual-cased",
    bertscore_layers: Annotated[
        int | None, typer.Option(help="BERTScore layer (default: bert-score's for known ids, else the last).")
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(
            help="Judge open-ended answers with this model (as `medinjection judge --judge-model`)."
        ),
    ] = None,
    judge_backend: Annotated[str, typer.Option(help="Judge backend: openai, transformers, vllm.")] = "openai",
    judge_base_url: Annotated[
        str | None, typer.Option(help="Endpoint of an openai judge (default: $OPENAI_BASE_URL).")
    ] = None,
    judge_prompt: Annotated[
        list[str] | None, typer.Option(help="Judge prompt(s) (default: binary-v1 and graded-v1); repeatable.")
    ] = None,
    judge_cache: Annotated[
        Path | None, typer.Option(help="Judge response cache (default: OUTPUT/judge-cache.sqlite).")
    ] = None,
    judge_max_tokens: Annotated[
        int | None, typer.Option(help="New tokens of a verdict (default: the prompt's, 1 as in the paper).")
    ] = None,
    judge_concurrency: Annotated[int, typer.Option(help="Judge requests in flight.")] = 16,
) -> None:
    """Score the base model and adapters on benchmarks: the paper's multiple-choice protocol, batched.

    Writes OUTPUT/<model_tag>/<benchmark>/predictions.parquet and summary.json (metrics with 95 %
    bootstrap intervals), OUTPUT/<model_tag>/aggregate.json and OUTPUT/comparisons.json (paired
    tests against the base model, Benjamini-Hochberg adjusted).
    """
    if list_:
        list_benchmarks()
        return
    if model is None:
        _fail("--model is required (a Hub id or a local folder)")
    from medinjection.core.outputs import OutputError
    from medinjection.core.runs import RunError
    from medinjection.evaluation.benchmarks import BenchmarkError
    from medinjection.evaluation.items import ItemError
    from medinjection.evaluation.judge import JudgeError
    from medinjection.evaluation.models import ModelLoadError
    from medinjection.evaluation.open_ended import task_options as oeq_task_options
    from medinjection.evaluation.runner import EvalSettings, EvaluationError, evaluate
    from medinjection.evaluation.vllm_backend import BackendUnavailable

    try:
        oeq_options = oeq_task_options(
            output,
            max_new_tokens=oeq_max_new_tokens,
            bertscore_model=bertscore_model,
            bertscore_layers=bertscore_layers,
            judge=judge,
            judge_backend=judge_backend,
            judge_base_url=judge_base_url,
            judge_prompts=judge_prompt,
            judge_cache=judge_cache,
            judge_max_tokens=judge_max_tokens,
            judge_concurrency=judge_concurrency,
        )
    except (JudgeError, ValueError) as err:
        _fail(str(err))
    settings = EvalSettings(
        model=model,
        revision=revision,
        adapters=list(adapter or []),
        base=base,
        benchmarks=list(benchmark or []),
        dataset=dataset,
        config=config,
        split=split,
        dataset_revision=dataset_revision,
        data_dir=data_dir,
        output=output,
        permutations=permutations,
        seed=seed,
        letters_only=letters_only,
        batch_size=batch_size,
        max_batch_tokens=max_batch_tokens,
        dtype=dtype,
        device=device,
        backend=backend,
        engine=engine,
        merge=merge,
        merge_check_items=merge_check_items,
        bootstrap_resamples=bootstrap_resamples,
        alpha=alpha,
        skip_bad_rows=skip_bad_rows,
        overwrite=overwrite,
        limit=limit,
        task_options={"oeq": oeq_options},
        log=typer.echo,
    )
    from medinjection.dataset_builders.generation.backends import GenerationStageError
    from medinjection.dataset_builders.sources import SourceUnavailable

    try:
        evaluate(settings)
    except (
        JudgeError,
        GenerationStageError,
        BenchmarkError,
        ItemError,
        ModelLoadError,
        EvaluationError,
        OutputError,
        BackendUnavailable,
        RunError,
        SourceUnavailable,
    ) as err:
        _fail(str(err))
    typer.echo(f"wrote {output} (comparisons: {output / 'comparisons.json'})")
