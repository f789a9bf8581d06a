"""The seven training mixes of the paper, written as configs of the built dataset folder.

Each mix is a list of provenances (``MIXES``); every mix has the same number of train examples
(33,493 by default, the paper's size), split equally between its provenances, with the task types
of each provenance share in the proportions of that provenance's train split. Which task types a
mix holds is ``types``: by default the paper's preset, multiple choice only (MCQ + MCQU: the
released models were trained on those, and 33,493 is exactly the synthetic subset's number of
multiple-choice train items); ``all`` (or ``MCQ,MCQU,OEQ``) includes the open-ended items.
Only train items are drawn; the validation and test splits of every mix are the shared,
provenance-labelled evaluation sets of the build, all types (the card points the mix configs at
those files; nothing is copied; filter on the ``type`` column to match ``types``).

Rules, all deterministic for a seed:

* share of each provenance: ``size // k``; the remainder ``size % k`` goes one example each to the
  first provenances in the order native, translated, synthetic (``all`` at 33,493 = 11,165 native
  + 11,164 translated + 11,164 synthetic; ``nat_trad`` = 16,747 + 16,746);
* type quotas inside a share: largest remainder over the provenance's train counts by type
  (ties go to the type first in MCQ, MCQU, OEQ), so each quota is within one example of its exact
  proportion;
* which items: inside each (provenance, type), the items with the smallest
  ``sha256(f"{seed}\\0{id}")`` — independent of how the build sharded its files, and the same
  seeded order for every mix, so the mixes share items as much as their quotas allow;
* row order of a mix: ``sha256(f"{seed}\\0{mix}\\0{id}")``, a seeded shuffle.

Output: ``data/<mix>/train-NNNNN.parquet`` (all columns, the schema's features embedded) and
``mixes.json`` (sizes, rule, ``types``, ``chat_version``, per-mix counts by provenance, type and
source, file checksums). ``chat_version`` is the chat format version of the rows' ``messages``, read
from the build's shards (``layout.shard_chat_version``); training records it in its manifest.
Every path comes from ``Layout``.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import typer

from medinjection.cards.dataset_card import CardError, write_cards
from medinjection.core.console import fail
from medinjection.core.layout import (  # noqa: F401  (MIXES_FILE: for readers of the manifest)
    MIXES_FILE,
    Layout,
    LayoutError,
    shard_chat_version,
    shard_schema,
)
from medinjection.core.schema import PROVENANCES, TYPES

MIXES: dict[str, tuple[str, ...]] = {
    "nat": ("native",),
    "trad": ("translated",),
    "syn": ("synthetic",),
    "nat_trad": ("native", "translated"),
    "nat_syn": ("native", "synthetic"),
    "trad_syn": ("translated", "synthetic"),
    "all": ("native", "translated", "synthetic"),
}
DEFAULT_SIZE = 33_493
ROWS_PER_FILE = 100_000
# Named task-type presets of `--types`; "paper" is the default: the released models were trained on
# multiple-choice items only (their model cards), open-ended items were evaluated, not trained on.
TYPE_PRESETS: dict[str, tuple[str, ...]] = {
    "paper": ("MCQ", "MCQU"),
    "multiple-choice": ("MCQ", "MCQU"),
    "all": TYPES,
}
DEFAULT_TYPES = "paper"
RULE = (
    "equal provenance shares (size // k each; the remainder one each to native, translated, synthetic "
    "in that order); type quotas by largest remainder within each share; items with the smallest "
    "sha256(seed, id) per (provenance, type); train split only"
)


class MixError(ValueError):
    """The mixes cannot be built as asked (too few train items, a missing provenance)."""


def parse_types(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The task types of ``--types``: a preset name (``paper``, ``multiple-choice``, ``all``) or a
    comma-separated list of types (``MCQ,MCQU,OEQ``); in the schema's order."""
    if isinstance(value, str):
        if value.strip().lower() in TYPE_PRESETS:
            return TYPE_PRESETS[value.strip().lower()]
        value = value.split(",")
    chosen = {part.strip().upper() for part in value if part.strip()}
    unknown = sorted(chosen - set(TYPES))
    if unknown or not chosen:
        raise MixError(
            f"--types {','.join(value) if not isinstance(value, str) else value!r}: "
            + (f"unknown type(s) {unknown}; " if unknown else "no type given; ")
            + f"give a preset ({', '.join(TYPE_PRESETS)}) or types among {', '.join(TYPES)}"
        )
    return tuple(t for t in TYPES if t in chosen)


