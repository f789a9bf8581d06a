"""Publish a built dataset folder to the Hugging Face Hub in one atomic, idempotent commit.

``medinjection publish dataset DIR --repo ORG/NAME [--config native] [--private] [--revision BRANCH] [--dry-run]``

* What goes up: every file of the folder except ``_build/`` (intermediate files and logs),
  ``rejects/`` (the rejected rows: reproducible by rebuilding, counted by reason in the card and in
  ``stats.json``, and partly not French or duplicated) and hidden files. ``--config <provenance>``
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
  error message that passes through here.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

KEEP_REMOTE = (".gitattributes",)


class PublishError(RuntimeError):
    """The folder cannot be published (refused, or the Hub call failed); the message says why."""


@dataclass(frozen=True)
class LocalFile:
    path_in_repo: str
    local_path: Path
    size: int
    sha256: str
    git_sha1: str


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None = None


@dataclass
class Plan:
    add: list[str] = field(default_factory=list)
    change: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.add or self.change or self.delete)

    def lines(self) -> list[str]:
        return [
            f"{kind} {path}"
            for kind, paths in (("add", self.add), ("change", self.change), ("delete", self.delete))
            for path in paths
        ]


# ---- local and remote files ----------------------------------------------------------------------


def hashes(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file, read once in chunks."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    sha1.update(f"blob {size}\0".encode())
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def selection(root: Path, config: str | None = None) -> dict[str, Path]:
    """path in repo → local file, for the whole folder or one provenance subset."""
    from medinjection.dataset_builders.layout import Layout

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


def remote_listing(
    api, repo: str, revision: str | None, repo_type: str = "dataset"
) -> tuple[dict[str, RemoteFile] | None, str]:
    """The repo's files at ``revision`` (None when the repo does not exist) and a note on what was listed."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.hf_api import RepoFile

    def listing(rev):
        files = {}
        for entry in api.list_repo_tree(repo, repo_type=repo_type, revision=rev, recursive=True):
            if isinstance(entry, RepoFile):
                files[entry.path] = RemoteFile(
                    entry.path, entry.size, entry.blob_id, entry.lfs.sha256 if entry.lfs else None
                )
        return files

    try:
        return listing(revision), f"{repo}@{revision or 'main'}"
    except RepositoryNotFoundError:
        return None, f"{repo} does not exist yet"
    except RevisionNotFoundError:
        # a new branch starts from the default branch: compare with it
        return listing(
            None
        ), f"{repo}: branch {revision!r} does not exist yet (compared with the default branch)"


def unchanged(local: LocalFile, remote: RemoteFile) -> bool:
    if remote.lfs_sha256:
        return local.sha256 == remote.lfs_sha256
    return local.git_sha1 == remote.blob_id


def plan_commit(local: dict[str, LocalFile], remote: dict[str, RemoteFile] | None) -> Plan:
    """What one commit must add, change and delete so that the repo holds exactly ``local``."""
    remote = remote or {}
    plan = Plan()
    for path in sorted(local):
        if path not in remote:
            plan.add.append(path)
        elif unchanged(local[path], remote[path]):
            plan.unchanged.append(path)
        else:
            plan.change.append(path)
    plan.delete = sorted(p for p in remote if p not in local and p not in KEEP_REMOTE)
    return plan


def operations(plan: Plan, local: dict[str, LocalFile]) -> list:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    ops = [
        CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local[p].local_path))
        for p in plan.add + plan.change
    ]
    return ops + [CommitOperationDelete(path_in_repo=p) for p in plan.delete]


# ---- refusal checks -------------------------------------------------------------------------------


def recount_outputs(root: Path) -> Counter:
    """Rows by (provenance, split, source, type) of the provenance shards, read from Parquet."""
    import pyarrow.parquet as pq

    from medinjection.dataset_builders.layout import Layout

    counter = Counter()
    for shard in Layout(root).provenance_shards():
        for row in pq.read_table(shard.path, columns=["provenance", "source", "type"]).to_pylist():
            counter[(row["provenance"], shard.split, row["source"], row["type"])] += 1
    return counter


