"""The dataset cards of a built folder, filled from computed facts with huggingface_hub.

``write_cards(root)`` writes the card of the whole dataset (``README.md``: YAML metadata with the
``configs`` block that makes ``load_dataset(folder, name)`` find every provenance and mix config)
and one card per provenance subset (``cards/<provenance>.md``, the README of that subset when it
is published alone: ``medinjection publish dataset DIR --config native``).

Everything in a card is computed from the folder, found through ``Layout`` (the folder's one owner):
``stats.json`` (pipeline, steps, rejects, composition, chat format version), ``mixes.json`` (the
training mixes, their task types), the Parquet files (generation models and prompt versions, split
sizes and bytes), ``rejects/`` (what each filter removed), ``dedup_report.md`` (per evaluation set:
items indexed, rows unreadable, training items removed) and ``quality/review_report.json`` when
present. The licence is computed from the sources' licences (``card_license``): theirs when they all
agree, else ``other`` with each source's licence in the card; rows that a republication (the
MedInjection-FR release) carries of an origin with a licence of its own count under that licence.
Per origin (the ``origin`` column), the card gives the items, where they came from (our own adapter
of that source, the release, or our generation) and their licence (``origin_facts``). The card of a
folder does not name the folder: a copy or a renamed folder is the same build, with the same card. The template is
``cards/templates/dataset_card.md``; a template variable without a value is an error
(``CardError``), never an empty string.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import jinja2
import jinja2.meta
import pyarrow.parquet as pq
import typer
import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from medinjection.core.console import error, fail
from medinjection.core.layout import Layout, LayoutError
from medinjection.core.schema import FEATURES, PROVENANCES, REJECT_REASONS, SPLITS, TYPES

PRETTY_NAME = "MedInjection-FR"
TEMPLATE = "dataset_card.md"
# Licences a source adapter may declare when its publisher states none: they block `publish`
# unless the user says they checked (--allow-unknown-license).
UNKNOWN_LICENSES = ("unknown", "")
TASK_CATEGORIES = ["question-answering", "multiple-choice", "text-generation"]
LANGUAGE_CREATORS = {
    "native": "expert-generated",
    "translated": "machine-generated",
    "synthetic": "machine-generated",
}


class CardError(ValueError):
    """A card cannot be written or does not validate; the message names the file and the problem."""


# ---- facts from the folder ---------------------------------------------------------------------


@contextmanager
def layout_errors() -> Iterator[None]:
    """What the folder's ``Layout`` refuses (a bad shard name, unreadable JSON) as a ``CardError``."""
    try:
        yield
    except LayoutError as err:
        raise CardError(str(err)) from None


def load_stats(root: Path) -> dict:
    with layout_errors():
        stats = Layout(root).stats()
    if stats is None:
        raise CardError(f"{root}: no stats.json; build the dataset first (medinjection build)")
    return stats


def load_mixes(root: Path) -> dict | None:
    """``mixes.json``, checked against the mix folders (a stale file is an error, not ignored)."""
    layout = Layout(root)
    with layout_errors():
        mixes = layout.mixes_manifest()
    if mixes is None:
        return None
    missing = [f for mix in mixes["mixes"].values() for f in mix["files"] if not (root / f).is_file()]
    if missing:
        raise CardError(
            f"{layout.mixes_path} lists mix files that are missing ({', '.join(missing[:3])}); "
            "rebuild the mixes (medinjection mix) or delete mixes.json"
        )
    for key in ("types", "chat_version"):
        if key not in mixes:
            raise CardError(
                f"{layout.mixes_path} has no {key!r} (written by an older medinjection mix); rebuild the mixes"
            )
    return mixes


def parquet_rows_bytes(paths: list[Path]) -> tuple[int, int, int]:
    """(rows, uncompressed bytes, file bytes) from the Parquet footers, without reading the data."""
    rows = num_bytes = size = 0
    for path in paths:
        meta = pq.ParquetFile(path).metadata
        rows += meta.num_rows
        num_bytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        size += path.stat().st_size
    return rows, num_bytes, size


def provenances_present(root: Path) -> list[str]:
    with layout_errors():
        return Layout(root).provenances_present()


