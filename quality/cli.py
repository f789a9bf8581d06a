"""``medinjection quality ...``: review samples and model-answer ratings in Argilla.

    medinjection quality review push medinjection-fr --provenance translated --size 300
    medinjection quality review pull medinjection-review-translated --output review/ --dataset medinjection-fr
    medinjection quality review export medinjection-review-translated --output review-export/
    medinjection quality review import review-export/
    medinjection quality ratings push answers.jsonl --name answers-rating
    medinjection quality ratings push eval-out/ --items 100 --name answers-rating   # from predictions
    medinjection quality ratings pull answers-rating --output ratings.parquet

The server is the one named by ``ARGILLA_API_URL`` and ``ARGILLA_API_KEY`` (a local one started with
``medinjection quality server start``, a Hub Space, or a Docker deployment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medinjection.core.console import fail
from medinjection.quality.server_cli import server_app

quality_app = typer.Typer(
    help="Quality review in Argilla: samples, verdicts, reports, ratings.", no_args_is_help=True
)
review_app = typer.Typer(
    help="Review samples of a built dataset and pull the verdicts.", no_args_is_help=True
)
ratings_app = typer.Typer(
    help="Human ratings of model answers (for judge-human correlation).", no_args_is_help=True
)
quality_app.add_typer(review_app, name="review")
quality_app.add_typer(ratings_app, name="ratings")
quality_app.add_typer(server_app, name="server")

Workspace = Annotated[str | None, typer.Option(help="Argilla workspace (default: the server's default one).")]


def user_errors() -> tuple[type[Exception], ...]:
    """Errors shown as one line (evaluated only when an exception is raised: argilla loads lazily)."""
    from argilla._exceptions import ArgillaError

    return (LookupError, ValueError, OSError, RuntimeError, ArgillaError)


def client():
    from medinjection.quality.connection import connect

    return connect()


@review_app.command("push")
def review_push(
    dataset_dir: Annotated[
        Path, typer.Argument(help="A built dataset folder (data/<provenance>/<split>-*.parquet).")
    ],
    provenance: Annotated[
        list[str] | None, typer.Option(help="Provenance(s) to sample (repeatable; default: all).")
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option(help="Split(s) to sample (repeatable; default: all).")
    ] = None,
    size: Annotated[int, typer.Option(help="Sample size (stratified by provenance, source and type).")] = 300,
    seed: Annotated[int, typer.Option(help="Sampling seed: the same seed gives the same sample.")] = 0,
    name: Annotated[
        str | None, typer.Option(help="Argilla dataset name (default: medinjection-review-<provenances>).")
    ] = None,
    workspace: Workspace = None,
    min_submitted: Annotated[int, typer.Option(help="Annotators per record (task distribution).")] = 2,
    by_quality: Annotated[
        bool,
        typer.Option(
            "--by-quality",
            help="Also stratify by the quality screen's score (each score level gets its proportional "
            "share), so the screen's agreement with the reviewers is measured at every threshold.",
        ),
    ] = False,
) -> None:
    """Push a stratified sample to an Argilla review dataset (created if absent; records upserted by id)."""
    from medinjection.quality.review import push_review
    from medinjection.quality.sampling import QUALITY_KEY, STRATUM_KEYS, read_dataset, stratified_sample

    name = name or "medinjection-review-" + "-".join(sorted(provenance or ["all"]))
    keys = (*STRATUM_KEYS, QUALITY_KEY) if by_quality else STRATUM_KEYS
    try:
        sample = stratified_sample(read_dataset(dataset_dir, provenance, split), size, seed, keys)
        push_review(client(), sample, name, workspace, min_submitted)
    except user_errors() as err:
        fail(str(err))
    typer.echo(f"pushed {len(sample)} records to Argilla dataset {name!r} (seed {seed})")


@review_app.command("pull")
def review_pull(
    name: Annotated[str, typer.Argument(help="The Argilla review dataset.")],
    output: Annotated[
        Path, typer.Option(help="Folder for the report (JSON, Markdown, PNG) and excluded_ids.txt.")
    ] = Path("review"),
    workspace: Workspace = None,
    dataset: Annotated[
        Path | None, typer.Option(help="Also write the report into <dataset>/quality/ for the card.")
    ] = None,
    min_submitted: Annotated[
        int, typer.Option(help="Annotators per record counted as a complete review.")
    ] = 2,
) -> None:
    """Pull submitted responses and write the review report and the exclusion list."""
    import json

    from medinjection.core.layout import Layout
    from medinjection.quality.report import build_report, write_report
    from medinjection.quality.review import pull_records

    try:
        records = pull_records(client(), name, workspace)
    except user_errors() as err:
        fail(str(err))
    report = build_report(records, name, workspace or "", min_submitted)
    paths = write_report(report, output)
    (Path(output) / "responses.json").write_text(
        json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if dataset is not None:
        layout = Layout(dataset)
        if not layout.is_built():
            fail(f"{dataset} is not a built dataset folder (no data/)")
        write_report(report, layout.review_report_path.parent)
    overall = report["error_rate"]["overall"]
    typer.echo(
        f"{report['records']['reviewed']} records reviewed, {overall['incorrect']} judged incorrect; "
        f"report {paths['markdown']}, exclusion list {paths['excluded']}"
    )


@review_app.command("export")
def review_export(
    name: Annotated[str, typer.Argument(help="The Argilla dataset to export.")],
    output: Annotated[
        Path | None, typer.Option(help="Folder for Dataset.to_disk (or for the --dry-run of --hub).")
    ] = None,
    hub: Annotated[
        str | None, typer.Option(help="Push to this Hub dataset repo with Dataset.to_hub instead.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="With --hub: write what would be uploaded into --output.")
    ] = False,
    private: Annotated[bool, typer.Option(help="With --hub: a private repo.")] = True,
    workspace: Workspace = None,
) -> None:
    """Export a review dataset (settings, records, responses) with the SDK's to_disk / to_hub."""
    from medinjection.quality.exchange import export_to_disk, export_to_hub

    if (hub is None or dry_run) and output is None:
        fail("give --output FOLDER (or --hub REPO_ID without --dry-run)")
    try:
        if hub is None:
            where = export_to_disk(client(), name, output, workspace)
        else:
            where = export_to_hub(
                client(), name, hub, workspace, private=private, dry_run=output if dry_run else None
            )
            where = where or f"https://huggingface.co/datasets/{hub}"
    except user_errors() as err:
        fail(str(err))
    typer.echo(f"exported {name!r} to {where}")


