"""The ``medinjection`` command line: one typer app; each area adds its commands from its own module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="medinjection",
    help="Build, review, mix and publish MedInjection-FR; train and evaluate DoRA adapters on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def build(
    config: Annotated[str, typer.Argument(help="A build config YAML, or a bundled name: demo, full.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Dataset folder (default: the config's `output`).")
    ] = None,
    tasks: Annotated[
        int | None, typer.Option(help="Datatrove tasks (default: the config's executor.tasks).")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Parallel workers for the local executor.")] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Rebuild a folder that holds a build of another config.")
    ] = False,
) -> None:
    """Build the dataset folder (data/<config>/<split>-*.parquet, rejects/, stats.json, README.md)."""
    from medinjection.config import ConfigError, load_build_config
    from medinjection.dataset_builders.build import BuildError
    from medinjection.dataset_builders.build import build as run_build
    from medinjection.dataset_builders.sources import SourceUnavailable

    try:
        cfg = load_build_config(config)
        root = run_build(cfg, output, tasks=tasks, workers=workers, overwrite=overwrite)
    except (ConfigError, BuildError, SourceUnavailable, KeyError, ImportError) as err:
        fail(str(err).strip("'\""))
    import json

    stats = json.loads((root / "stats.json").read_text())
    records = stats["records"]
    typer.echo(
        f"built {root}: {records['kept']} records kept, {records['rejected']} rejected (of {records['in']} read)"
    )
    for provenance, splits in stats["splits"].items():
        typer.echo(f"  {provenance}: " + ", ".join(f"{split} {n}" for split, n in splits.items()))


@app.command()
def demo(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to build the demo dataset folder.")
    ] = Path("medinjection-fr"),
    seed: Annotated[int, typer.Option(help="Seed of the mixes.")] = 0,
) -> None:
    """The Quickstart's main job, offline: build the bundled demo dataset, its seven mixes and its cards.

    The demo has a few dozen items per provenance, so its mixes take the largest equal size the
    demo's train splits allow (``medinjection mix --allow-smaller``), not the paper's 33,493.
    """
    from medinjection.dataset_builders.mixes import mix_command

    build(config="demo", output=output, tasks=None, workers=None, overwrite=False)
    mix_command(output, seed=seed, allow_smaller=True)
    typer.echo(
        f"load it with: datasets.load_dataset({str(output)!r}, 'native')  "
        "# or 'translated', 'synthetic', a mix: 'nat', 'trad', 'syn', 'nat_trad', 'nat_syn', 'trad_syn', 'all'"
    )


@app.command("sources")
def list_sources() -> None:
    """List the source adapters, with their provenance, licence and Hub id."""
    from medinjection.dataset_builders.sources import ADAPTERS

    for name, adapter in sorted(ADAPTERS.items()):
        typer.echo(f"{name:28} {adapter.provenance:11} {adapter.license:14} {adapter.hub_id or '-'}")


from medinjection.quality.cli import quality_app  # noqa: E402

app.add_typer(quality_app, name="quality")


from medinjection.cards.dataset_card import card_command  # noqa: E402
from medinjection.dataset_builders.mixes import mix_command  # noqa: E402
from medinjection.publish import publish_app  # noqa: E402

app.command("mix")(mix_command)
app.command("card")(card_command)
app.add_typer(publish_app, name="publish")


from medinjection.dataset_builders.generation.cli import synthesize, translate  # noqa: E402

app.command("translate")(translate)
app.command("synthesize")(synthesize)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