def preset_name(types: tuple[str, ...]) -> str | None:
    """The first preset with exactly these types (``paper`` for MCQ + MCQU), or None."""
    return next((name for name, preset in TYPE_PRESETS.items() if preset == tuple(types)), None)


@dataclass
class MixResult:
    root: Path
    size: int
    requested_size: int
    seed: int
    report: dict


def provenance_shares(size: int, provenances: tuple[str, ...]) -> dict[str, int]:
    """Equal shares of ``size``; the remainder goes one each to the first provenances (canonical order)."""
    ordered = [p for p in PROVENANCES if p in provenances]
    base, remainder = divmod(size, len(ordered))
    return {p: base + (1 if i < remainder else 0) for i, p in enumerate(ordered)}


def largest_remainder(total: int, counts: dict[str, int]) -> dict[str, int]:
    """Split ``total`` in proportion to ``counts`` (largest remainder; ties to the earlier key)."""
    population = sum(counts.values())
    if total > population:
        raise MixError(f"cannot draw {total} items from {population}")
    if population == 0:
        return {key: 0 for key in counts}
    exact = {key: total * n / population for key, n in counts.items()}
    quotas = {key: int(value) for key, value in exact.items()}
    order = sorted(counts, key=lambda key: (-(exact[key] - quotas[key]), list(counts).index(key)))
    for key in order[: total - sum(quotas.values())]:
        quotas[key] += 1
    return quotas


def rank(seed: int, *parts: str) -> bytes:
    return hashlib.sha256("\x00".join((str(seed), *parts)).encode()).digest()


def train_files(root: Path, provenance: str) -> list[Path]:
    return [shard.path for shard in Layout(root).provenance_shards([provenance], ["train"])]


def build_chat_version(root: Path) -> str:
    """The chat format version of the build's train rows (one for all of them, else ``MixError``)."""
    versions = {path: shard_chat_version(path) for p in PROVENANCES for path in train_files(root, p)}
    unrecorded = sorted(str(path.relative_to(root)) for path, v in versions.items() if not v)
    if unrecorded:
        raise MixError(
            f"{root}: {', '.join(unrecorded[:3])} record(s) no chat format version (written by an older "
            "build?); rebuild the dataset (medinjection build ... --overwrite)"
        )
    found = sorted(set(versions.values()))
    if len(found) != 1:
        raise MixError(f"{root}: the train shards mix chat format versions {found}; rebuild the dataset")
    return found[0]


def read_train_index(root: Path) -> dict[str, pa.Table]:
    """``id``, ``type`` and ``source`` of every train item, by provenance (absent provenances: empty)."""
    index = {}
    for provenance in PROVENANCES:
        files = train_files(root, provenance)
        tables = [pq.read_table(path, columns=["id", "type", "source"]) for path in files]
        index[provenance] = (
            pa.concat_tables(tables)
            if tables
            else pa.table(
                {
                    "id": pa.array([], pa.string()),
                    "type": pa.array([], pa.string()),
                    "source": pa.array([], pa.string()),
                }
            )
        )
    return index


def available_by_type(
    index: dict[str, pa.Table], types: tuple[str, ...] = TYPES
) -> dict[str, dict[str, int]]:
    """Train items by provenance and type; types outside ``types`` count as none."""
    available = {}
    for provenance, table in index.items():
        counts = Counter(table.column("type").to_pylist())
        available[provenance] = {t: counts.get(t, 0) if t in types else 0 for t in TYPES}
    return available


