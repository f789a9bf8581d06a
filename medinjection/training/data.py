"""The training data of a run: one mix config of a built dataset, from a local folder or a Hub repo.

``load_dataset(name, config)`` reads both (the folder's README ``configs:`` block maps a config to its
Parquet files, as on the Hub). What the manifest needs is gathered here too: the resolved Hub commit
or, for a local folder, a sha256 of every file the run read; the mix's name, size and types and the
chat version from ``mixes.json`` (read when present; otherwise the types are those of the train split
and the chat version is recognised from the records; a dataset whose version cannot be told is
refused, naming what is missing).

A mix's validation split is the build's shared evaluation set of every provenance and type; it is
cut to the mix's types, so a multiple-choice run is validated on multiple-choice items (the number
before and after is recorded).
"""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medinjection.core.files import sha256_file
from medinjection.core.layout import MIXES_FILE, Layout, LayoutError, read_mixes_file

_HUB_REVISION = re.compile(r"^hf://datasets/[^@]+@([0-9a-f]{40})/")


class DataError(ValueError):
    """The dataset or config cannot be used for training; the message names it and what is wrong."""


@dataclass
class TrainingData:
    train: Any  # datasets.Dataset
    eval: Any | None
    info: dict[str, Any] = field(default_factory=dict)


def resolved_hub_revision(data_files: dict[str, list[str]]) -> str | None:
    """The commit sha ``datasets`` resolved a Hub dataset to (it is in every ``hf://`` data file path)."""
    found = {m.group(1) for files in data_files.values() for f in files if (m := _HUB_REVISION.match(str(f)))}
    if len(found) > 1:
        raise DataError(f"data files resolved to several commits: {sorted(found)}")
    return found.pop() if found else None


def _relative(root: Path, name: str) -> str:
    return str(Path(name).resolve().relative_to(root.resolve()))


def _file_shas(root: Path, data_files: dict[str, list[str]], splits: list[str]) -> dict[str, str]:
    """``{path relative to root: sha256}`` of the data files of ``splits``."""
    files = {_relative(root, name): sha256_file(Path(name)) for s in splits for name in data_files.get(s, [])}
    return dict(sorted(files.items()))


