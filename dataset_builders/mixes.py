"""Training mixes, declared in a mix file and written as configs of the built dataset folder.

A mix file (``dataset_builders/configs/mixes/*.yaml``, or any path) is a YAML list of mixes: a
``name``, provenance ``weights`` (``{native: 1, translated: 3}``), a ``size`` or a list of sizes, the
task ``types``, optional ``origins`` to keep or leave out, an optional ``min_quality`` (the quality
screen's 1-5 score a translated or synthetic item needs) and a ``seed`` (``medinjection.core.config.
MixSpec``). The paper's seven mixes are the bundled file ``paper`` (``MIXES`` below): equal shares,
33,493 multiple-choice train examples each. Only train items are drawn; the validation and test
splits of every mix are the shared, provenance-labelled evaluation sets of the build (the card points
the mix configs at those files; nothing is copied).

Rules, all deterministic for a seed:

* provenance shares of a size: proportional to the weights, by largest remainder, ties to the
  provenance first in the order native, translated, synthetic (equal weights: ``size // k`` each and
  the remainder one each to the first ones: ``all`` at 33,493 = 11,165 + 11,164 + 11,164);
* type quotas inside a share: largest remainder over the provenance's eligible train items by type
  (ties go to the type first in MCQ, MCQU, OEQ), so each quota is within one example of its
  proportion;
* which items: inside each (provenance, type), the eligible items with the smallest
  ``sha256(f"{seed}\\0{id}")``: independent of how the build sharded its files, and the same seeded
  order for every mix of a seed, so mixes share items as much as their quotas allow;
* several sizes are **nested**: the largest size is drawn by the rules above; each smaller one takes
  its provenance shares from the next larger set's provenance counts and its type quotas from that
  set's type counts (largest remainder again, which can only lower a quota), then the first items of
  the same ranking: every smaller set lies inside every larger one, so a learning curve changes one
  thing at a time;
* row order of a mix: ``sha256(f"{seed}\\0{config}\\0{id}")``, a seeded shuffle.

Output: ``data/<config>/train-NNNNN.parquet`` (all columns, the schema's features embedded), one
config per (mix, size): ``<name>``, or ``<name>_<size>`` for each of several sizes; and ``mixes.json``
(per config: the mix's weights, sizes, seed, types, filters, counts by provenance, type, origin and
source, file checksums; ``chat_version``, read from the build's shards, which training records).
Every path and the manifest go through ``Layout``.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medinjection.cards.dataset_card import write_cards
from medinjection.core import config
from medinjection.core.config import TYPE_PRESETS, MixFileError, MixSpec, load_mix_file, preset_name
from medinjection.core.layout import Layout, LayoutError, shard_chat_version, shard_schema
from medinjection.core.schema import PROVENANCES, TYPES

PAPER_MIX_FILE = "paper"
PAPER_SPECS: list[MixSpec] = load_mix_file(PAPER_MIX_FILE)
MIXES: dict[str, tuple[str, ...]] = {spec.name: tuple(spec.weights) for spec in PAPER_SPECS}
"""The paper's seven mixes and their provenances, in the paper's order (from the bundled mix file)."""
DEFAULT_SIZE = PAPER_SPECS[0].sizes[0]
ROWS_PER_FILE = 100_000
DEFAULT_TYPES = "paper"
FORMAT = 2
RULE = (
    "provenance shares proportional to the weights (largest remainder; ties to native, translated, "
    "synthetic in that order); type quotas by largest remainder within each share; items with the "
    "smallest sha256(seed, id) per (provenance, type); smaller sizes of a mix nested in the larger "
    "ones; train split only"
)
INDEX_COLUMNS = ("id", "type", "source", "origin")


class MixError(ValueError):
    """The mixes cannot be built as asked (too few train items, a missing provenance)."""


__all__ = [
    "DEFAULT_SIZE",
    "MIXES",
    "TYPE_PRESETS",
    "MixError",
    "MixResult",
    "build_mixes",
    "parse_types",
    "preset_name",
]


@dataclass
class MixResult:
    root: Path
    size: int
    requested_size: int
    seed: int
    report: dict


# ---- apportionment -------------------------------------------------------------------------------


def apportion(total: int, weights: dict[str, Fraction | int | float]) -> dict[str, int]:
    """Split ``total`` in proportion to ``weights`` by largest remainder (ties to the earlier key)."""
    exact_weights = {
        key: Fraction(str(w)) if isinstance(w, float) else Fraction(w) for key, w in weights.items()
    }
    whole = sum(exact_weights.values())
    if whole == 0:
        return {key: 0 for key in weights}
    exact = {key: total * w / whole for key, w in exact_weights.items()}
    quotas = {key: int(value) for key, value in exact.items()}
    keys = list(weights)
    order = sorted(keys, key=lambda key: (-(exact[key] - quotas[key]), keys.index(key)))
    for key in order[: total - sum(quotas.values())]:
        quotas[key] += 1
    return quotas


def largest_remainder(total: int, counts: dict[str, int]) -> dict[str, int]:
    """Split ``total`` in proportion to ``counts`` (largest remainder; ties to the earlier key); never
    more than a count."""
    population = sum(counts.values())
    if total > population:
        raise MixError(f"cannot draw {total} items from {population}")
    return apportion(total, counts)


def provenance_shares(size: int, provenances: tuple[str, ...]) -> dict[str, int]:
    """Equal shares of ``size``; the remainder goes one each to the first provenances (canonical order)."""
    return apportion(size, {p: 1 for p in PROVENANCES if p in provenances})


def rank(seed: int, *parts: str) -> bytes:
    return hashlib.sha256("\x00".join((str(seed), *parts)).encode()).digest()


# ---- the build's train items ---------------------------------------------------------------------


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


def _quality_scores(path: Path, rows: int) -> pa.Array:
    """The quality screen's score of each row of a shard (nulls when the column or a score is absent)."""
    schema = pq.read_schema(path)
    if "quality" not in schema.names:
        return pa.nulls(rows, pa.int32())
    column = pq.read_table(path, columns=["quality"]).column("quality").combine_chunks()
    return pc.struct_field(column, "score").cast(pa.int32())


