"""``medinjection translate CONFIG`` and ``medinjection synthesize CONFIG``: run one generation stage
on its own (fill the response cache, preview the generated rows and rejects), or with ``--dry-run``
print the number of requests (cache misses) and the estimated cost before spending anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medinjection.core.config import ConfigError, load_build_config
from medinjection.core.console import fail, fail_on

ConfigArg = Annotated[
    str, typer.Argument(help="A build config YAML with a translate:/synthesize: section, or a bundled name.")
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", help="At most N rows per source (seeds, for synthesis).")
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the requests to make and their estimated cost; ask nothing.")
]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Where to write (default: <config output>-<task>).")
]
TasksOpt = Annotated[int, typer.Option(help="Datatrove tasks (rows are spread over them).")]


def _run(task: str, config: str, limit: int | None, dry_run: bool, output: Path | None, tasks: int) -> None:
    from medinjection.core.layout import Layout
    from medinjection.dataset_builders import generate
    from medinjection.dataset_builders.generation.backends import GenerationStageError
    from medinjection.dataset_builders.sources import SourceUnavailable

    try:
        cfg = load_build_config(config)
        if generate.task_config(cfg, task) is None:
            raise ConfigError(f"config {config!r} has no {task}: section")
        generate.check_generation_sources(cfg)
    except (ConfigError, SourceUnavailable, KeyError) as err:
        fail(str(err).strip(chr(39)))
    folder = (output or Path(f"{cfg.output}-{task}")).resolve()
    layout = Layout(folder)
    if dry_run:
        typer.echo(generate.dry_run(cfg, task, layout, limit).line())
        return
    try:
        usage = generate.run_generation(cfg, task, folder, tasks=tasks, limit=limit)
    except GenerationStageError as err:
        fail(str(err))
    typer.echo(f"{task}: wrote {generate.generated_dir(layout, task)}, rejects in {layout.rejects / task}")
    typer.echo(json.dumps(usage, sort_keys=True))


def translate(
    config: ConfigArg,
    limit: LimitOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
    tasks: TasksOpt = 1,
) -> None:
    """Translate the config's English sources into French through the LLM and the response cache."""
    _run("translate", config, limit, dry_run, output, tasks)


def synthesize(
    config: ConfigArg,
    limit: LimitOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = None,
    tasks: TasksOpt = 1,
) -> None:
    """Generate French items from the config's seed texts through the LLM and the response cache."""
    _run("synthesize", config, limit, dry_run, output, tasks)


def translation_check(
    pairs: Annotated[
        Path,
        typer.Option("--pairs", help="Parallel file: JSONL {en, fr} or TSV en<TAB>fr (id<TAB>en<TAB>fr)."),
    ],
    config: Annotated[
        str | None,
        typer.Option("--config", help="A build config: check its translate: backend and prompt version."),
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help="Without --config: openai, transformers or vllm.")
    ] = "openai",
    model: Annotated[
        str | None, typer.Option("--model", help="Without --config: the model to check.")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Without --config: the endpoint of an openai backend.")
    ] = None,
    json_mode: Annotated[
        bool,
        typer.Option("--json-mode/--no-json-mode", help="Ask for a JSON object (servers that lack it: no)."),
    ] = True,
    prompt_version: Annotated[
        str, typer.Option(help="Translation prompt version (without --config).")
    ] = "v1",
    cache: Annotated[
        Path | None, typer.Option(help="Response cache (default: the generation cache every build shares).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the report goes.")] = Path(
        "translation-check"
    ),
    limit: Annotated[int | None, typer.Option(help="Only the first N pairs.")] = None,
    comet_model: Annotated[
        str | None, typer.Option(help="A COMET model id or folder (needs pip install unbabel-comet).")
    ] = None,
) -> None:
    """Check a translation backend before use: translate the English side of a parallel file with the
    translate step's own prompt, score BLEU and chrF (sacrebleu) and COMET against the French side."""
    from medinjection.core.config import GenerationBackendConfig
    from medinjection.dataset_builders import generate
    from medinjection.dataset_builders.generation.backends import GenerationStageError
    from medinjection.dataset_builders.translation_check import (
        TranslationCheckError,
        check_translation_backend,
    )

    with fail_on(ConfigError, TranslationCheckError, ValueError):
        if config is not None:
            cfg = load_build_config(config)
            if cfg.translate is None:
                raise ConfigError(f"config {config!r} has no translate: section to check")
            chosen, version = cfg.translate.backend, cfg.translate.prompt_version
            cache_path = cache or generate.cache_path(cfg, "translate")
        else:
            if not model:
                raise ConfigError("give --config BUILD.yaml, or --model (and --backend, --base-url)")
            chosen = GenerationBackendConfig(
                type=backend, model=model, base_url=base_url, json_mode=json_mode
            )
            version, cache_path = prompt_version, cache or generate.default_cache_path()
    with fail_on(TranslationCheckError, GenerationStageError):
        report = check_translation_backend(
            pairs,
            chosen,
            prompt_version=version,
            cache_path=cache_path,
            output=output,
            limit=limit,
            comet_model=comet_model,
        )
    comet = report["comet"]
    typer.echo(
        f"{report['backend']['model']} ({report['prompt_version']}) on {report['n']} pairs of {pairs}: "
        f"BLEU {report['bleu']['score']:.2f}, chrF {report['chrf']['score']:.2f}, "
        + (
            f"COMET {comet['score']:.4f}"
            if comet.get("score") is not None
            else f"COMET missing ({comet['missing']})"
        )
        + (f"; {report['unparseable']} answers unparseable" if report["unparseable"] else "")
        + (f"; {report['failed']} failed" if report["failed"] else "")
    )
    typer.echo(f"  {report['bleu']['signature']}")
    typer.echo(f"  {report['chrf']['signature']}")
    typer.echo(f"wrote {output / 'translation_check.json'} and {output / 'translations.jsonl'}")
