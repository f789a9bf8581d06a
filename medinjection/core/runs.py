"""The one owner of a training run folder's layout (the model half's counterpart of the dataset layout).

A run folder is what ``medinjection train`` writes for one mix, and what ``evaluate``, ``report``
and ``publish adapter`` read::

    RUN_DIR/
      adapter_config.json, adapter_model.safetensors   the DoRA adapter (PEFT's files)
      manifest.json                                    the provenance manifest (data, config, versions)
      checkpoint-N/                                    trainer checkpoints (resume)
      eval/<task>/summary.json                         scores of exactly these adapter files (full evaluations)
      run.lock                                         while a training uses the folder: its pid, host, start

Every reader goes through ``RunLayout``; nothing else globs a run folder. ``adapter_sha256`` is the
identity of what was scored and what is published: a summary whose hash differs from the files in
the folder scored other files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medinjection.core import files
from medinjection.core.files import write_text_atomic

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
MANIFEST = "manifest.json"
EVAL_DIR = "eval"
SUMMARY = "summary.json"
PREDICTIONS = "predictions.parquet"
LOCK = "run.lock"
SUMMARY_SCHEMA = 2
"""``schema_version`` of an evaluation summary. 2: an evaluation set is a *task* (keys ``task``,
``task_spec``; the predictions' ``task`` column names it and ``scorer`` the way it was scored)."""


class RunError(ValueError):
    """A folder is not a run folder, or a run folder lacks what a step needs; the message says what."""


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def eval_dir(self) -> Path:
        return self.root / EVAL_DIR

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK

    def lock(self, command: list[str] | None = None) -> RunLock:
        """The run folder's lock, to hold while a training writes into it (``with layout.lock(): ...``)."""
        return RunLock(self, command)

    def adapter_paths(self) -> list[Path]:
        return [self.root / name for name in ADAPTER_FILES]

    def is_run(self) -> bool:
        return all(path.is_file() for path in self.adapter_paths())

    def require_adapter(self) -> None:
        missing = [p.name for p in self.adapter_paths() if not p.is_file()]
        if missing:
            raise RunError(f"{self.root}: not an adapter run folder (missing {', '.join(missing)})")

    def adapter_sha256(self) -> str:
        """sha256 over the adapter files (name and content), the identity of the scored artefact."""
        self.require_adapter()
        digest = hashlib.sha256()
        for path in self.adapter_paths():
            digest.update(path.name.encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

    def manifest(self) -> dict:
        if not self.manifest_path.is_file():
            raise RunError(f"{self.root}: no {MANIFEST} (train it with `medinjection train`)")
        return read_json(self.manifest_path)

    def manifest_adapter_sha256(self) -> str | None:
        """The adapter hash the manifest recorded when training wrote these files (``adapter.sha256``);
        ``None`` without a manifest or without that key. When it differs from ``adapter_sha256()``,
        the files were replaced after training and the manifest describes other weights."""
        if not self.manifest_path.is_file():
            return None
        return (self.manifest().get("adapter") or {}).get("sha256")

    def manifest_mix(self) -> Any:
        """The mix the manifest recorded (``mix``: name, size, types, counts and ``entry``, the mix's
        ``mixes.json`` entry as it was), as it is; ``None`` without a manifest."""
        if not self.manifest_path.is_file():
            return None
        return self.manifest().get("mix")

    def summary_path(self, task: str) -> Path:
        return self.eval_dir / task / SUMMARY

    def summaries(self) -> dict[str, dict]:
        """Evaluation summaries written into the run folder, by task (one of an older schema is an error
        naming it: its keys mean something else)."""
        found = {}
        for path in sorted(self.eval_dir.glob(f"*/{SUMMARY}")):
            summary = read_json(path)
            check_summary_schema(summary, path, RunError)
            found[path.parent.name] = summary
        return found

    def checkpoints(self) -> list[Path]:
        """Trainer checkpoints, oldest first."""
        found = [p for p in self.root.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
        return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


logger = logging.getLogger(__name__)


class RunLock:
    """An exclusive lock on a run folder: ``RUN_DIR/run.lock``, holding the pid, host and start time of the
    process that uses the folder, locked with ``flock`` for as long as it does.

    The kernel releases the ``flock`` of a process that dies, however it dies (``kill -9`` included), so a
    lock file left behind is recognised as stale (its file lock is free) and taken over, with a warning
    naming the dead holder; a lock held by a running process is refused, naming it. On a clean release the
    file is removed. A file system without file locks (some parallel file systems) gets a warning and no
    lock. Only the main process of a multi-process run takes it.
    """

    def __init__(self, layout: RunLayout, command: list[str] | None = None):
        self.layout = layout
        self.command = command
        self.fd: int | None = None
        self.previous: dict | None = None
        self.created = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        import fcntl

        path = self.layout.lock_path
        self.created = not self.layout.root.exists()
        self.layout.root.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunError(
                    f"{self.layout.root} is in use by another training ({_describe(holder)}, lock {path}); "
                    "wait for it to end, or choose another output_dir"
                ) from None
            except OSError as err:  # no file locks on this file system
                os.close(fd)
                logger.warning(
                    "%s: file locks are not supported here (%s); the run folder is not locked", path, err
                )
                return
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:  # not a file its previous holder removed between our open and our flock
                break
            os.close(fd)
        self.previous = _holder(fd)
        if self.previous:
            logger.warning(
                "%s: taking over the lock of %s, which ended without releasing it",
                path,
                _describe(self.previous),
            )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.layout.lock_path.unlink(missing_ok=True)  # while still holding it: see acquire
        finally:
            os.close(self.fd)
            self.fd = None
        if self.created:  # a run that stopped before writing anything leaves no empty folder behind
            try:
                self.layout.root.rmdir()
            except OSError:
                pass


def _holder(fd: int) -> dict | None:
    """What a lock file says about its holder (None when empty or unreadable)."""
    try:
        data = os.pread(fd, 65536, 0)
        holder = json.loads(data.decode()) if data.strip() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "a process that has not written its pid yet"
    command = " ".join(holder.get("command") or [])
    return f"process {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}" + (
        f": {command}" if command else ""
    )


def read_json(path: Path) -> dict:
    """A JSON file of a run folder; a file that does not parse is an error naming it."""
    return files.read_json(path, RunError)


def check_summary_schema(summary: dict, path: Path, error: type[Exception]) -> None:
    """Raise ``error`` naming ``path`` when an evaluation summary is not of ``SUMMARY_SCHEMA``."""
    version = summary.get("schema_version")
    if version != SUMMARY_SCHEMA:
        raise error(
            f"{path}: an evaluation summary of schema_version {version} (this medinjection reads "
            f"{SUMMARY_SCHEMA}: evaluation sets are now tasks); score it again with `medinjection evaluate "
            "... --overwrite true`"
        )


def find_runs(path: str | Path) -> list[RunLayout]:
    """``path`` itself when it is a run folder, else the run folders below it, at any depth (sorted).

    ``runs/`` holds ``runs/<mix>/`` for the demo and ``runs/<model>/<mix>/`` for the recipes; a run's
    ``checkpoint-N/`` folders are not runs. Two runs of the same name (the evaluation's model tag) are
    an error: point at the folder of one family.
    """
    path = Path(path)
    if RunLayout(path).is_run():
        return [RunLayout(path)]
    if not path.is_dir():
        raise RunError(f"{path}: no such folder")
    runs = sorted(
        (
            RunLayout(config.parent)
            for config in path.rglob(ADAPTER_FILES[0])
            if not any(part.startswith("checkpoint-") for part in config.parent.relative_to(path).parts)
            and RunLayout(config.parent).is_run()
        ),
        key=lambda run: run.root,
    )
    if not runs:
        raise RunError(f"{path}: neither a run folder nor a folder of run folders (no adapter_config.json)")
    names: dict[str, list[Path]] = {}
    for run in runs:
        names.setdefault(run.name, []).append(run.root)
    clashes = {name: roots for name, roots in names.items() if len(roots) > 1}
    if clashes:
        lines = [f"{name}: {', '.join(str(r) for r in roots)}" for name, roots in sorted(clashes.items())]
        raise RunError(
            f"{path}: several run folders share a name (the model tag of their scores):\n  "
            + "\n  ".join(lines)
            + "\npass the folder of one family, e.g. runs/qwen3-4b-instruct-2507"
        )
    return runs


def rewrite_adapter_config(run_dir: Path, hub_id: str) -> None:
    """Point ``adapter_config.json`` at the base model's Hub id (PEFT wrote the loading path)."""
    path = RunLayout(run_dir).adapter_paths()[0]
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    config["base_model_name_or_path"] = hub_id
    write_text_atomic(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
