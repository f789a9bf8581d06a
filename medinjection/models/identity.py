"""Which model a model is: the Hub id and commit of a base model, however it was given.

A base model is named by a Hub id (``ORG/NAME`` at a revision) or loaded from a local folder. The Hub
id of a folder comes from, in order: ``--base_model_id``; the marker of a model made on the fly
(``medinjection.models.tiny``); a Hub cache snapshot path (``.../models--ORG--NAME/snapshots/SHA``).
A local folder that says none of this has no Hub id. Training (the manifest, ``adapter_config.json``)
and evaluation (the summaries) both identify the base through this module.

A local folder's *contents* are identified apart, by ``local_model_sha256``: the hash of its weight,
config and tokenizer files. A name or a marker says which model a folder claims to be; only the hash
says that two folders hold the same weights (the evaluation's reuse of a score depends on it).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from medinjection.core.files import read_json, sha256_file, write_json
from medinjection.models.tiny import model_marker

UNKNOWN_BASE = "unknown (a local folder that does not say which Hub model it is)"

_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<sha>[0-9a-f]{40})/?$")


class BaseModelError(ValueError):
    """The base model's Hub id cannot be told; the message says how to give it."""


def base_model(
    model_name_or_path: str,
    revision: str | None,
    declared_id: str | None,
    declared_revision: str | None = None,
) -> dict[str, Any]:
    """``{"hub_id", "revision", "revision_source", "path", "source", "made_on_the_fly"}`` of the base model.

    Args:
        model_name_or_path: what the model is loaded from (a Hub id or a local folder).
        revision: ``model_revision`` (the commit a Hub id is loaded at).
        declared_id: ``--base_model_id``, the Hub id of a local copy.
        declared_revision: ``--base_model_revision``, the Hub commit a local copy was taken at. It may
            not contradict what the path says (a Hub cache snapshot) or what is loaded (``model_revision``).
    """
    path = Path(model_name_or_path).expanduser()
    local = path.is_dir()
    marker = model_marker(path) if local else None
    snapshot = _SNAPSHOT.search(str(path.resolve())) if local else None
    if declared_id:
        hub_id, source = declared_id, "--base_model_id"
    elif marker and marker.get("hub_id"):
        hub_id, source = marker["hub_id"], "marker (made on the fly, not on the Hub)"
    elif snapshot:
        hub_id, source = f"{snapshot['org']}/{snapshot['name']}", "Hub cache snapshot path"
    elif not local:
        hub_id, source = model_name_or_path, "model_name_or_path (a Hub id)"
    else:
        raise BaseModelError(
            f"model_name_or_path {model_name_or_path!r} is a local folder that does not say which Hub model it "
            "is a copy of; pass --base_model_id ORG/NAME (adapter_config.json must name the Hub id)"
        )
    made_on_the_fly = bool(marker and marker.get("made_on_the_fly"))
    if not local:
        known, known_source = revision, "model_revision"
    elif snapshot:
        known, known_source = snapshot["sha"], "Hub cache snapshot path"
    else:
        known, known_source = None, None
    if declared_revision and made_on_the_fly and not declared_id:
        raise BaseModelError(
            f"--base_model_revision {declared_revision!r}: {model_name_or_path} was made on the fly, it has no Hub "
            "revision"
        )
    if declared_revision and known and declared_revision != known:
        raise BaseModelError(
            f"--base_model_revision {declared_revision!r} contradicts the {known_source} {known!r} of "
            f"{model_name_or_path}; give one revision"
        )
    if known:
        rev, rev_source = known, known_source
    elif declared_revision:
        rev, rev_source = declared_revision, "--base_model_revision"
    else:
        rev, rev_source = None, None
    return {
        "hub_id": hub_id,
        "revision": rev,
        "revision_source": rev_source,
        "path": model_name_or_path,
        "source": source,
        "made_on_the_fly": made_on_the_fly,
    }