@review_app.command("import")
def review_import(
    source: Annotated[
        str,
        typer.Argument(
            help="A folder from `export` (to_disk or --hub --dry-run), or a Hub repo id with --hub."
        ),
    ],
    hub: Annotated[bool, typer.Option(help="SOURCE is a Hub dataset repo (Dataset.from_hub).")] = False,
    name: Annotated[
        str | None, typer.Option(help="Dataset name on the server (default: the exported one).")
    ] = None,
    workspace: Workspace = None,
) -> None:
    """Import annotated records (with their responses) into the Argilla server."""
    from medinjection.quality.exchange import import_from_disk, import_from_hub, import_from_hub_folder

    try:
        if hub:
            dataset = import_from_hub(client(), source, name, workspace)
        elif (Path(source) / "data").is_dir():
            dataset = import_from_hub_folder(client(), source, name, workspace)
        else:
            dataset = import_from_disk(client(), source, name, workspace)
    except user_errors() as err:
        fail(str(err))
    typer.echo(f"imported into Argilla dataset {dataset.name!r}")


@ratings_app.command("push")
def ratings_push(
    answers: Annotated[
        list[Path],
        typer.Argument(
            help="JSONL of model answers (id, question, reference, answer, model), or predictions.parquet "
            "files of `medinjection evaluate` / folders holding them (open-ended rows)."
        ),
    ],
    name: Annotated[str, typer.Option(help="Argilla dataset name.")] = "medinjection-answer-ratings",
    workspace: Workspace = None,
    min_submitted: Annotated[int, typer.Option(help="Annotators per record.")] = 2,
    model: Annotated[
        str | None, typer.Option(help="Model name of predictions files (default: their summary's model_tag).")
    ] = None,
    items: Annotated[
        int | None, typer.Option(help="Rate this many questions (the same for every model; default: all).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --items choice.")] = 0,
) -> None:
    """Push model answers to an Argilla rating dataset (1-5 and equivalent-to-reference)."""
    from medinjection.quality.ratings import push_ratings, read_any_answers, sample_answers

    try:
        rows = sample_answers(read_any_answers(answers, model), items, seed)
        if not rows:
            fail("no open-ended answers found in " + ", ".join(map(str, answers)))
        push_ratings(client(), rows, name, workspace, min_submitted)
    except user_errors() as err:
        fail(str(err))
    typer.echo(f"pushed {len(rows)} answers to Argilla dataset {name!r}")


@ratings_app.command("pull")
def ratings_pull(
    name: Annotated[str, typer.Argument(help="The Argilla rating dataset.")],
    output: Annotated[Path, typer.Option(help="The ratings table: .jsonl or .parquet.")] = Path(
        "ratings.parquet"
    ),
    workspace: Workspace = None,
) -> None:
    """Pull submitted ratings into a table (one row per response) for judge-human correlation."""
    from medinjection.quality.ratings import pull_ratings, write_table

    try:
        rows = pull_ratings(client(), name, workspace)
        write_table(rows, output)
    except user_errors() as err:
        fail(str(err))
    typer.echo(f"wrote {len(rows)} ratings to {output}")