def _digest(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for rel, sha in sorted(files.items()):
        digest.update(f"{rel}\0{sha}\n".encode())
    return digest.hexdigest()


def unreadable_files(
    name: str, config: str, data_files: dict[str, list[str]], local: bool, err: Exception
) -> str:
    """One line naming the data file ``datasets`` could not read (a truncated or corrupt Parquet file), or
    the split whose row count is not the one the dataset's README records (a file changed after the build)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.exceptions import NonMatchingSplitsSizesError

    if isinstance(err, NonMatchingSplitsSizesError):
        # datasets gives the splits as the text of a list of {"expected": SplitInfo, "recorded": SplitInfo}
        found = re.findall(r"SplitInfo\(name='([^']+)'[^)]*?num_examples=(\d+)", str(err))
        pairs = list(zip(found[::2], found[1::2], strict=False))
        counts = "; ".join(
            f"its {expected[0]} split holds {recorded[1]} rows where its README records {expected[1]}"
            for expected, recorded in pairs
        ) or str(err)
        named = []
        for split in dict.fromkeys(expected[0] for expected, _ in pairs):
            changed = _changed_mix_files(name, config) if local and split == "train" else []
            if changed:  # a mix's train shards have their sha256 in mixes.json
                named.append(f"changed since `medinjection mix` wrote it: {', '.join(changed)}")
            else:
                files = [_relative(Path(name), f) if local else str(f) for f in data_files.get(split, [])]
                named.append(
                    f"a file of the {split} split changed since the build: one of {', '.join(files)}"
                )
        return (
            f"{name} config {config!r}: {counts}; {'; '.join(named)}; rebuild the dataset "
            "(medinjection build, medinjection mix) or restore the files"
        )
    if local:
        for split, files in data_files.items():
            for file in files:
                try:
                    pq.read_table(file)
                except (pa.ArrowException, OSError) as bad:
                    return f"{file}: not a readable Parquet file ({bad}); config {config!r}, {split} split of {name}"
    cause = err.__cause__ or err.__context__ or err
    return f"{name} config {config!r}: a data file cannot be read ({type(cause).__name__}: {cause})"


@contextmanager
def _quiet_datasets():
    from datasets.utils import logging as datasets_logging

    level = datasets_logging.get_verbosity()
    datasets_logging.set_verbosity(datasets_logging.CRITICAL)
    try:
        yield
    finally:
        datasets_logging.set_verbosity(level)


def _changed_mix_files(name: str, config: str) -> list[str]:
    """The train shards of the mix ``config`` whose sha256 is no longer the one ``mixes.json`` records."""
    try:
        entry = Layout(name).mix_entry(config) or {}
    except LayoutError:
        return []
    return sorted(
        rel
        for rel, sha in (entry.get("files") or {}).items()
        if not (Path(name) / rel).is_file() or sha256_file(Path(name) / rel) != sha
    )


def read_mixes_manifest(name: str, revision: str | None, local: bool) -> dict[str, Any] | None:
    """``mixes.json`` of the dataset (None when the folder or repo has none), read by its owner
    (``medinjection.core.layout``); a corrupt one fails, naming it."""
    try:
        if local:
            return Layout(name).mixes_manifest()
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            path = hf_hub_download(name, MIXES_FILE, repo_type="dataset", revision=revision)
        except EntryNotFoundError:
            return None
        return read_mixes_file(path)
    except LayoutError as err:
        raise DataError(f"{err}; rebuild it with `medinjection mix`") from None


def recognise_chat_version(dataset, sample: int = 50) -> tuple[str | None, dict[str, str]]:
    """The chat format version whose rendering equals the records' ``messages`` (first ``sample`` rows).

    Returns:
        ``(version, {})``, or ``(None, {version: why it is not that one})`` when no version matches.
    """
    from importlib import resources

    from medinjection.core.chat import to_messages

    folder = resources.files("medinjection") / "prompts" / "chat"
    versions = sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
    rows = dataset.select(range(min(sample, len(dataset)))).to_list()
    why: dict[str, str] = {}
    for version in versions:
        for index, row in enumerate(rows):
            record = row.get("id", f"row {index}")
            try:
                rendered = to_messages(row, version)
            except KeyError as err:
                why[version] = f"record {record} has no {err.args[0]!r} field to render it with"
                break
            except (ValueError, AttributeError, TypeError) as err:
                why[version] = f"record {record} cannot be rendered: {err}"
                break
            if rendered != row["messages"]:
                why[version] = f"the messages of record {record} are not its {version} rendering"
                break
        else:
            return version, {}
    return None, why


def load_training_data(
    name: str,
    config: str,
    *,
    revision: str | None = None,
    train_split: str = "train",
    eval_split: str | None = "validation",
) -> TrainingData:
    """Load ``config`` of the dataset ``name`` (a built folder or a Hub repo at ``revision``).

    Raises ``DataError`` naming the dataset and what is missing (config, split, ``messages`` column).
    """
    import datasets
    from datasets.exceptions import DatasetGenerationError, NonMatchingSplitsSizesError

    if not name:
        raise DataError("no dataset: give dataset_name (a built dataset folder or a Hub dataset repo)")
    if not config:
        raise DataError(f"{name}: no dataset_config (the mix to train on: nat, trad, syn, nat_trad, ...)")
    local = Path(name).is_dir()
    if not local and Path(name).expanduser().exists():
        raise DataError(f"{name}: not a dataset folder")
    try:
        builder = datasets.load_dataset_builder(name, config, revision=None if local else revision)
    except ValueError as err:
        if "BuilderConfig" in str(err):
            raise DataError(f"{name}: no config {config!r}; {str(err).split('. ', 1)[-1]}") from None
        raise
    data_files = {split: list(files) for split, files in (builder.config.data_files or {}).items()}
    wanted = [train_split] + ([eval_split] if eval_split else [])
    missing = [split for split in wanted if split not in data_files]
    if missing:
        raise DataError(
            f"{name} config {config!r} has no {', '.join(missing)} split (splits: {sorted(data_files)})"
        )
    cache_dir, shas = None, {}
    if local:
        # `datasets` keys the cache of a folder's named config by the folder's name and the config, not by
        # the files: a rebuilt (or another) `medinjection-fr` folder would be read from the old Arrow cache.
        # Keyed by the files' sha256, the cache is reused exactly when the bytes are the same.
        shas = _file_shas(Path(name), data_files, list(data_files))
        cache_dir = str(Path(datasets.config.HF_DATASETS_CACHE) / "medinjection-local" / _digest(shas)[:20])
    try:
        with _quiet_datasets():  # its "Failed to read file" log line would come before ours, in other words
            loaded = datasets.load_dataset(
                name, config, revision=None if local else revision, cache_dir=cache_dir
            )
    except (DatasetGenerationError, NonMatchingSplitsSizesError) as err:
        raise DataError(unreadable_files(name, config, data_files, local, err)) from None
    train = loaded[train_split]
    if "messages" not in train.column_names:
        raise DataError(
            f"{name} config {config!r}: no `messages` column (columns: {train.column_names}); "
            "build the dataset with `medinjection build` and `medinjection mix`"
        )
    mixes = read_mixes_manifest(name, revision, local)
    mix_info = (mixes or {}).get("mixes", {}).get(config)
    types = (mix_info or {}).get("types") or (mixes or {}).get("types")  # the mix's own, else the file's
    if not types and "type" in train.column_names:
        types = sorted(set(train["type"]))
    chat_version = (mixes or {}).get("chat_version")
    chat_source = "mixes.json" if chat_version else None
    if not chat_version:
        chat_version, why = recognise_chat_version(train)
        if chat_version is None:
            reasons = (
                "; ".join(f"{version}: {reason}" for version, reason in why.items()) or "no version known"
            )
            where = f"{MIXES_FILE} has no chat_version" if mixes is not None else f"there is no {MIXES_FILE}"
            raise DataError(
                f"{name} config {config!r}: the chat format version of its messages cannot be told: {where} "
                f"and the records match no version of medinjection/prompts/chat ({reasons}); build the dataset "
                "with `medinjection build` and `medinjection mix`, or add the chat_version to its mixes.json"
            )
        chat_source = "recognised from the records"

    eval_data, eval_counts = None, None
    if eval_split:
        eval_data = loaded[eval_split]
        before = len(eval_data)
        if types and "type" in eval_data.column_names:
            keep = set(types)
            eval_data = eval_data.filter(lambda kind: kind in keep, input_columns="type")
        eval_counts = {"split": eval_split, "rows": before, "kept_types": types, "used": len(eval_data)}
        if len(eval_data) == 0:
            raise DataError(f"{name} config {config!r}: no {eval_split} item of the types {types}")

    info: dict[str, Any] = {
        "name": name,
        "kind": "local" if local else "hub",
        "config": config,
        "revision_requested": None if local else revision,
        "revision": None if local else resolved_hub_revision(data_files),
        "splits": {train_split: len(train), **({eval_split: eval_counts} if eval_split else {})},
        "mix": {
            "name": config,
            "size": len(train),
            "types": types,
            "type_counts": dict(sorted(_counts(train, "type").items())),
            "provenance_counts": dict(sorted(_counts(train, "provenance").items())),
            "from_mixes_json": mix_info is not None,
            "mixes_json_seed": (mixes or {}).get("seed"),
            "entry": mix_info,  # the mix's mixes.json entry, as it is
        },
        "chat_version": chat_version,
        "chat_version_source": chat_source,
    }
    if local:
        read = {_relative(Path(name), f) for split in wanted for f in data_files.get(split, [])}
        files = {rel: sha for rel, sha in shas.items() if rel in read}
        info["fingerprint"] = {"sha256": _digest(files), "files": files}
    if mix_info is not None and mix_info.get("train") not in (None, len(train)):
        raise DataError(
            f"{name} config {config!r}: mixes.json says {mix_info['train']} train rows, the files hold {len(train)}"
        )
    return TrainingData(train=train, eval=eval_data, info=info)


def _counts(dataset, column: str) -> dict[str, int]:
    from collections import Counter

    return dict(Counter(dataset[column])) if column in dataset.column_names else {}