def config_files(root: Path, subset: str | None) -> dict[str, dict[str, list[str]]]:
    """config → split → repo-relative paths (globs) of its files (``Layout.config_files``)."""
    with layout_errors():
        return Layout(root).config_files(subset)


def resolve(root: Path, patterns: list[str]) -> list[Path]:
    layout = Layout(root)
    return sorted({p for pattern in patterns for p in layout.glob(pattern)})


def configs_block(root: Path, configs: dict[str, dict[str, list[str]]]) -> list[dict]:
    return [
        {
            "config_name": name,
            "data_files": [
                {"split": split, "path": paths[0] if len(paths) == 1 else paths}
                for split, paths in splits.items()
            ],
        }
        for name, splits in configs.items()
    ]


def dataset_infos(root: Path, configs: dict[str, dict[str, list[str]]]):
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo

    infos = {}
    for name, splits in configs.items():
        split_dict = SplitDict()
        download = total = 0
        for split, patterns in splits.items():
            rows, num_bytes, size = parquet_rows_bytes(resolve(root, patterns))
            split_dict.add(SplitInfo(name=split, num_bytes=num_bytes, num_examples=rows))
            download, total = download + size, total + num_bytes
        infos[name] = DatasetInfo(
            features=FEATURES, splits=split_dict, config_name=name, download_size=download, dataset_size=total
        )
    return DatasetInfosDict(infos)


