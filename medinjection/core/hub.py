"""One commit to a Hugging Face Hub repo that makes it hold exactly a set of local files.

Shared by the dataset and the adapter publishing: local files with their hashes (``LocalFile``), the
repo's listing at a revision (``remote_listing``: sha256 of LFS files, git blob sha1 of the others),
the plan of one commit (``plan_commit``: add, change, delete, unchanged; ``.gitattributes`` kept) and
the commit itself (``push_plan``: one ``HfApi.create_commit``, all or nothing). Nothing is committed
when nothing changed. ``hub_failure`` says what a failed Hub call means for the user: the token
was refused (HTTP 401), lacks a permission (403), or the Hub could not be reached at all. Errors
pass through ``redact`` so that a token never reaches a message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

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


def redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


TOKEN_FIX = "set a valid token in HF_TOKEN or run `hf auth login`"


def http_status(err: BaseException) -> int | None:
    """The HTTP status of a failed Hub call (None when no answer came: offline, DNS, refused)."""
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def hub_failure(action: str, repo: str, err: BaseException, token: str | None) -> PublishError:
    """A ``PublishError`` that says what went wrong when ``action`` (``"list"``, ``"publish to"``) on
    ``repo`` failed: the token refused (401), a permission missing (403), another HTTP error, or no
    answer at all ("cannot reach the Hub"); the token masked out of it."""
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
    detail = redact(f"{type(err).__name__}: {first_line}", token)
    status = http_status(err)
    if status == 401:
        who = "the token" if token else "the Hub: no token was sent, and it"
        message = f"{action} {repo}: {who} was refused (HTTP 401 Unauthorized); {TOKEN_FIX} ({detail})"
    elif status == 403:
        message = (
            f"{action} {repo}: the token was accepted but lacks the permission (HTTP 403 Forbidden): "
            f"give it write access to {repo.split('/')[0]} ({detail})"
        )
    elif status is not None:
        message = f"{action} {repo}: the Hub answered HTTP {status} ({detail})"
    else:
        message = f"cannot reach the Hub to {action} {repo}: {detail}"
    return PublishError(redact(message, token))


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
        if http_status(err) in (401, 403):
            raise hub_failure("publish to", repo, err, token) from None
        raise PublishError(
            redact(f"publishing to {repo} failed: {type(err).__name__}: {err}", token)
        ) from None
    return info.commit_url