def check_stats(root: Path) -> list[str]:
    from medinjection.dataset_builders.layout import Layout

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

    from medinjection.dataset_builders.layout import MIXES_FILE, Layout

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
            rows += pq.read_table(shard.path, columns=["id", "provenance", "type", "source"]).to_pylist()
        if len(rows) != info["train"]:
            problems.append(
                f"{MIXES_FILE}: mix {mix!r} has {info['train']} rows but its files hold {len(rows)}"
            )
        for key, column in (("by_provenance", "provenance"), ("by_type", "type"), ("by_source", "source")):
            if dict(Counter(r[column] for r in rows)) != info[key]:
                problems.append(f"{MIXES_FILE}: mix {mix!r} {key} does not match its files")
        outside = [r["id"] for r in rows if r["id"] not in train_ids.get(r["provenance"], set())]
        if outside:
            problems.append(
                f"mix {mix!r}: {len(outside)} rows are not train items of their provenance (e.g. {outside[0]})"
            )
        other_types = sorted({r["type"] for r in rows} - set(report.get("types", [])))
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
    from medinjection.dataset_builders.layout import Layout, LayoutError

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


def redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


@dataclass
class PublishResult:
    plan: Plan
    listed: str
    commit_url: str | None = None


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

    root = Path(root)
    problems = check_folder(root, config, allow_unknown_license)
    if problems:
        raise PublishError(f"refusing to publish {root}:\n  " + "\n  ".join(problems))
    with tempfile.TemporaryDirectory() as tmp:
        # the card as published: the same as the folder's, with the repo id in its loading example
        readme = Path(tmp) / "README.md"
        render_card(root, config, repo_id=repo).save(readme)
        return _publish(
            root, repo, local_files(root, config, readme), private, revision, dry_run, config, endpoint, echo
        )


def _publish(root, repo, local, private, revision, dry_run, config, endpoint, echo) -> PublishResult:
    from huggingface_hub import HfApi, get_token

    token = get_token()
    if not dry_run and not token:
        raise PublishError("no Hugging Face token found: set HF_TOKEN or run `hf auth login`")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        remote, listed = remote_listing(api, repo, revision)
    except Exception as err:  # offline, DNS, refused: nothing to compare with
        message = redact(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", token)
        if not dry_run:
            raise PublishError(f"cannot reach the Hub to list {repo}: {message}") from None
        remote, listed = None, f"{repo}: remote unreachable ({message}); listed against an empty repo"
    plan = plan_commit(local, remote)
    echo(f"{'dry run: ' if dry_run else ''}{len(local)} local files vs {listed}")
    for line in plan.lines():
        echo(f"  {line}")
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


def push_plan(
    api,
    repo: str,
    plan: Plan,
    local: dict[str, LocalFile],
    *,
    repo_type: str,
    title: str,
    create: bool,
    private: bool,
    token: str | None,
    revision: str | None = None,
    parent_commit: str | None = None,
) -> str:
    """The one commit of a plan (the repo created first when ``create``); returns the commit URL.

    Any Hub error becomes a ``PublishError`` with the token masked out of it.
    """
    try:
        if create:
            api.create_repo(repo, repo_type=repo_type, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo, repo_type=repo_type, branch=revision, exist_ok=True)
        info = api.create_commit(
            repo,
            operations(plan, local),
            commit_message=f"{title}: {len(plan.add)} added, {len(plan.change)} changed, {len(plan.delete)} deleted",
            repo_type=repo_type,
            revision=revision,
            parent_commit=parent_commit,
        )
    except Exception as err:
        raise PublishError(
            redact(f"publishing to {repo} failed: {type(err).__name__}: {err}", token)
        ) from None
    return info.commit_url


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
    from medinjection.schema import PROVENANCES

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
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