def read_train_index(root: Path) -> dict[str, pa.Table]:
    """``id``, ``type``, ``source``, ``origin`` and the quality score of every train item, by provenance
    (absent provenances: empty)."""
    index = {}
    empty = pa.table(
        {**{c: pa.array([], pa.string()) for c in INDEX_COLUMNS}, "quality_score": pa.array([], pa.int32())}
    )
    for provenance in PROVENANCES:
        tables = []
        for path in train_files(root, provenance):
            table = pq.read_table(path, columns=list(INDEX_COLUMNS))
            tables.append(table.append_column("quality_score", _quality_scores(path, table.num_rows)))
        index[provenance] = pa.concat_tables(tables) if tables else empty
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


def eligible(spec: MixSpec, provenance: str, table: pa.Table) -> pa.Table:
    """The train items of one provenance a mix may draw: its types, origins and minimum quality."""
    keep = pc.is_in(table.column("type"), value_set=pa.array(spec.type_set, pa.string()))
    if spec.origins is not None:
        origins = sorted(set(table.column("origin").to_pylist()))
        wanted = [o for o in origins if spec.origins.keeps(o)]
        keep = pc.and_(keep, pc.is_in(table.column("origin"), value_set=pa.array(wanted, pa.string())))
    chosen = table.filter(keep)
    if spec.min_quality is not None and provenance != "native":
        scores = chosen.column("quality_score")
        unscored = scores.null_count
        if unscored:
            raise MixError(
                f"mix {spec.name!r}: min_quality {spec.min_quality} but {unscored} of its {chosen.num_rows} "
                f"eligible {provenance} train items have no quality score; run the quality screen "
                "(the build config's `quality_screen:` section) or leave min_quality out"
            )
        chosen = chosen.filter(pc.greater_equal(scores, spec.min_quality))
    return chosen


