"""The one owner of a dataset folder's layout, and what a build stage is.

A built dataset folder::

    medinjection-fr/
      data/<provenance>/<split>-NNNNN.parquet   provenance shards (the build's records)
      data/<mix>/train-NNNNN.parquet            mix shards (copies of train rows; medinjection mix)
      rejects/<step>/NNNNN.jsonl                every rejected record, with its step and reason
      stats.json, dedup_report.md               reports of the build
      mixes.json                                the mixes manifest
      README.md, cards/<provenance>.md          the dataset cards
      quality/review_report.json                the quality review (medinjection quality review pull)
      _build/                                   work files and datatrove logs (never published)

Every reader of such a folder (finalize, the dedup report, mixes, cards, publish, quality sampling)
goes through ``Layout``; nothing else globs it. The provenance shards are the build's records; a mix
shard holds copies of them, so a reader that wants records reads ``provenance_shards`` and never
sees a row twice. A folder under ``data/`` that is neither a provenance nor a mix, or a shard whose
name does not say its split, is an error naming it, never skipped.

A shard's Parquet footer carries, beside the ``datasets`` features, the chat format version its
``messages`` were rendered with (``shard_schema``, ``shard_chat_version``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medinjection.core.files import read_json, write_json

BUILD_DIR = "_build"
DATA_DIR = "data"
REJECTS_DIR = "rejects"
STATS_FILE = "stats.json"
MIXES_FILE = "mixes.json"
DEDUP_REPORT = "dedup_report.md"
README = "README.md"
CARDS_DIR = "cards"
REVIEW_REPORT = "quality/review_report.json"
# What `medinjection quality review pull --dataset` writes into the folder (published with it).
REVIEW_FILES = (
    REVIEW_REPORT,
    "quality/review_report.md",
    "quality/review_report.png",
    "quality/excluded_ids.txt",
)
EVAL_SETS_FILE = "eval_sets.json"  # per evaluation set: items indexed, rows unreadable (decontamination)
# The top-level entries a build writes (``build --overwrite`` starts them again).
BUILD_OUTPUTS = (DATA_DIR, REJECTS_DIR, BUILD_DIR, STATS_FILE, README, DEDUP_REPORT)
# Never published: work files, the rejected rows (counted in stats.json and the card).
UNPUBLISHED = (BUILD_DIR, REJECTS_DIR)
SHARD_METADATA_KEY = b"medinjection"
SHARD_NAME = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})\.parquet$")
# The pattern datatrove's writer fills per record (provenance, split) and task (rank).
WRITER_FILENAME = f"{DATA_DIR}/${{provenance}}/${{split}}-${{rank}}.parquet"


class LayoutError(ValueError):
    """A dataset folder holds something its layout does not allow; the message names the path."""


def check_mixes_manifest(manifest: Any, where: Path | str) -> dict:
    """``manifest`` itself when it has the shape of a ``mixes.json`` (an object whose ``mixes`` maps each
    mix name to an object); else a ``LayoutError`` naming ``where``."""
    if not isinstance(manifest, dict):
        raise LayoutError(f"{where}: {MIXES_FILE} must be a JSON object, got {type(manifest).__name__}")
    mixes = manifest.get("mixes")
    if not isinstance(mixes, dict) or not all(isinstance(v, dict) for v in mixes.values()):
        raise LayoutError(
            f"{where}: {MIXES_FILE} has no 'mixes' object (mix name -> entry); rebuild the mixes"
        )
    return manifest


def read_mixes_file(path: Path | str, *, missing_ok: bool = False) -> dict | None:
    """A ``mixes.json`` file, wherever it lies (a folder's, or one downloaded from a Hub repo)."""
    manifest = read_json(path, LayoutError, missing_ok=missing_ok)
    return None if manifest is None else check_mixes_manifest(manifest, path)


@dataclass(frozen=True)
class Shard:
    """One Parquet file of the folder: which config (provenance or mix), which split."""

    path: Path
    config: str
    split: str
    kind: str  # "provenance" | "mix"


def shard_schema(chat_version: str):
    """The schema every shard is written with: the record features (``datasets`` metadata included)
    plus the chat format version of its ``messages``."""
    from medinjection.core.schema import FEATURES

    schema = FEATURES.arrow_schema
    info = json.dumps({"chat_version": chat_version}).encode()
    return schema.with_metadata({**(schema.metadata or {}), SHARD_METADATA_KEY: info})


def shard_chat_version(path: Path) -> str | None:
    """The chat format version recorded in a shard's footer (None when the file records none)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    if SHARD_METADATA_KEY not in metadata:
        return None
    return json.loads(metadata[SHARD_METADATA_KEY]).get("chat_version")


def _under_root(name: str) -> property:
    """A ``Layout`` property: the path ``name`` of the folder (``root / name``)."""

    def path(self: Layout) -> Path:
        return self.root / name

    return property(path, doc=f"``{name}`` of the folder")


@dataclass(frozen=True)
class Layout:
    """Where everything of a dataset folder lives; every path derives from ``root``."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # ---- the build's own work files ------------------------------------------------------------
    build = _under_root(BUILD_DIR)

    @property
    def prepared(self) -> Path:
        return self.build / "prepared"

    def logs(self, stage: str) -> Path:
        return self.build / "logs" / stage

    def work(self, stage: str) -> Path:
        return self.build / stage

    @property
    def usage(self) -> Path:
        """The generation stages' usage files (``<task>-NNNNN.json``: requests, tokens, cost)."""
        return self.build / "usage"

    @property
    def eval_sets_path(self) -> Path:
        """Per evaluation set of the decontamination: items indexed, rows unreadable."""
        return self.work("decontamination") / EVAL_SETS_FILE

    # ---- records, rejects, reports, manifests, cards --------------------------------------------
    data = _under_root(DATA_DIR)
    rejects = _under_root(REJECTS_DIR)
    stats_path = _under_root(STATS_FILE)
    mixes_path = _under_root(MIXES_FILE)
    dedup_report_path = _under_root(DEDUP_REPORT)
    review_report_path = _under_root(REVIEW_REPORT)

    def card_path(self, subset: str | None = None) -> Path:
        """``README.md`` for the whole folder, ``cards/<provenance>.md`` for one provenance subset."""
        return self.root / README if subset is None else self.root / CARDS_DIR / f"{subset}.md"

    def subset_cards(self) -> list[Path]:
        return sorted((self.root / CARDS_DIR).glob("*.md"))

    def is_built(self) -> bool:
        return self.data.is_dir()

    def read_json(self, path: Path) -> Any | None:
        """A JSON report of the folder, or None when absent; unreadable JSON names the file."""
        return read_json(path, LayoutError, missing_ok=True)

    def stats(self) -> dict | None:
        return self.read_json(self.stats_path)

    def mixes_manifest(self) -> dict | None:
        """``mixes.json`` (None when the folder has none); one that is not an object with a ``mixes``
        mapping is an error naming it."""
        return read_mixes_file(self.mixes_path, missing_ok=True)

    def mix_entry(self, mix: str) -> dict | None:
        """The ``mixes.json`` entry of one mix, as written (None when the file or the mix is absent)."""
        manifest = self.mixes_manifest()
        return None if manifest is None else manifest["mixes"].get(mix)

    def write_mixes_manifest(self, manifest: dict) -> None:
        check_mixes_manifest(manifest, self.mixes_path)
        self.write_json(self.mixes_path, manifest)

    def write_json(self, path: Path, value: Any) -> None:
        write_json(path, value)

    # ---- shards --------------------------------------------------------------------------------
    def config_dir(self, config: str) -> Path:
        return self.data / config

    def shard_path(self, config: str, split: str, index: int) -> Path:
        return self.config_dir(config) / f"{split}-{index:05d}.parquet"

    def split_pattern(self, config: str, split: str) -> str:
        """The repo-relative pattern of a config's split, as the card's ``data_files`` name it."""
        return f"{DATA_DIR}/{config}/{split}-*"

    def glob(self, pattern: str) -> list[Path]:
        """The files a card's ``data_files`` pattern names (``data/<config>/<split>-*``)."""
        return sorted(self.root.glob(pattern + ".parquet" if pattern.endswith("*") else pattern))

    def mix_names(self) -> list[str]:
        """The mixes ``mixes.json`` declares (none without the file), in its order."""
        manifest = self.mixes_manifest()
        return list(manifest["mixes"]) if manifest else []

    def config_kinds(self) -> dict[str, str]:
        """Every folder under ``data/``: name → "provenance" or "mix" (a mix ``mixes.json`` declares);
        any other folder is an error naming it."""
        from medinjection.core.schema import PROVENANCES

        kinds = {}
        if not self.data.is_dir():
            return kinds
        manifest = self.mixes_manifest()
        mixes = list(manifest["mixes"]) if manifest else []
        for folder in sorted(p for p in self.data.iterdir() if p.is_dir()):
            if folder.name in PROVENANCES:
                kinds[folder.name] = "provenance"
            elif folder.name in mixes:
                kinds[folder.name] = "mix"
            elif manifest is None:
                raise LayoutError(
                    f"{folder}: neither a provenance ({', '.join(PROVENANCES)}) nor a mix: there is no "
                    f"{MIXES_FILE} to declare it; run: medinjection mix {self.root} (or remove the folder)"
                )
            else:
                raise LayoutError(
                    f"{folder}: neither a provenance ({', '.join(PROVENANCES)}) nor a mix of {MIXES_FILE} "
                    f"({', '.join(mixes)}); remove it or rename it"
                )
        return kinds

    def _shards(self, config: str, kind: str, splits: Iterable[str] | None) -> list[Shard]:
        from medinjection.core.schema import SPLITS

        wanted = set(splits) if splits is not None else None
        shards = []
        for path in sorted(self.config_dir(config).glob("*.parquet")):
            match = SHARD_NAME.match(path.name)
            if match is None or match["split"] not in SPLITS:
                raise LayoutError(
                    f"{path}: not a shard name (<split>-NNNNN.parquet, split one of {', '.join(SPLITS)})"
                )
            if kind == "mix" and match["split"] != "train":
                raise LayoutError(f"{path}: a mix holds train shards only")
            if wanted is None or match["split"] in wanted:
                shards.append(Shard(path, config, match["split"], kind))
        return shards

    def provenances_present(self) -> list[str]:
        """The provenances with at least one shard, in the canonical order."""
        from medinjection.core.schema import PROVENANCES

        return [p for p in PROVENANCES if self.config_dir(p).is_dir() and self._shards(p, "provenance", None)]

    def mixes_present(self) -> list[str]:
        return [name for name, kind in self.config_kinds().items() if kind == "mix"]

    def provenance_shards(
        self, provenances: Iterable[str] | None = None, splits: Iterable[str] | None = None
    ) -> list[Shard]:
        """The build's records: ``data/<provenance>/<split>-*.parquet`` (mix copies never included)."""
        from medinjection.core.schema import PROVENANCES

        chosen = list(provenances) if provenances is not None else list(PROVENANCES)
        unknown = sorted(set(chosen) - set(PROVENANCES))
        if unknown:
            raise LayoutError(f"unknown provenance(s) {unknown}; known: {list(PROVENANCES)}")
        # only the provenance folders are read: a mix folder is never needed (nor judged) here
        return [
            shard
            for provenance in PROVENANCES
            if provenance in chosen and self.config_dir(provenance).is_dir()
            for shard in self._shards(provenance, "provenance", splits)
        ]

    def mix_shards(self, mixes: Iterable[str] | None = None) -> list[Shard]:
        """The train shards of the mixes (``data/<mix>/train-*.parquet``)."""
        present = self.mixes_present()
        chosen = present if mixes is None else [m for m in mixes if m in present]
        return [shard for mix in chosen for shard in self._shards(mix, "mix", None)]

    def config_files(self, subset: str | None = None) -> dict[str, dict[str, list[str]]]:
        """config → split → repo-relative patterns of its files: what the card's ``configs`` block says
        and what ``load_dataset(folder, config)`` reads. A provenance has its own splits; a mix has its
        train shards, and as validation and test the shared evaluation sets of every provenance
        (nothing is copied). ``subset``: that provenance alone (its own card)."""
        from medinjection.core.schema import SPLITS

        present = self.provenances_present()
        written = {(shard.config, shard.split) for shard in self.provenance_shards()}
        configs: dict[str, dict[str, list[str]]] = {}
        for provenance in [subset] if subset else present:
            configs[provenance] = {
                split: [self.split_pattern(provenance, split)]
                for split in SPLITS
                if (provenance, split) in written
            }
        if not subset:
            for mix in self.mix_names():
                configs[mix] = {"train": [self.split_pattern(mix, "train")]}
                for split in ("validation", "test"):
                    paths = [self.split_pattern(p, split) for p in present if (p, split) in written]
                    if paths:
                        configs[mix][split] = paths
        return configs

    def split_paths(self, config: str, split: str) -> list[Path]:
        """The Parquet files of one split of a config (``all``: every split), as ``config_files`` maps
        them; an unknown config or an absent split is an error naming what is there."""
        configs = self.config_files()
        if config not in configs:
            raise LayoutError(f"{self.root}: no config {config!r} (configs: {sorted(configs)})")
        splits = configs[config]
        if split != "all" and split not in splits:
            raise LayoutError(
                f"{self.root}: config {config!r} has no {split} split (splits: {sorted(splits)})"
            )
        chosen = list(splits) if split == "all" else [split]
        return [path for s in chosen for pattern in splits[s] for path in self.glob(pattern)]

    # ---- rejects -------------------------------------------------------------------------------
    def reject_files(self) -> list[Path]:
        return sorted(self.rejects.glob("*/*.jsonl"))

    def iter_rejects(self) -> Iterator[dict]:
        """Every rejected record (one JSON object a line); a bad line names its file and line."""
        for path in self.reject_files():
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        raise LayoutError(f"{path}:{number}: not a JSON reject ({err})") from err

    # ---- publishing ----------------------------------------------------------------------------
    def published_files(self) -> dict[str, Path]:
        """path in repo → file, for the whole folder: what the layout owns and a Hub dataset shows,
        and nothing else (a user's notes, a cache, an editor's backup stay home): the provenance and
        mix shards, ``README.md``, the subset cards ``cards/<provenance>.md``, ``stats.json``,
        ``mixes.json``, ``dedup_report.md`` and the quality review's files. Never ``_build/`` or
        ``rejects/`` (work files; the rejects are counted in ``stats.json`` and the card). A shard name
        or a folder under ``data/`` the layout does not allow is an error naming it."""
        from medinjection.core.schema import PROVENANCES

        shards = [shard.path for shard in (*self.provenance_shards(), *self.mix_shards())]
        reports = [self.card_path(), self.stats_path, self.mixes_path, self.dedup_report_path]
        cards = [self.card_path(p) for p in PROVENANCES]
        quality = [self.root / name for name in REVIEW_FILES]
        return {
            path.relative_to(self.root).as_posix(): path
            for path in sorted([*shards, *reports, *cards, *quality])
            if path.is_file()
        }

    def unpublished_files(self) -> list[str]:
        """The files of the folder that ``published_files`` leaves out, less the build's own
        ``_build/`` and ``rejects/`` (repo-relative paths, sorted): what a publish lists as left out."""
        published = set(self.published_files())
        return sorted(
            rel
            for rel in (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
            if rel not in published and rel.split("/", 1)[0] not in UNPUBLISHED
        )

    def subset_files(self, subset: str) -> dict[str, Path]:
        """path in repo → file of one provenance subset published alone (its card becomes README.md)."""
        files = {"README.md": self.card_path(subset)}
        for shard in self.provenance_shards([subset]):
            files[shard.path.relative_to(self.root).as_posix()] = shard.path
        return files


@dataclass
class Stage:
    name: str
    pipeline: list
    tasks: int
