"""Publish a built dataset folder to the Hugging Face Hub in one atomic, idempotent commit.

``medinjection publish dataset DIR --repo ORG/NAME [--config native] [--private] [--revision BRANCH] [--dry-run]``

* What goes up: what the folder's layout owns (``Layout.published_files``: shards, cards, reports,
  the quality review), never ``_build/`` (intermediate files and logs) or ``rejects/`` (the rejected
  rows: reproducible by rebuilding, counted by reason in the card and in ``stats.json``); any other
  file of the folder (a user's notes, a cache) is left out and listed. ``--config <provenance>``
  publishes one provenance subset alone: its card ``cards/<provenance>.md`` as ``README.md`` and its
  ``data/<provenance>/`` files (the paper released Native, Translated and Synthetic this way).
* The repo then mirrors the selection: remote files that are not in it are deleted (``.gitattributes``
  is kept). Local and remote files are compared by content — the sha256 of LFS files, the git blob
  sha1 of regular files, both from ``HfApi.list_repo_tree`` — and nothing is committed when nothing
  changed. All additions, changes and deletions go in one ``HfApi.create_commit``: all or nothing.
* Refused: a folder whose cards do not validate (``medinjection card DIR --check``), whose
  ``stats.json`` does not match the rows of the Parquet files, or whose ``mixes.json`` does not match
  the mix files (or names an item that is not a train item); and, unless ``--allow-unknown-license``,
  a folder (or subset) with a source whose publisher states no licence (the licence gate).
* Every file is found through ``Layout``, the folder's one owner.
* The token comes from huggingface_hub's usual sources (``HF_TOKEN``, ``hf auth login``) through
  ``huggingface_hub.get_token()``; it is never printed, logged or written, and is masked out of any
  error message that passes through here. A refused token (HTTP 401) is said to be refused, not
  taken for an unreachable Hub (``core.hub.hub_failure``).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from medinjection.core.console import fail
from medinjection.core.hub import (
    LocalFile,
    Plan,
    PublishError,
    hashes,
    http_status,
    hub_failure,
    plan_commit,
    push_plan,
    remote_listing,
)

# ---- local and remote files ----------------------------------------------------------------------


def selection(root: Path, config: str | None = None) -> dict[str, Path]:
    """path in repo → local file, for the whole folder or one provenance subset."""
    from medinjection.core.layout import Layout

    layout = Layout(root)
    if config is None:
        return layout.published_files()
    card = layout.card_path(config)
    if not card.is_file():
        raise PublishError(f"{root}: no card for subset {config!r} ({card}); run: medinjection card {root}")
    files = layout.subset_files(config)
    if len(files) == 1:
        raise PublishError(f"{root}: no data files of subset {config!r} under data/{config}/")
    return files


def local_files(root: Path, config: str | None = None, readme: Path | None = None) -> dict[str, LocalFile]:
    """The files to publish with their hashes (``readme``: the card to upload as README.md instead)."""
    files = selection(root, config)
    if readme is not None:
        files["README.md"] = readme
    out = {}
    for rel, path in files.items():
        sha256, sha1 = hashes(path)
        out[rel] = LocalFile(rel, path, path.stat().st_size, sha256, sha1)
    return out


# ---- refusal checks -------------------------------------------------------------------------------


def recount_outputs(root: Path) -> Counter:
    """Rows by (provenance, split, source, type) of the provenance shards, read from Parquet."""
    import pyarrow.parquet as pq

    from medinjection.core.layout import Layout

    counter = Counter()
    for shard in Layout(root).provenance_shards():
        for row in pq.read_table(shard.path, columns=["provenance", "source", "type"]).to_pylist():
            counter[(row["provenance"], shard.split, row["source"], row["type"])] += 1
    return counter


def check_stats(root: Path) -> list[str]:
    from medinjection.core.layout import Layout

    stats = Layout(root).stats()
    if stats is None:
        return ["stats.json is missing"]
    expected = Counter(
        {(c["provenance"], c["split"], c["source"], c["type"]): c["count"] for c in stats["composition"]}
    )
    found = recount_outputs(root)
    problems = [
        f"stats.json says {expected.get(key, 0)} rows of {key} but the Parquet files hold {found.get(key, 0)}"
        for key in sorted(set(expected) | set(found))
        if expected.get(key, 0) != found.get(key, 0)
    ]
    if stats["records"]["kept"] != sum(found.values()):
        problems.append(
            f"stats.json records.kept is {stats['records']['kept']} but the Parquet files hold {sum(found.values())} rows"
        )
    return problems


def check_mixes(root: Path) -> list[str]:
    import pyarrow.parquet as pq

    from medinjection.core.layout import MIXES_FILE, Layout

    layout = Layout(root)
    present = layout.mixes_present()
    report = layout.mixes_manifest()
    if report is None:
        return [f"mix folders {present} but no {MIXES_FILE}; run: medinjection mix {root}"] if present else []
    problems = []
    train_ids: dict[str, set[str]] = {}
    for shard in layout.provenance_shards(splits=["train"]):
        ids = set(pq.read_table(shard.path, columns=["id"]).column("id").to_pylist())
        train_ids.setdefault(shard.config, set()).update(ids)
    for mix, info in report["mixes"].items():
        rows = []
        for shard in layout.mix_shards([mix]):
            rows += pq.read_table(
                shard.path, columns=["id", "provenance", "type", "source", "origin"]
            ).to_pylist()
        if len(rows) != info["train"]:
            problems.append(
                f"{MIXES_FILE}: mix {mix!r} has {info['train']} rows but its files hold {len(rows)}"
            )
        checked = (
            ("by_provenance", "provenance"),
            ("by_type", "type"),
            ("by_source", "source"),
            ("by_origin", "origin"),
        )
        for key, column in checked:
            if key in info and dict(Counter(r[column] for r in rows)) != info[key]:
                problems.append(f"{MIXES_FILE}: mix {mix!r} {key} does not match its files")
        outside = [r["id"] for r in rows if r["id"] not in train_ids.get(r["provenance"], set())]
        if outside:
            problems.append(
                f"mix {mix!r}: {len(outside)} rows are not train items of their provenance (e.g. {outside[0]})"
            )
        other_types = sorted({r["type"] for r in rows} - set(info.get("types") or report.get("types", [])))
        if other_types:
            problems.append(f"mix {mix!r}: rows of type {other_types}, not in {MIXES_FILE} types")
    return problems


def check_licenses(root: Path, config: str | None) -> list[str]:
    """The licence gate: sources whose publisher states no licence (empty: none)."""
    from medinjection.cards.dataset_card import card_facts

    unknown = card_facts(root, config)["_license"]["unknown"]
    if not unknown:
        return []
    return [
        f"source(s) of unknown licence: {', '.join(unknown)} (their publishers state none); check that you "
        "may redistribute their rows, then pass --allow-unknown-license"
    ]


def check_folder(root: Path, config: str | None = None, allow_unknown_license: bool = False) -> list[str]:
    """Every reason to refuse publishing ``root`` (or its subset ``config``; empty: it may be published)."""
    from medinjection.cards.dataset_card import CardError, check_cards
    from medinjection.core.layout import Layout, LayoutError

    if not Layout(root).is_built():
        return [f"{root} is not a built dataset folder (no data/)"]
    try:
        problems = check_stats(root)
        problems += check_mixes(root)
    except LayoutError as err:
        return [str(err)]
    try:
        problems += check_cards(root)
        if not allow_unknown_license:
            problems += check_licenses(root, config)
    except (CardError, KeyError, ValueError) as err:
        problems.append(f"cards: {err}")
    return problems


# ---- the commit ---------------------------------------------------------------------------------


@dataclass
class PublishResult:
    plan: Plan
    listed: str
    commit_url: str | None = None
    left_out: list[str] = field(default_factory=list)  # files of the folder not published


def publish_dataset(
    root: str | Path,
    repo: str,
    *,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    config: str | None = None,
    endpoint: str | None = None,
    echo: Callable[[str], None] = print,
    allow_unknown_license: bool = False,
) -> PublishResult:
    """Publish ``root`` (or its provenance subset ``config``) to the dataset repo ``repo`` in one commit.

    Refused when ``check_folder`` finds a problem; a source of unknown licence is one, unless
    ``allow_unknown_license`` (the user checked that its rows may be redistributed)."""
    from medinjection.cards.dataset_card import render_card
    from medinjection.core.layout import Layout

    root = Path(root)
    problems = check_folder(root, config, allow_unknown_license)
    if problems:
        raise PublishError(f"refusing to publish {root}:\n  " + "\n  ".join(problems))
    with tempfile.TemporaryDirectory() as tmp:
        # the card as published: the same as the folder's, with the repo id in its loading example
        readme = Path(tmp) / "README.md"
        render_card(root, config, repo_id=repo).save(readme)
        left_out = [] if config else Layout(root).unpublished_files()
        result = _publish(
            root,
            repo,
            local_files(root, config, readme),
            private,
            revision,
            dry_run,
            config,
            endpoint,
            echo,
            left_out,
        )
        result.left_out = left_out
        return result


def _publish(
    root, repo, local, private, revision, dry_run, config, endpoint, echo, left_out=()
) -> PublishResult:
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not dry_run and not token:
        raise PublishError("no Hugging Face token found: set HF_TOKEN or run `hf auth login`")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        remote, listed = remote_listing(api, repo, revision)
    except Exception as err:  # offline, DNS, a refused token: nothing to compare with
        failure = hub_failure("list", repo, err, token)
        if not dry_run or http_status(err) is not None:
            raise failure from None
        remote, listed = None, f"{repo}: remote unreachable ({failure}); listed against an empty repo"
    plan = plan_commit(local, remote)
    echo(f"{'dry run: ' if dry_run else ''}{len(local)} local files vs {listed}")
    for line in plan.lines():
        echo(f"  {line}")
    if left_out:
        shown = ", ".join(left_out[:10]) + (f" and {len(left_out) - 10} more" if len(left_out) > 10 else "")
        echo(f"  left out ({len(left_out)} file(s) the dataset layout does not own): {shown}")
    echo(
        f"  {len(plan.add)} to add, {len(plan.change)} to change, {len(plan.delete)} to delete, {len(plan.unchanged)} unchanged"
    )
    result = PublishResult(plan, listed)
    if dry_run:
        return result
    if plan.empty:
        echo("nothing changed: no commit")
        return result
    result.commit_url = push_plan(
        api,
        repo,
        plan,
        local,
        repo_type="dataset",
        title=f"Publish {'subset ' + config if config else 'dataset'}",
        create=remote is None,
        private=private,
        token=token,
        revision=revision,
    )
    echo(f"committed {result.commit_url}")
    return result


# ---- command line ---------------------------------------------------------------------------------

publish_app = typer.Typer(help="Publish to the Hugging Face Hub.", no_args_is_help=True)


@publish_app.command("dataset")
def publish_dataset_command(
    folder: Annotated[Path, typer.Argument(help="A built dataset folder (with its cards and mixes).")],
    repo: Annotated[str, typer.Option("--repo", help="The dataset repo, ORG/NAME.")],
    config: Annotated[
        str | None,
        typer.Option("--config", help="Publish one provenance subset alone (native, translated, synthetic)."),
    ] = None,
    private: Annotated[
        bool, typer.Option("--private", help="Create the repo private (applies when it is created).")
    ] = False,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Branch to commit to (created from main if absent).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be added, changed and deleted; push nothing.")
    ] = False,
    allow_unknown_license: Annotated[
        bool,
        typer.Option(
            "--allow-unknown-license",
            help="Publish although a source states no licence (you checked that its rows may be redistributed).",
        ),
    ] = False,
) -> None:
    """Publish a dataset folder in one atomic commit; no commit when nothing changed."""
    from medinjection.core.schema import PROVENANCES

    if config is not None and config not in PROVENANCES:
        typer.secho(
            f"error: --config must be one of {list(PROVENANCES)}, got {config!r}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    try:
        publish_dataset(
            folder,
            repo,
            private=private,
            revision=revision,
            dry_run=dry_run,
            config=config,
            echo=typer.echo,
            allow_unknown_license=allow_unknown_license,
        )
    except PublishError as err:
        fail(str(err))