def feasible_size(
    requested: int, available: dict[str, dict[str, int]], allow_smaller: bool, types: tuple[str, ...] = TYPES
) -> int:
    """The mix size to use; a single-provenance mix needs ``size`` items of its provenance (of the
    chosen ``types``; ``available`` counts only those)."""
    of_types = f"train items of type {'/'.join(types)}"
    totals = {p: sum(available[p].values()) for p in PROVENANCES}
    empty = [p for p, n in totals.items() if n == 0]
    if empty:
        raise MixError(
            f"no {of_types} of provenance {', '.join(empty)} in the build; the seven mixes need them "
            f"in all of {', '.join(PROVENANCES)} (found: "
            + ", ".join(f"{p} {n}" for p, n in totals.items())
            + ")"
        )
    short = {p: n for p, n in totals.items() if n < requested}
    if not short:
        return requested
    largest = min(totals.values())
    if not allow_smaller:
        lines = [
            f"provenance {p!r} has {n} {of_types} but needs {requested} (mix {single!r} is all {p})"
            for p, n in short.items()
            for single in [next(m for m, ps in MIXES.items() if ps == (p,))]
        ]
        raise MixError(
            "too few train items for mixes of "
            + f"{requested}:\n  "
            + "\n  ".join(lines)
            + f"\nthe largest feasible size is {largest}; pass --allow-smaller to build mixes of that size"
        )
    return largest


def select(
    index: dict[str, pa.Table], size: int, seed: int, types: tuple[str, ...] = TYPES
) -> dict[str, dict[str, list[str]]]:
    """The ids of every mix, by provenance (each list in the mix's seeded order within the provenance)."""
    ordered: dict[tuple[str, str], list[str]] = {}
    for provenance, table in index.items():
        ids, kinds = table.column("id").to_pylist(), table.column("type").to_pylist()
        for t in TYPES:
            chosen = [i for i, kind in zip(ids, kinds, strict=True) if kind == t]
            ordered[(provenance, t)] = sorted(chosen, key=lambda i: (rank(seed, i), i))
    counts = available_by_type(index, types)
    plan: dict[str, dict[str, list[str]]] = {}
    for mix, provenances in MIXES.items():
        plan[mix] = {}
        for provenance, share in provenance_shares(size, provenances).items():
            quotas = largest_remainder(share, counts[provenance])
            plan[mix][provenance] = [i for t in TYPES for i in ordered[(provenance, t)][: quotas[t]]]
    return plan


def gather_rows(root: Path, provenance: str, wanted: set[str], chat_version: str) -> pa.Table:
    """Full rows of the wanted train ids of one provenance, read batch by batch (bounded memory)."""
    schema = shard_schema(chat_version)
    value_set = pa.array(sorted(wanted), pa.string())
    parts = []
    for path in train_files(root, provenance):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=20_000):
            table = pa.Table.from_batches([batch])
            parts.append(table.filter(pc.is_in(table.column("id"), value_set=value_set)))
    table = pa.concat_tables(parts).cast(schema) if parts else schema.empty_table()
    found = set(table.column("id").to_pylist())
    if found != wanted or table.num_rows != len(wanted):
        raise MixError(
            f"{provenance}: {len(wanted - found)} selected ids not found (or an id repeats) in the train files"
        )
    return table