def base_identity(model: str, revision: str | None) -> dict[str, str | None]:
    """``{"hub_id", "revision", "source", "files_sha256"}``: the Hub model and commit that ``model`` is,
    and for a local folder the hash of what it holds (``local_model_sha256``; ``None`` for a Hub id,
    which its commit identifies).

    The Hub id as the training manifest records a base (``base_model``): a Hub id itself;
    the marker of a model made on the fly (``medinjection.models.tiny``: no revision, it is not on the Hub);
    the ``models--ORG--NAME/snapshots/SHA`` path of a Hub cache copy. The revision is the commit
    transformers resolves (the snapshot folder it reads ``config.json`` from) when it can tell, else
    ``revision`` as given. A local folder that says none of this gives ``None`` for both.
    """
    folder = Path(model).expanduser()
    files_sha256 = None
    if folder.is_dir():
        try:
            files_sha256 = local_model_sha256(folder)
        except BaseModelError:  # an empty folder: nothing to load either
            files_sha256 = None
    try:
        found = base_model(model, revision, None)
    except BaseModelError:
        return {"hub_id": None, "revision": None, "source": UNKNOWN_BASE, "files_sha256": files_sha256}
    resolved = found["revision"]
    if not folder.is_dir():
        resolved = resolved_commit(model, revision) or resolved
    return {
        "hub_id": found["hub_id"],
        "revision": resolved,
        "source": found["source"],
        "files_sha256": files_sha256,
    }


def resolved_commit(model: str, revision: str | None) -> str | None:
    """The commit of a Hub model at ``revision`` (a branch, tag or sha), read from the cache path of
    its ``config.json`` (downloaded if needed, as loading it does); ``None`` when it cannot tell."""
    from transformers.utils import cached_file, extract_commit_hash

    try:
        path = cached_file(model, "config.json", revision=revision)
    except (OSError, ValueError):  # offline without a cached copy, a gated repo: not known
        return None
    return extract_commit_hash(path, None)


MODEL_FILE_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".gguf",
    ".json",
    ".jinja",
    ".model",
    ".txt",
    ".tiktoken",
)
"""Files of a model folder that decide what it computes: weights, configs (model, generation,
tokenizer), the chat template, vocabularies. Read-me files, licences and hidden files are not hashed."""
HASH_CACHE_ENV = "MEDINJECTION_HASH_CACHE"


def hash_cache_path() -> Path:
    """``$MEDINJECTION_HASH_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/medinjection/file-hashes.json``."""
    if os.environ.get(HASH_CACHE_ENV):
        return Path(os.environ[HASH_CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "medinjection" / "file-hashes.json"


def _cached_sha256(path: Path, cache: dict[str, Any]) -> str:
    """sha256 of ``path``, from ``cache`` when the file's size and modification time are unchanged."""
    stat = path.stat()
    key = str(path.resolve())
    entry = cache.get(key)
    if (
        isinstance(entry, dict)
        and entry.get("size") == stat.st_size
        and entry.get("mtime_ns") == stat.st_mtime_ns
    ):
        return entry["sha256"]
    digest = sha256_file(path)
    cache[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    return digest


def local_model_files(folder: str | Path) -> list[Path]:
    """The files of a model folder that ``local_model_sha256`` hashes, sorted by name."""
    folder = Path(folder)
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix in MODEL_FILE_SUFFIXES
        ),
        key=lambda p: p.name,
    )


def local_model_sha256(folder: str | Path, cache_file: str | Path | None = None) -> str:
    """The identity of a local model folder's contents: sha256 over the names and hashes of its
    weight, config and tokenizer files (``local_model_files``).

    Each file is hashed once: its hash is kept in a small JSON cache (``hash_cache_path``) keyed by
    the file's path, size and modification time, so that a 8 GB base costs a full read once, and
    then a ``stat`` per file. A cache that cannot be read or written is only a slower run.
    """
    folder = Path(folder)
    files = local_model_files(folder)
    if not files:
        raise BaseModelError(f"{folder}: no model file (weights, config) to identify it by")
    cache_path = Path(cache_file) if cache_file is not None else hash_cache_path()
    try:
        cache = read_json(cache_path, missing_ok=True, expect=dict) or {}
    except (OSError, ValueError):
        cache = {}
    before = dict(cache)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + _cached_sha256(path, cache).encode() + b"\n")
    if cache != before:
        cache = {key: entry for key, entry in cache.items() if Path(key).exists()}  # forget deleted files
        try:
            write_json(cache_path, cache)
        except OSError:  # a read-only home: hashing again next time is the only cost
            pass
    return digest.hexdigest()