# ---- selection -----------------------------------------------------------------------------------


@dataclass
class Drawn:
    """One (mix, size): its config name and the ids drawn, by provenance (each in ranked order)."""

    spec: MixSpec
    size: int
    requested_size: int
    config: str
    ids: dict[str, list[str]]
    nested_in: str | None


def _describe(spec: MixSpec) -> str:
    """``of type MCQ/MCQU`` and the mix's filters, as the error messages name what was counted."""
    text = f"of type {'/'.join(spec.type_set)}"
    if spec.origins is not None and spec.origins.include is not None:
        text += f" from origins {', '.join(spec.origins.include)}"
    elif spec.origins is not None:
        text += f" from origins other than {', '.join(spec.origins.exclude or [])}"
    if spec.min_quality is not None:
        text += f" of quality >= {spec.min_quality} (translated, synthetic)"
    return text


def feasible(spec: MixSpec, size: int, available: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Provenances whose share of ``size`` exceeds what they have: ``{provenance: (needed, available)}``."""
    shares = apportion(size, spec.weights)
    return {p: (n, available.get(p, 0)) for p, n in shares.items() if n > available.get(p, 0)}


def largest_feasible(spec: MixSpec, available: dict[str, int]) -> int:
    """The largest size whose every provenance share fits in what the mix may draw."""
    whole = sum(Fraction(str(w)) for w in spec.weights.values())
    bound = min(int(available.get(p, 0) * whole / Fraction(str(w))) for p, w in spec.weights.items())
    size = bound + len(spec.weights)  # largest remainder can give a share one more than its floor
    while size > 0 and feasible(spec, size, available):
        size -= 1
    return size


def plan_sizes(
    specs: list[MixSpec], pools: dict[str, dict[str, pa.Table]], allow_smaller: bool
) -> dict[str, list[tuple[int, int]]]:
    """``{mix: [(size used, size asked), ...]}`` (largest first). Too few items is an error with the
    numbers, unless ``allow_smaller``: then every mix asked for a size S gets the largest size that all
    the mixes asked for S can have (the paper's mixes keep one common size), and says so."""
    available = {spec.name: {p: pools[spec.name][p].num_rows for p in spec.weights} for spec in specs}
    empty = [
        f"mix {spec.name!r}: no train items {_describe(spec)} of provenance {p}, yet its weight is {spec.weights[p]}"
        for spec in specs
        for p in spec.weights
        if available[spec.name][p] == 0
    ]
    if empty:
        raise MixError("a weight on a provenance with nothing to draw:\n  " + "\n  ".join(empty))
    short = {
        (spec.name, size): feasible(spec, size, available[spec.name])
        for spec in specs
        for size in spec.sizes
        if feasible(spec, size, available[spec.name])
    }
    if short and not allow_smaller:
        lines = []
        for (name, size), missing in short.items():
            spec = next(s for s in specs if s.name == name)
            for p, (needed, have) in missing.items():
                lines.append(
                    f"provenance {p!r} has {have} train items {_describe(spec)} but needs {needed} "
                    f"(mix {name!r} of {size}, weights {', '.join(f'{q} {w:g}' for q, w in spec.weights.items())})"
                )
            lines.append(
                f"  the largest feasible size of {name!r} is {largest_feasible(spec, available[name])}"
            )
        raise MixError(
            "too few train items:\n  "
            + "\n  ".join(lines)
            + "\npass --allow-smaller to build the largest feasible sizes instead"
        )
    by_request: dict[int, int] = {}
    for spec in specs:
        for size in spec.sizes:
            fits = min(size, largest_feasible(spec, available[spec.name]))
            by_request[size] = min(by_request.get(size, size), fits)
    plan = {}
    for spec in specs:
        used = []
        for size in spec.sizes:
            actual = by_request[size]
            if actual < 1:
                raise MixError(f"mix {spec.name!r}: no feasible size (provenances {list(spec.weights)})")
            if actual not in [u for u, _ in used]:
                used.append((actual, size))
        plan[spec.name] = used
    return plan


def draw(spec: MixSpec, pool: dict[str, pa.Table], sizes: list[tuple[int, int]]) -> list[Drawn]:
    """The ids of every size of one mix, largest first, each smaller set inside the larger one."""
    ordered: dict[tuple[str, str], list[str]] = {}
    counts: dict[str, dict[str, int]] = {}
    for provenance, table in pool.items():
        ids, kinds = table.column("id").to_pylist(), table.column("type").to_pylist()
        kind_counts = Counter(kinds)
        counts[provenance] = {t: kind_counts.get(t, 0) for t in TYPES}
        for t in TYPES:
            chosen = [i for i, kind in zip(ids, kinds, strict=True) if kind == t]
            ordered[(provenance, t)] = sorted(chosen, key=lambda i: (rank(spec.seed, i), i))
    drawn: list[Drawn] = []
    previous: dict[str, dict[str, int]] | None = None
    for size, requested in sizes:
        if previous is None:
            shares = apportion(size, spec.weights)
            quotas = {p: largest_remainder(shares[p], counts[p]) for p in shares}
        else:
            shares = largest_remainder(size, {p: sum(q.values()) for p, q in previous.items()})
            quotas = {p: largest_remainder(shares[p], previous[p]) for p in shares}
        ids = {p: [i for t in TYPES for i in ordered[(p, t)][: quotas[p][t]]] for p in quotas}
        config = spec.config_name(requested)
        drawn.append(Drawn(spec, size, requested, config, ids, drawn[-1].config if drawn else None))
        previous = quotas
    return drawn


# ---- writing -------------------------------------------------------------------------------------


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


def _counted(rows: list[dict], column: str) -> dict[str, int]:
    return dict(sorted(Counter(r[column] for r in rows).items()))


def count_table(table: pa.Table) -> dict:
    rows = table.select(["provenance", "type", "source", "origin"]).to_pylist()
    by_prov_type: dict[str, dict[str, int]] = {}
    for (provenance, t), n in sorted(Counter((r["provenance"], r["type"]) for r in rows).items()):
        by_prov_type.setdefault(provenance, {})[t] = n
    return {
        "train": table.num_rows,
        "by_provenance": _counted(rows, "provenance"),
        "by_type": _counted(rows, "type"),
        "by_provenance_type": by_prov_type,
        "by_source": _counted(rows, "source"),
        "by_origin": _counted(rows, "origin"),
    }


def _spec_entry(spec: MixSpec) -> dict:
    return {
        "mix": spec.name,
        "provenances": list(spec.weights),
        "weights": dict(spec.weights),
        "sizes": spec.sizes,
        "seed": spec.seed,
        "types": list(spec.type_set),
        "types_preset": preset_name(spec.type_set),
        "origins": spec.origins.model_dump(exclude_none=True) if spec.origins else None,
        "min_quality": spec.min_quality,
    }


def parse_types(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``medinjection.core.config.parse_types``, its errors as ``MixError``."""
    try:
        return config.parse_types(value)
    except ValueError as err:
        raise MixError(str(err)) from None


def resolve_specs(
    mixes: str | Path | None, size: int | None, seed: int | None, types: str | list[str] | None
) -> tuple[str, list[MixSpec]]:
    """The mix file's mixes (default: the paper's), with ``size``/``seed``/``types`` applied to every mix
    when given (the ``mix`` command's options)."""
    try:
        specs = load_mix_file(mixes or PAPER_MIX_FILE)
        updates = {k: v for k, v in (("size", size), ("seed", seed), ("types", types)) if v is not None}
        if updates:
            specs = [MixSpec(**{**spec.model_dump(exclude_none=True), **updates}) for spec in specs]
    except (MixFileError, ValueError) as err:
        raise MixError(str(err)) from None
    return str(mixes or PAPER_MIX_FILE), specs


def build_mixes(
    root: str | Path,
    size: int | None = None,
    seed: int | None = None,
    allow_smaller: bool = False,
    write_card: bool = True,
    types: str | list[str] | tuple[str, ...] | None = None,
    mixes: str | Path | None = None,
) -> MixResult:
    """Write the mixes of a mix file (default: the paper's seven) into the dataset folder ``root`` and
    ``mixes.json``; refresh the cards.

    ``size``, ``seed``, ``types`` replace those of every mix of the file when given (``types``: a
    preset, ``paper`` = MCQ + MCQU or ``all``, or a list). Raises ``MixError`` when a mix cannot be
    drawn (a weight on a provenance with no eligible item; a size larger than what is there, unless
    ``allow_smaller``: then the largest feasible size, reported in the result).
    """
    root = Path(root)
    if size is not None and size < 1:
        raise MixError(f"the mix size must be positive, got {size}")
    source, specs = resolve_specs(mixes, size, seed, list(parse_types(types)) if types is not None else None)
    layout = Layout(root)
    if not layout.is_built():
        raise MixError(f"{root}: no data/ folder; build the dataset first (medinjection build)")
    try:
        chat_version = build_chat_version(root)
        index = read_train_index(root)
        previous = layout.mix_names()
    except LayoutError as err:
        raise MixError(str(err)) from None
    pools = {spec.name: {p: eligible(spec, p, index[p]) for p in spec.weights} for spec in specs}
    sizes = plan_sizes(specs, pools, allow_smaller)
    drawn = [d for spec in specs for d in draw(spec, pools[spec.name], sizes[spec.name])]
    first = drawn[0]
    all_types = sorted({t for spec in specs for t in spec.type_set}, key=TYPES.index)
    report = {
        "format": FORMAT,
        "mix_file": source,
        "seed": seed if seed is not None else first.spec.seed,
        "requested_size": first.requested_size,
        "size": first.size,
        "allow_smaller": allow_smaller,
        "types": all_types,
        "types_preset": preset_name(tuple(all_types)),
        "chat_version": chat_version,
        "rule": RULE,
        "available_train": available_by_type(index),
        "mixes": {},
    }
    del index
    tables: dict[str, pa.Table] = {}
    for provenance in PROVENANCES:
        wanted = {i for d in drawn for i in d.ids.get(provenance, [])}
        if wanted:
            tables[provenance] = gather_rows(root, provenance, wanted, chat_version)
    for d in drawn:
        parts = []
        for provenance, ids in d.ids.items():
            table = tables[provenance]
            parts.append(table.filter(pc.is_in(table.column("id"), value_set=pa.array(ids, pa.string()))))
        table = pa.concat_tables(parts)
        ids = table.column("id").to_pylist()
        order = sorted(range(len(ids)), key=lambda k: rank(d.spec.seed, d.config, ids[k]))
        table = table.take(pa.array(order, pa.int64()))
        files = write_mix(root, d.config, table)
        report["mixes"][d.config] = {
            **_spec_entry(d.spec),
            "size": d.size,
            "requested_size": d.requested_size,
            "nested_in": d.nested_in,
            **count_table(table),
            "files": files,
        }
    stale = [name for name in previous if name not in report["mixes"]]
    layout.write_mixes_manifest(report)
    for name in stale:  # mixes of the previous mixes.json that this one no longer declares
        shutil.rmtree(layout.config_dir(name), ignore_errors=True)
    if write_card:
        write_cards(root)
    return MixResult(
        root=root, size=first.size, requested_size=first.requested_size, seed=report["seed"], report=report
    )
