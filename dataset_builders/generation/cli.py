"""``medinjection translate CONFIG`` and ``medinjection synthesize CONFIG``: run one generation stage
on its own (fill the response cache, preview the generated rows and rejects), or with ``--dry-run``
print the number of requests (cache misses) and the estimated cost before spending anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medinjection.core.config import ConfigError, load_build_config
from medinjection.core.console import fail

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
