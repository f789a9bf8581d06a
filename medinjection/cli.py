"""The ``medinjection`` command line: one typer app; each area adds its commands from its own module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medinjection.core.console import fail, fail_on
from medinjection.dataset_builders.mixes import MIXES

app = typer.Typer(
    name="medinjection",
    help="Build, review, mix and publish MedInjection-FR; train and evaluate DoRA adapters on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Print datatrove's logs as they come (by default: _build/build.log)."
    ),
]


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
    verbose: VerboseOpt = False,
) -> None:
    """Build the dataset folder (data/<config>/<split>-*.parquet, rejects/, stats.json, README.md).

    Prints one line per stage and a summary; datatrove's logs go to <output>/_build/build.log
    (--verbose prints them instead). Errors are printed in full.
    """
    build_and_report(config, output, tasks=tasks, workers=workers, overwrite=overwrite, verbose=verbose)


def build_and_report(
    config: str,
    output: Path | None,
    *,
    tasks: int | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    verbose: bool = False,
) -> Path:
    """Run a build with a line per stage and a summary (what ``build`` and ``demo`` print)."""
    import time
    import traceback

    from medinjection.core.config import ConfigError, load_build_config
    from medinjection.core.console import Console
    from medinjection.core.layout import Layout
    from medinjection.dataset_builders.build import LOG_FILE, BuildError
    from medinjection.dataset_builders.build import build as run_build
    from medinjection.dataset_builders.generation.backends import GenerationStageError
    from medinjection.dataset_builders.sources import SourceUnavailable

    console = Console()
    try:
        cfg = load_build_config(config)
    except ConfigError as err:
        fail(str(err))
    layout = Layout(Path(output or cfg.output).resolve())
    log = layout.build / LOG_FILE
    console.echo(f"build {config} -> {layout.root}" + ("" if verbose else f"  (datatrove's logs: {log})"))
    started = time.perf_counter()
    try:
        root = run_build(
            cfg,
            layout.root,
            tasks=tasks,
            workers=workers,
            overwrite=overwrite,
            progress=verbose,
            reporter=console,
            logs_to_file=not verbose,
        )
    except (ConfigError, BuildError, SourceUnavailable, GenerationStageError, KeyError, ImportError) as err:
        fail(str(err).strip("'\"") + (f"\n(datatrove's log: {log})" if log.exists() and not verbose else ""))
    except Exception:
        typer.echo(traceback.format_exc(), err=True)
        fail(
            f"the build failed (traceback above; datatrove's log: {log})"
            if not verbose
            else "the build failed"
        )
    report_build(console, root, cfg, time.perf_counter() - started, None if verbose else log)
    return root


def report_build(console, root: Path, cfg, seconds: float, log: Path | None) -> None:
    """The summary of a built folder: records, splits per provenance, rejects, LLM usage, the log."""
    import json

    from medinjection.core.layout import Layout
    from medinjection.core.schema import PROVENANCES
    from medinjection.dataset_builders import generate

    layout = Layout(root)
    stats = layout.stats()
    if stats is None:  # Slurm: the jobs were submitted and run on their own
        console.echo(f"{root}: the build runs on the cluster; stats.json appears when it is done")
        return
    records = stats["records"]
    rows = []
    for provenance in [p for p in PROVENANCES if p in stats["splits"]]:
        splits = stats["splits"][provenance]
        order = [s for s in ("train", "validation", "test") if s in splits] + sorted(
            set(splits) - {"train", "validation", "test"}
        )
        rows.append((provenance, ", ".join(f"{split} {splits[split]:,}" for split in order)))
    if stats.get("rejects"):
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(stats["rejects"].items()))
        rows.append(("rejected", f"{reasons} (each with its reason in {layout.rejects})"))
    rows += [("warning", warning) for warning in stats.get("warnings", [])]
    usage = [json.loads(p.read_text()) for p in sorted(layout.usage.glob("*.json"))]
    if usage:
        total = {
            k: sum(u.get(k, 0) for u in usage) for k in ("requests", "cache_hits", "failures", "cost_usd")
        }
        caches = ", ".join(str(p) for p in generate.cache_paths(cfg))
        rows.append(
            (
                "generation",
                f"{total['requests']:,} requests (${total['cost_usd']:.4f}), {total['cache_hits']:,} answers "
                f"from the cache {caches}",
            )
        )
    if log is not None:
        rows.append(("log", f"{log} (--verbose prints it)"))
    console.summary(
        f"built {root} in {seconds:.1f} s: {records['kept']:,} records kept, "
        f"{records['rejected']:,} rejected (of {records['in']:,} read)",
        rows,
    )


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", "-d", help="Where the loop writes (medinjection-fr/, runs/, eval/, ...).")
    ] = Path("."),
    mixes: Annotated[
        str, typer.Option(help="Comma-separated mixes to train (default: all seven).")
    ] = ",".join(MIXES),
    seed: Annotated[int, typer.Option(help="Seed of the mixes and of the evaluation.")] = 0,
    verbose: VerboseOpt = False,
) -> None:
    """The Quickstart's main job, offline: the whole loop on the bundled demo data.

    Builds the demo dataset (./medinjection-fr, with its seven mixes and cards), makes a tiny random
    Qwen3 (./tiny-qwen3), trains the tiny DoRA recipe on every mix (./runs/<mix>/), scores the base
    model and the adapters (./eval/), writes the report (./report/) and a publish dry run of each
    adapter (./publish-preview/<mix>/). The demo has a few dozen items per provenance: its mixes take
    the largest equal size its train splits allow, not the paper's 33,493.
    """
    import time

    from medinjection.core.console import Console
    from medinjection.demo import run_demo, summary_rows

    console = Console()
    started = time.perf_counter()
    try:
        result = run_demo(
            directory,
            mixes=[m.strip() for m in mixes.split(",") if m.strip()],
            seed=seed,
            build=lambda folder: build_and_report("demo", folder, verbose=verbose),
            console=console,
        )
    except ValueError as err:
        fail(str(err))
    console.summary(
        f"the whole loop ran in {time.perf_counter() - started:.0f} s (data -> mixes -> train -> evaluate -> "
        "report -> publish dry run):",
        summary_rows(result),
    )


@app.command("mix")
def mix_command(
    folder: Annotated[Path, typer.Argument(help="A built dataset folder (medinjection build).")],
    mixes: Annotated[
        str | None,
        typer.Option(
            "--mixes",
            help="A mix file (YAML list of mixes: name, weights, size, types, origins, min_quality, seed) or a "
            "bundled name; default: paper (the paper's seven mixes).",
        ),
    ] = None,
    size: Annotated[
        int | None, typer.Option(help="Train examples in every mix (replaces the file's).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the selection and of the row order (replaces the file's).")
    ] = None,
    allow_smaller: Annotated[
        bool,
        typer.Option("--allow-smaller", help="Use the largest feasible size when a provenance is short."),
    ] = False,
    types: Annotated[
        str | None,
        typer.Option(
            "--types",
            help="Task types of every mix (replaces the file's): a preset (paper = MCQ,MCQU, the paper's "
            "training data; all = MCQ,MCQU,OEQ) or a comma-separated list of MCQ, MCQU, OEQ.",
        ),
    ] = None,
) -> None:
    """Write training mixes as configs of the folder: the paper's seven (nat, trad, syn, nat_trad,
    nat_syn, trad_syn, all) by default, or those of a mix file (any provenance weights and nested sizes)."""
    from medinjection.cards.dataset_card import CardError, write_cards
    from medinjection.core.schema import PROVENANCES
    from medinjection.dataset_builders.mixes import MixError, build_mixes

    with fail_on(MixError):
        result = build_mixes(
            folder,
            size=size,
            seed=seed,
            allow_smaller=allow_smaller,
            write_card=False,
            types=types,
            mixes=mixes,
        )
    report = result.report
    if result.size != result.requested_size:
        typer.echo(
            f"note: mixes of {result.size} train examples, not {result.requested_size} (--allow-smaller)"
        )
    for config, info in report["mixes"].items():
        shares = ", ".join(
            f"{p} {info['by_provenance'][p]}" for p in PROVENANCES if p in info["by_provenance"]
        )
        nested = f", inside {info['nested_in']}" if info.get("nested_in") else ""
        typer.echo(f"  {config:9} {info['train']} ({shares}{nested})")
    sizes = sorted({info["train"] for info in report["mixes"].values()})
    kinds = "+".join(report["types"])
    typer.echo(
        f"wrote {len(report['mixes'])} mixes of {', '.join(map(str, sizes))} train examples ({kinds}, "
        f"seed {result.seed}, chat format {report['chat_version']}) from {report['mix_file']} into {result.root}"
    )
    try:
        paths = write_cards(folder)
    except CardError as err:
        fail(f"the mixes are written but the cards are not: {err}")
    typer.echo("wrote the cards: " + ", ".join(str(p.relative_to(folder)) for p in paths))


@app.command("recipes")
def recipes_command(
    mixes: Annotated[str, typer.Option("--mixes", help="A mix file (or a bundled name: paper, ratios).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder of the recipe files.")],
    family: Annotated[
        str, typer.Option(help="Recipe family: qwen3-4b-instruct-2507 (the authors' run) or tiny (CPU).")
    ] = "qwen3-4b-instruct-2507",
) -> None:
    """Write a TRL recipe for every config of a mix file (and a Slurm array over them), as the paper's
    seven in trl_configs/: `medinjection train --config OUTPUT/<config>.yaml` trains one."""
    from medinjection.training.recipe_files import RecipeError, write_mix_recipes

    with fail_on(RecipeError):
        paths = write_mix_recipes(mixes, family, output)
    for path in paths:
        typer.echo(f"  {path}")
    typer.echo(f"wrote {len(paths) - 1} {family} recipes and a Slurm array into {output}")


@app.command("sources")
def list_sources() -> None:
    """List the source adapters, with their provenance, licence and Hub id."""
    from medinjection.dataset_builders.sources import ADAPTERS

    for name, adapter in sorted(ADAPTERS.items()):
        typer.echo(f"{name:28} {adapter.provenance:11} {adapter.license:14} {adapter.hub_id or '-'}")


from medinjection.quality.cli import quality_app  # noqa: E402

app.add_typer(quality_app, name="quality")


from medinjection.cards.dataset_card import card_command  # noqa: E402
from medinjection.publish.dataset import publish_app  # noqa: E402

app.command("card")(card_command)
app.add_typer(publish_app, name="publish")

from medinjection.publish.adapter import publish_adapter_command, publish_adapters_command  # noqa: E402

publish_app.command("adapter")(publish_adapter_command)
publish_app.command("adapters")(publish_adapters_command)


from medinjection.dataset_builders.generation.cli import synthesize, translate, translation_check  # noqa: E402

app.command("translate")(translate)
app.command("synthesize")(synthesize)
app.command("translation-check")(translation_check)


from medinjection.evaluation.cli import (  # noqa: E402
    EVALUATE_COMMAND,
    evaluate_command,
    judge_command,
    report_command,
    tasks_command,
)

app.command("evaluate", **EVALUATE_COMMAND)(evaluate_command)
app.command("tasks")(tasks_command)
app.command("judge")(judge_command)
app.command("report")(report_command)

from medinjection.evaluation.calibrate_cli import calibrate_command  # noqa: E402

app.command("calibrate")(calibrate_command)


from medinjection.training.cli import TRAIN_COMMAND, train_command  # noqa: E402

app.command("train", **TRAIN_COMMAND)(train_command)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