def write_mix(root: Path, mix: str, table: pa.Table) -> dict[str, str]:
    layout = Layout(root)
    folder = layout.config_dir(mix)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    checksums = {}
    for shard, start in enumerate(range(0, max(table.num_rows, 1), ROWS_PER_FILE)):
        path = layout.shard_path(mix, "train", shard)
        pq.write_table(table.slice(start, ROWS_PER_FILE), path)
        checksums[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return checksums


def count_table(table: pa.Table) -> dict:
    rows = table.select(["provenance", "type", "source"]).to_pylist()
    by_prov_type: dict[str, dict[str, int]] = {}
    for (provenance, t), n in sorted(Counter((r["provenance"], r["type"]) for r in rows).items()):
        by_prov_type.setdefault(provenance, {})[t] = n
    return {
        "train": table.num_rows,
        "by_provenance": dict(sorted(Counter(r["provenance"] for r in rows).items())),
        "by_type": dict(sorted(Counter(r["type"] for r in rows).items())),
        "by_provenance_type": by_prov_type,
        "by_source": dict(sorted(Counter(r["source"] for r in rows).items())),
    }


def build_mixes(
    root: str | Path,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    allow_smaller: bool = False,
    write_card: bool = True,
    types: str | list[str] | tuple[str, ...] = DEFAULT_TYPES,
) -> MixResult:
    """Write the seven mixes into the dataset folder ``root`` and ``mixes.json``; refresh the cards.

    ``types``: the task types of the mixes, a preset (``paper``: MCQ + MCQU, the default; ``all``)
    or a list of types. Raises ``MixError`` when a provenance has fewer train items of those types
    than ``size`` (unless ``allow_smaller``: then the size is the largest feasible one, reported in
    the result).
    """
    root = Path(root)
    chosen = parse_types(types)
    if size < 1:
        raise MixError(f"the mix size must be positive, got {size}")
    layout = Layout(root)
    if not layout.is_built():
        raise MixError(f"{root}: no data/ folder; build the dataset first (medinjection build)")
    try:
        chat_version = build_chat_version(root)
        index = read_train_index(root)
    except LayoutError as err:
        raise MixError(str(err)) from None
    available = available_by_type(index, chosen)
    used = feasible_size(size, available, allow_smaller, chosen)
    plan = select(index, used, seed, chosen)
    report = {
        "seed": seed,
        "requested_size": size,
        "size": used,
        "allow_smaller": allow_smaller,
        "types": list(chosen),
        "types_preset": preset_name(chosen),
        "chat_version": chat_version,
        "rule": RULE,
        "available_train": available_by_type(index),
        "mixes": {},
    }
    del index
    tables: dict[str, pa.Table] = {}
    for provenance in PROVENANCES:
        wanted = {i for mix in plan.values() for i in mix.get(provenance, [])}
        tables[provenance] = gather_rows(root, provenance, wanted, chat_version)
    for mix, by_provenance in plan.items():
        parts = []
        for provenance, ids in by_provenance.items():
            table = tables[provenance]
            parts.append(table.filter(pc.is_in(table.column("id"), value_set=pa.array(ids, pa.string()))))
        table = pa.concat_tables(parts)
        ids = table.column("id").to_pylist()
        order = sorted(range(len(ids)), key=lambda k: rank(seed, mix, ids[k]))
        table = table.take(pa.array(order, pa.int64()))
        files = write_mix(root, mix, table)
        report["mixes"][mix] = {"provenances": list(MIXES[mix]), **count_table(table), "files": files}
    layout.write_json(layout.mixes_path, report)
    if write_card:
        write_cards(root)
    return MixResult(root=root, size=used, requested_size=size, seed=seed, report=report)


def mix_command(
    folder: Annotated[Path, typer.Argument(help="A built dataset folder (medinjection build).")],
    size: Annotated[int, typer.Option(help="Train examples in every mix.")] = DEFAULT_SIZE,
    seed: Annotated[int, typer.Option(help="Seed of the selection and of the row order.")] = 0,
    allow_smaller: Annotated[
        bool,
        typer.Option("--allow-smaller", help="Use the largest feasible size when a provenance is short."),
    ] = False,
    types: Annotated[
        str,
        typer.Option(
            "--types",
            help="Task types of the mixes: a preset (paper = MCQ,MCQU, the paper's training data; "
            "all = MCQ,MCQU,OEQ) or a comma-separated list of MCQ, MCQU, OEQ.",
        ),
    ] = DEFAULT_TYPES,
) -> None:
    """Write the seven training mixes (nat, trad, syn, nat_trad, nat_syn, trad_syn, all) as configs."""
    try:
        result = build_mixes(
            folder, size=size, seed=seed, allow_smaller=allow_smaller, write_card=False, types=types
        )
    except MixError as err:
        fail(str(err))
    if result.size != result.requested_size:
        typer.echo(
            f"note: mixes of {result.size} train examples, not {result.requested_size} (--allow-smaller)"
        )
    for mix, info in result.report["mixes"].items():
        shares = ", ".join(
            f"{p} {info['by_provenance'][p]}" for p in PROVENANCES if p in info["by_provenance"]
        )
        typer.echo(f"  {mix:9} {info['train']} ({shares})")
    kinds = "+".join(result.report["types"])
    typer.echo(
        f"wrote {len(MIXES)} mixes of {result.size} train examples ({kinds}, seed {result.seed}, "
        f"chat format {result.report['chat_version']}) into {result.root}"
    )
    try:
        paths = write_cards(folder)
    except CardError as err:
        typer.secho(
            f"error: the mixes are written but the cards are not: {err}", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(1) from None
    typer.echo("wrote the cards: " + ", ".join(str(p.relative_to(folder)) for p in paths))