def size_category(n: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if n < limit:
            return label
    return "1M<n<10M"


def source_info(stats: dict) -> dict[str, dict[str, Any]]:
    """What the registry says about each source of the build (licence, origin, homepage, Hub id)."""
    from medinjection.dataset_builders.sources import ADAPTERS

    info = {}
    for spec in stats["build"]["sources"]:
        adapter = ADAPTERS.get(spec["adapter"])
        if adapter is None:
            raise CardError(
                f"source {spec['adapter']!r} of the build has no adapter in the registry: its licence is unknown"
            )
        entry = info.setdefault(adapter.name, {**adapter.describe(), "provenances": set()})
        entry["provenances"].add(spec.get("provenance") or adapter.provenance)
    for name in stats["sources"]:
        if name not in info:
            raise CardError(f"source {name!r} in stats.json is not among the build's declared sources")
    return info


def generation_counts(root: Path, provenances: list[str]) -> Counter:
    """(provenance, source, model, prompt_version) → rows, read from the Parquet files of the provenances."""
    counts = Counter()
    for shard in Layout(root).provenance_shards(provenances):
        table = pq.read_table(shard.path, columns=["source", "generation"])
        for row in table.to_pylist():
            gen = row["generation"]
            if gen and (gen.get("model") or gen.get("prompt_version")):
                counts[
                    (shard.config, row["source"], gen.get("model") or "", gen.get("prompt_version") or "")
                ] += 1
    return counts


def quality_screen_facts(root: Path, provenances: list[str]) -> dict:
    """The quality screen's grades by provenance and origin (empty when no record was screened): rows
    with a score 1-5, their mean, the count at each score, and the screened rows without a score."""
    groups: dict[tuple[str, str], Counter] = {}
    graders: Counter = Counter()
    for shard in Layout(root).provenance_shards(provenances):
        if "quality" not in pq.read_schema(shard.path).names:
            continue
        for row in pq.read_table(shard.path, columns=["origin", "quality"]).to_pylist():
            quality = row["quality"]
            if not quality:
                continue
            graders[(quality.get("model") or "", quality.get("prompt_version") or "")] += 1
            score = quality.get("score")
            groups.setdefault((shard.config, row["origin"]), Counter())[score if score else "none"] += 1
    if not groups:
        return {}
    rows = []
    for (provenance, origin), counts in sorted(groups.items()):
        scored = sum(counts[s] for s in range(1, 6))
        mean = sum(s * counts[s] for s in range(1, 6)) / scored if scored else None
        rows.append(
            {
                "provenance": provenance,
                "origin": origin,
                "scored": scored,
                "mean": f"{mean:.2f}" if mean is not None else "-",
                **{f"s{s}": counts[s] for s in range(1, 6)},
                "unscored": counts["none"],
            }
        )
    return {
        "rows": rows,
        "graders": ", ".join(f"`{m}` (prompt {v}, {n} records)" for (m, v), n in sorted(graders.items())),
    }


def origin_counts(root: Path, provenances: list[str]) -> Counter:
    """(origin, provenance, source, generated, split) → rows, read from the provenance shards."""
    counts = Counter()
    for shard in Layout(root).provenance_shards(provenances):
        table = pq.read_table(shard.path, columns=["origin", "source", "generation"])
        for row in table.to_pylist():
            generated = bool(row["generation"] and row["generation"].get("model"))
            counts[(row["origin"] or "", shard.config, row["source"], generated, shard.split)] += 1
    return counts


def origin_license(source: str, origin: str, sources: dict[str, dict[str, Any]]) -> str:
    """The licence of a source's rows of ``origin`` (a republication knows each origin's own)."""
    from medinjection.dataset_builders.sources import ADAPTERS

    adapter = ADAPTERS.get(source)
    if adapter is None:
        return str(sources.get(source, {}).get("license", "unknown"))
    return adapter.origin_license(origin)


def origin_facts(root: Path, provenances: list[str], sources: dict[str, dict[str, Any]], stats: dict):
    """The card's table by origin (items, where they came from, licence), the release rows left out
    by the ``origins`` option, and the licences of republished origins (name → licence) that differ
    from their republisher's."""
    from medinjection.dataset_builders.sources import ADAPTERS

    counts = origin_counts(root, provenances)
    rows, extra_licences = [], {}
    for origin, provenance, source, generated in sorted({key[:4] for key in counts}):
        adapter = ADAPTERS.get(source)
        licence = origin_license(source, origin, sources)
        if adapter is not None and adapter.republished:
            via = f"the MedInjection-FR release (`{source}`)"
            if licence != adapter.license:
                extra_licences[f"{origin} (via {source})"] = {"license": licence}
        elif generated:
            via = f"generated here from `{source}`"
        else:
            via = f"own adapter (`{source}`)"
        split_counts = {
            split: counts.get((origin, provenance, source, generated, split), 0) for split in SPLITS
        }
        rows.append(
            {
                "origin": origin or "(none)",
                "provenance": provenance,
                "via": via,
                "license": licence,
                **split_counts,
                "total": sum(split_counts.values()),
            }
        )
    left_out = [
        f"{', '.join(f'{origin} {n:,}' for origin, n in report['origins']['left_out'].items())} "
        f"({report['provenance']} rows of `{report['source']}`"
        f"{' ' + report['hub_id'] if report.get('hub_id') else ''})"
        for report in stats.get("reading", [])
        if report.get("origins", {}).get("left_out") and report["provenance"] in provenances
    ]
    return rows, "; ".join(left_out), extra_licences


def count_rejects(root: Path) -> Counter:
    """Rejects by (step, reason, source, provenance), read from ``rejects/``."""
    counts = Counter()
    for row in Layout(root).iter_rejects():
        counts[(row["step"], row["reason"], row["source"], row.get("provenance") or "")] += 1
    return counts


def card_license(sources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The card's licence from the licences of its sources: theirs when they all agree, else
    ``other`` (each source's licence is then in the card); ``unknown`` lists the sources whose
    publisher states no licence (they block ``publish`` unless the user checked them)."""
    by_source = {name: str(info["license"]).lower() for name, info in sorted(sources.items())}
    distinct = sorted(set(by_source.values()))
    if not distinct:
        raise CardError("no source to take a licence from")
    return {
        "license": distinct[0] if len(distinct) == 1 else "other",
        "by_source": by_source,
        "distinct": distinct,
        "unknown": sorted(name for name, value in by_source.items() if value in UNKNOWN_LICENSES),
    }


def review_facts(root: Path, subset: str | None) -> dict | None:
    layout = Layout(root)
    with layout_errors():
        report = layout.read_json(layout.review_report_path)
    if report is None:
        return None

    def pct(value):
        return "n/a" if value is None else f"{100 * value:.1f}%"

    def row(group, value):
        low, high = value.get("ci95", (None, None))
        return {
            "group": group,
            "reviewed": value["reviewed"],
            "incorrect": value["incorrect"],
            "rate": pct(value.get("rate")),
            "ci": f"{pct(low)} – {pct(high)}",
        }

    rates = report["error_rate"]
    rows = [] if subset else [row("all", rates["overall"])]
    rows += [
        row(f"provenance: {k}", v) for k, v in rates["by_provenance"].items() if not subset or k == subset
    ]
    rows += [row(f"source: {k}", v) for k, v in rates["by_source"].items()]
    alpha = report.get("agreement", {}).get("krippendorff_alpha_nominal")
    screen = report.get("screen_agreement") or {}
    screen_rows = [
        {
            "rule": r["rule"],
            "flagged": r["flagged"],
            "hits": r["flagged_and_wrong"],
            "precision": f"{pct(r['precision'])} [{pct(r['precision_ci95'][0])}, {pct(r['precision_ci95'][1])}]",
            "recall": f"{pct(r['recall'])} [{pct(r['recall_ci95'][0])}, {pct(r['recall_ci95'][1])}]",
        }
        for r in screen.get("thresholds", [])
    ]
    return {
        "screen_rows": screen_rows,
        "screen_n": screen.get("reviewed_with_score", 0),
        "annotators": len(report.get("annotators", [])),
        "reviewed": report["records"]["reviewed"],
        "total": report["records"]["total"],
        "overall": f"{rates['overall']['incorrect']} of {rates['overall']['reviewed']} ({pct(rates['overall'].get('rate'))})",
        "rows": rows,
        "alpha": "n/a" if alpha is None else f"{alpha:.3f}",
        "excluded": len(report.get("excluded", [])),
    }


def quote_report(path: Path) -> str:
    """A markdown report of the folder, its headings pushed two levels down to nest in the card."""
    if not path.exists():
        return ""
    lines = path.read_text(encoding="utf-8").strip().splitlines()
    return "\n".join("##" + line if line.startswith("#") else line for line in lines)


def split_row(counts: Counter, key) -> dict[str, int]:
    row = {split: counts.get((*key, split), 0) for split in SPLITS}
    row["total"] = sum(row.values())
    return row


def card_facts(root: Path, subset: str | None = None, repo_id: str | None = None) -> dict[str, Any]:
    """Every value the template needs, computed from the folder (``subset``: one provenance;
    ``repo_id``: the Hub repo the card is published to, else the folder's name is shown)."""
    stats = load_stats(root)
    mixes = None if subset else load_mixes(root)
    sources = source_info(stats)
    composition = [c for c in stats["composition"] if not subset or c["provenance"] == subset]
    if subset and not composition:
        raise CardError(f"{root}: no records of provenance {subset!r} in stats.json")
    provenances = [p for p in PROVENANCES if any(c["provenance"] == p for c in composition)]
    if not provenances:
        raise CardError(f"{root}: stats.json counts no records; nothing to describe")
    by_prov, by_src, by_type = Counter(), Counter(), Counter()
    for c in composition:
        by_prov[(c["provenance"], c["split"])] += c["count"]
        by_src[(c["source"], c["provenance"], c["split"])] += c["count"]
        by_type[(c["provenance"], c["type"], c["split"])] += c["count"]
    source_rows = sorted({(c["source"], c["provenance"]) for c in composition})
    subset_sources = sorted({s for s, _ in source_rows})
    if subset:
        subset_sources = sorted(
            set(subset_sources) | {s for s, i in sources.items() if subset in i["provenances"]}
        )

    def in_scope(source: str, provenance: str) -> bool:
        return not subset or provenance == subset or (not provenance and source in subset_sources)

    rejects = Counter()
    rejects_by_source = Counter()
    for (step, reason, source, provenance), n in count_rejects(root).items():
        if in_scope(source, provenance):
            rejects[(step, reason)] += n
            rejects_by_source[(source, provenance or "?", reason)] += n
    configs = config_files(root, subset)
    config_rows = []
    for name, splits in configs.items():
        sizes = {
            split: parquet_rows_bytes(resolve(root, splits[split]))[0] if split in splits else 0
            for split in SPLITS
        }
        kind = "provenance subset" if name in PROVENANCES else "training mix"
        config_rows.append({"name": name, "kind": kind, **sizes})
    step_names = [s["step"] for s in stats["steps"]]
    lang = stats["build"]["filters"]["language"]
    build = {
        "name": stats["build"]["name"],
        "seed": stats["build"]["seed"],
        "priority": " > ".join(stats["build"]["provenance_priority"]),
        "validation": stats["build"]["split"]["validation"],
        "test": stats["build"]["split"]["test"],
        "languages": ", ".join(lang["languages"]),
        "threshold": lang["threshold"],
        "backend": lang["backend"],
        "filters_yaml": yaml.safe_dump(stats["build"]["filters"], sort_keys=False, allow_unicode=True),
    }
    dedup_report = Layout(root).dedup_report_path
    scope = f"{subset} subset" if subset else "dataset"
    mix_facts = None
    if mixes:
        rows = []
        for mix, info in mixes["mixes"].items():
            weights = info.get("weights") or {p: 1 for p in info.get("provenances", [])}
            filters = []
            if info.get("origins"):
                kind, names = next(iter(info["origins"].items()))
                filters.append(f"origins {'only' if kind == 'include' else 'but'} {', '.join(names)}")
            if info.get("min_quality") is not None:
                filters.append(f"quality >= {info['min_quality']}")
            if info.get("nested_in"):
                filters.append(f"inside `{info['nested_in']}`")
            row = {
                "mix": mix,
                "train": info["train"],
                "weights": " : ".join(f"{p} {w:g}" for p, w in weights.items()),
                "origins": ", ".join(f"{o} {n}" for o, n in (info.get("by_origin") or {}).items()) or "-",
                "filters": "; ".join(filters) or "-",
            }
            row.update({p: info["by_provenance"].get(p, 0) for p in PROVENANCES})
            row.update({t: info["by_type"].get(t, 0) for t in TYPES})
            rows.append(row)
        mix_facts = {key: mixes[key] for key in ("size", "requested_size", "seed", "rule", "chat_version")}
        mix_file = mixes.get("mix_file", "paper")
        mix_facts |= {
            "rows": rows,
            "mix_file": mix_file,
            "paper": mix_file == "paper",
            "types": ", ".join(mixes["types"]),
            "preset": mixes.get("types_preset") or "",
            "paper_types": list(mixes["types"]) == ["MCQ", "MCQU"],
            "left_out": ", ".join(t for t in TYPES if t not in mixes["types"]),
        }
    records = sum(by_prov.values())
    chat_version = stats["build"].get("chat_version")
    if chat_version is None and records:
        raise CardError(
            f"{root}: stats.json records no chat format version (built by an older medinjection); rebuild"
        )
    by_origin, origins_left_out, origin_licences = origin_facts(root, provenances, sources, stats)
    licence = card_license({**{s: sources[s] for s in subset_sources}, **origin_licences})
    title = f"{PRETTY_NAME} — {subset} subset" if subset else PRETTY_NAME
    summary = (
        f"The {subset} records of MedInjection-FR, a French biomedical instruction dataset built from "
        "three provenances (native French, translated from English by LLMs, synthetic from LLMs)."
        if subset
        else "MedInjection-FR: French biomedical instruction data from three provenances — native (written in "
        "French by people), translated (English sources translated by LLMs) and synthetic (generated by "
        "LLMs from French biomedical text) — for instruction tuning and evaluation of language models."
    )
    return {
        "title": title,
        "summary": summary,
        "subset": subset or "",
        "scope": scope,
        # never the folder's name: a copy of a build is the same build, with the same card
        "load_id": repo_id or ".",
        "load_note": "" if repo_id else "  # from inside this folder; once published, its Hub repo id",
        "example_config": subset
        or (
            ("nat_trad" if "nat_trad" in mixes["mixes"] else next(iter(mixes["mixes"])))
            if mixes
            else provenances[0]
        ),
        "records": records,
        "config_rows": config_rows,
        "by_provenance": [{"provenance": p, **split_row(by_prov, (p,))} for p in provenances],
        "by_source": [
            {
                "source": s,
                "origin": sources[s]["origin"],
                "provenance": p,
                "license": sources[s]["license"],
                **split_row(by_src, (s, p)),
            }
            for s, p in source_rows
        ],
        "by_origin": by_origin,
        "origins_left_out": origins_left_out,
        "by_type": [
            {"provenance": p, "type": t, **split_row(by_type, (p, t))}
            for p in provenances
            for t in TYPES
            if split_row(by_type, (p, t))["total"]
        ],
        "mixes": mix_facts,
        "build": build,
        "steps": [
            {**{k: s[k] for k in ("stage", "step", "in", "kept")}, "rejected": sum(s["rejected"].values())}
            for s in stats["steps"]
        ],
        "rejects": [
            {"step": step, "reason": reason, "description": REJECT_REASONS.get(reason, reason), "count": n}
            for (step, reason), n in sorted(
                rejects.items(),
                key=lambda item: (
                    step_names.index(item[0][0]) if item[0][0] in step_names else len(step_names),
                    item[0],
                ),
            )
        ],
        "rejects_by_source": [
            {"source": s, "provenance": p, "reason": r, "count": n}
            for (s, p, r), n in sorted(rejects_by_source.items())
        ],
        "dedup_report": quote_report(dedup_report),
        "generation": [
            {
                "provenance": p,
                "source": s,
                "model": m or "(none)",
                "prompt_version": v or "(none)",
                "count": n,
            }
            for (p, s, m, v), n in sorted(generation_counts(root, provenances).items())
        ],
        "quality_screen": quality_screen_facts(root, provenances),
        "translation_checks": [
            {
                "model": check["backend"]["model"],
                "prompt_version": check["prompt_version"],
                "pairs": f"{check['pairs']['name']} ({check['n']} pairs)",
                "bleu": f"{check['bleu']['score']:.2f}",
                "chrf": f"{check['chrf']['score']:.2f}",
                "comet": "-" if check["comet"].get("score") is None else f"{check['comet']['score']:.4f}",
                "signature": check["bleu"]["signature"],
            }
            for check in stats["build"].get("translation_checks") or []
        ],
        "review": review_facts(root, subset),
        "licenses": [
            {"source": s, "license": sources[s]["license"], "homepage": sources[s]["homepage"]}
            for s in subset_sources
        ],
        "license": licence["license"],
        "license_sources": ", ".join(f"{s} ({v})" for s, v in licence["by_source"].items()),
        "unknown_licenses": ", ".join(licence["unknown"]),
        "chat_version": chat_version or "none (no record written)",
        "_provenances": provenances,
        "_configs": configs,
        "_sources": {s: sources[s] for s in subset_sources},
        "_license": licence,
    }


# ---- the card ----------------------------------------------------------------------------------


def card_data(root: Path, facts: dict[str, Any]) -> DatasetCardData:
    provenances = facts["_provenances"]
    sources = facts["_sources"]
    tags = ["medical", "biology", "french", "instruction-tuning", "question-answering", *provenances]
    source_datasets = sorted({f"extended|{s['hub_id']}" for s in sources.values() if s.get("hub_id")})
    if "synthetic" in provenances or any(not s.get("hub_id") for s in sources.values()):
        source_datasets = ["original", *source_datasets]
    data = DatasetCardData(
        pretty_name=facts["title"],
        license=facts["_license"]["license"],
        language=["fr"],
        multilinguality="monolingual",
        language_creators=sorted({LANGUAGE_CREATORS[p] for p in provenances}),
        task_categories=TASK_CATEGORIES,
        size_categories=[size_category(facts["records"])],
        tags=tags,
        source_datasets=source_datasets,
        configs=configs_block(root, facts["_configs"]),
    )
    dataset_infos(root, facts["_configs"]).to_dataset_card_data(data)
    return data


def template_path() -> Path:
    return Path(str(resources.files("medinjection.cards") / "templates" / TEMPLATE))


def check_template_variables(template_text: str, provided: set[str]) -> None:
    undeclared = jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(template_text))
    missing = sorted(undeclared - provided)
    if missing:
        raise CardError(f"{TEMPLATE}: template variable(s) without a value: {', '.join(missing)}")


def render_card(root: str | Path, subset: str | None = None, repo_id: str | None = None) -> DatasetCard:
    """The card of the whole folder, or of one provenance ``subset``, as a ``DatasetCard``
    (``repo_id``: the Hub repo it is published to, used in the loading example)."""
    root = Path(root)
    if subset is not None and subset not in PROVENANCES:
        raise CardError(f"unknown subset {subset!r}; the subsets are {list(PROVENANCES)}")
    facts = card_facts(root, subset, repo_id)
    data = card_data(root, facts)
    kwargs = {k: v for k, v in facts.items() if not k.startswith("_")}
    text = template_path().read_text(encoding="utf-8")
    check_template_variables(text, {"card_data", *kwargs, *data.to_dict()})
    undefined = [k for k, v in kwargs.items() if v is None and k not in ("mixes", "review")]
    if undefined:
        raise CardError(f"card values without a value: {undefined}")
    card = DatasetCard.from_template(data, template_str=text, **kwargs)
    leftover = [marker for marker in ("{{", "}}", "{%", "%}") if marker in card.text]
    if leftover:
        raise CardError(f"the rendered card still holds template markers {leftover}")
    return card


def card_path(root: Path, subset: str | None) -> Path:
    return Layout(root).card_path(subset)


def write_cards(root: str | Path) -> list[Path]:
    """Write ``README.md`` (the whole dataset) and ``cards/<provenance>.md`` (each subset); return the paths."""
    root = Path(root)
    present = provenances_present(root)
    for stale in Layout(root).subset_cards():
        if stale.stem not in present:
            stale.unlink()
    paths = []
    for subset in [None, *present]:
        card = render_card(root, subset)
        path = card_path(root, subset)
        path.parent.mkdir(parents=True, exist_ok=True)
        card.save(path)
        paths.append(path)
    return paths


def write_dataset_readme(root: Path, stats: dict | None = None) -> DatasetCard:
    """The entry point of the build's ``finalize`` step (``stats`` is already in ``stats.json``).

    A ``mixes.json`` whose mix files are gone (``build --overwrite`` removed ``data/``) belongs to the
    previous build: it is removed here, and ``medinjection mix`` writes the mixes of the new one."""
    root = Path(root)
    try:
        load_mixes(root)
    except CardError:
        Layout(root).mixes_path.unlink()
    write_cards(root)
    return DatasetCard.load(card_path(root, None))


def check_cards(root: str | Path) -> list[str]:
    """Problems with the folder's cards (empty: they validate): missing or stale files, metadata that
    does not round-trip through ``DatasetCardData``, a licence or language other than computed,
    configs whose files do not exist."""
    root = Path(root)
    problems = []
    for subset in [None, *provenances_present(root)]:
        path = card_path(root, subset)
        if not path.exists():
            problems.append(f"{path.relative_to(root)}: missing (run: medinjection card {root})")
            continue
        try:
            card = DatasetCard.load(path)
        except Exception as err:  # the YAML header cannot be parsed
            problems.append(f"{path.relative_to(root)}: not a valid card ({err})")
            continue
        meta = card.data.to_dict()
        if DatasetCardData(**meta).to_dict() != meta:
            problems.append(f"{path.relative_to(root)}: metadata does not round-trip through DatasetCardData")
        try:
            expected_card = render_card(root, subset)
        except CardError as err:
            problems.append(f"{path.relative_to(root)}: cannot be regenerated ({err})")
            continue
        # the licence is computed from the sources: a card that claims another one is wrong
        for key, expected in (("license", expected_card.data.license), ("language", ["fr"])):
            if meta.get(key) != expected:
                problems.append(
                    f"{path.relative_to(root)}: {key} is {meta.get(key)!r}, expected {expected!r}"
                )
        for config in meta.get("configs") or []:
            for entry in config["data_files"]:
                patterns = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
                for pattern in patterns:
                    if not resolve(root, [pattern]):
                        problems.append(
                            f"{path.relative_to(root)}: config {config['config_name']!r} split {entry['split']!r}: no file matches {pattern}"
                        )
        if card.content != expected_card.content:
            problems.append(
                f"{path.relative_to(root)}: does not match the data (stale or edited); run: medinjection card {root}"
            )
    return problems


def card_command(
    folder: Annotated[Path, typer.Argument(help="A built dataset folder.")],
    check: Annotated[
        bool, typer.Option("--check", help="Only validate the cards; exit 1 on a problem.")
    ] = False,
) -> None:
    """Write (or --check) the dataset card README.md and the subset cards cards/<provenance>.md."""
    try:
        if not check:
            for path in write_cards(folder):
                typer.echo(f"wrote {path}")
        problems = check_cards(folder)
    except CardError as err:
        fail(str(err))
    for problem in problems:
        error(problem)
    if problems:
        raise typer.Exit(1)
    if check:
        typer.echo(f"cards of {folder} validate")


__all__ = ["CardError", "check_cards", "render_card", "write_cards", "write_dataset_readme"]
