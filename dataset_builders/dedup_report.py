"""What each step removed, per provenance and source, and the contamination list.

``removal_counts`` reads ``rejects/`` and counts, for every step, the removed records by provenance,
by source and by (provenance, source), per reason (written into ``stats.json`` as ``removed``);
``write_dedup_report`` writes the human-readable ``dedup_report.md`` of the dataset folder, which the
dataset card quotes: the settings, what the exact dedup, near dedup and decontamination removed per
provenance and source, per evaluation set the items indexed, the rows unreadable and the training
items removed (``stats.json``: ``contamination.eval_sets``), and the contaminated training items
with the evaluation item each matched. Every file is found through ``Layout``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from medinjection.core.layout import Layout

DEDUP_STEPS = ("exact_dedup", "near_dedup", "decontamination")
# The report lists this many contaminated items; all of them are in rejects/decontamination/.
LISTED_CONTAMINATIONS = 25


def removal_counts(layout: Layout) -> tuple[dict, Counter, list[dict]]:
    """``removed`` ({step: {"by_provenance": {p: {reason: n}}, "by_source": {s: {reason: n}},
    "by_provenance_source": {p: {s: {reason: n}}}}}), contaminations by evaluation set, and the
    first ``LISTED_CONTAMINATIONS`` contaminated items (by id)."""
    by_prov: dict = defaultdict(lambda: defaultdict(Counter))
    by_source: dict = defaultdict(lambda: defaultdict(Counter))
    by_both: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(Counter)))
    eval_sets = _eval_sets(layout)
    contaminated = Counter()
    listed = []
    for row in layout.iter_rejects():
        step, prov, source, reason = row["step"], row["provenance"], row["source"], row["reason"]
        by_prov[step][prov][reason] += 1
        by_source[step][source][reason] += 1
        by_both[step][prov][source][reason] += 1
        if reason == "contamination":
            eval_set = eval_sets.get(row["kept_id"], "unknown set")
            contaminated[eval_set] += 1
            listed.append(
                {
                    "id": row["id"],
                    "provenance": prov,
                    "source": source,
                    "split": row["split"],
                    "eval_id": row["kept_id"],
                    "eval_set": eval_set,
                    "detail": row["detail"],
                }
            )
    removed = {
        step: {
            "by_provenance": {p: dict(sorted(c.items())) for p, c in sorted(by_prov[step].items())},
            "by_source": {s: dict(sorted(c.items())) for s, c in sorted(by_source[step].items())},
            "by_provenance_source": {
                p: {s: dict(sorted(c.items())) for s, c in sorted(sources.items())}
                for p, sources in sorted(by_both[step].items())
            },
        }
        for step in sorted(by_prov)
    }
    return removed, contaminated, sorted(listed, key=lambda row: row["id"])[:LISTED_CONTAMINATIONS]


def _eval_sets(layout: Layout) -> dict[str, str]:
    """Evaluation item id → the name of its set (from the index stage's item list)."""
    from medinjection.dataset_builders.steps.decontaminate import ITEMS_FILE

    path = layout.work("decontamination") / ITEMS_FILE
    if not path.exists():
        return {}
    sets = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            sets.setdefault(row["id"], row["set"])
    return sets


def eval_set_summaries(layout: Layout, contaminated: Counter) -> list[dict]:
    """Per evaluation set: what the index stage read (rows, items indexed, rows unreadable) and the
    training items it removed; an empty list when decontamination did not run."""
    summaries = layout.read_json(layout.eval_sets_path) or []
    return [{**summary, "removed": contaminated.get(summary["name"], 0)} for summary in summaries]


def provenance_totals(stats: dict) -> dict:
    """{provenance: {in, kept, rejected: {reason: n}}} from the written rows and the rejects."""
    totals: dict = defaultdict(lambda: {"in": 0, "kept": 0, "rejected": Counter()})
    for row in stats["composition"]:
        totals[row["provenance"]]["kept"] += row["count"]
    for step in stats["removed"].values():
        for prov, reasons in step["by_provenance"].items():
            totals[prov]["rejected"].update(reasons)
    out = {}
    for prov, entry in sorted(totals.items()):
        rejected = dict(sorted(entry["rejected"].items()))
        out[prov or "(unknown)"] = {
            "in": entry["kept"] + sum(rejected.values()),
            "kept": entry["kept"],
            "rejected": rejected,
        }
    return out


def add_removal_stats(root: Path, stats: dict) -> dict:
    layout = Layout(root)
    removed, contaminated, listed = removal_counts(layout)
    stats["removed"] = removed
    stats["provenances"] = provenance_totals(stats)
    stats["contamination"] = {
        "by_eval_set": dict(sorted(contaminated.items())),
        "total": sum(contaminated.values()),
        "eval_sets": eval_set_summaries(layout, contaminated),
        "examples": listed,
    }
    return stats


def _table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _removed(removed: dict, step: str, prov: str, source: str | None = None) -> int:
    entry = removed.get(step, {})
    if source is None:
        return sum(entry.get("by_provenance", {}).get(prov, {}).values())
    return sum(entry.get("by_provenance_source", {}).get(prov, {}).get(source, {}).values())


def splits_text(splits: list[str] | str) -> str:
    return "all splits" if splits == "all" else ", ".join(splits)


def eval_set_rows(eval_sets: list[dict]) -> list[list[str]]:
    """The per-set table of the report (and of the card): what was read, indexed and removed."""
    return [
        [
            entry["name"],
            entry["adapter"],
            splits_text(entry["splits"]),
            f"{entry['rows']:,}",
            f"{entry['indexed']:,}",
            f"{entry['too_short']:,}",
            f"{entry['unreadable']:,}",
            f"{entry['removed']:,}",
        ]
        for entry in eval_sets
    ]


EVAL_SET_HEADER = [
    "evaluation set",
    "adapter",
    "splits",
    "rows read",
    "items indexed",
    "too short to index",
    "rows unreadable",
    "training items removed",
]


def settings_lines(config: dict) -> list[str]:
    dedup, decont = config.get("dedup", {}), config.get("decontamination", {})
    eval_sets = (["the build's own test splits"] if decont.get("own_test_splits") else []) + [
        f"{s.get('name') or s['adapter']} ({splits_text(s.get('splits', ['test']))})"
        for s in decont.get("eval_sets", [])
    ]
    return [
        f"- Kept copy of a duplicate: provenance {' > '.join(config['provenance_priority'])}, then split "
        "test > validation > train, then id.",
        f"- Near-duplicates: MinHash on word {dedup.get('n_grams')}-grams of question + sorted options "
        f"({dedup.get('num_buckets')} bands x {dedup.get('hashes_per_bucket')} rows, {dedup.get('hash_precision')}-bit); "
        f"a candidate pair is merged when its Jaccard similarity is at least {dedup.get('threshold')}, the correct "
        "options agree and so do the contexts" + ("" if dedup.get("enabled", True) else " (disabled)") + ".",
        f"- Decontamination: word {decont.get('n_grams')}-grams; a record of {', '.join(decont.get('splits', []))} is "
        f"removed when it holds at least {decont.get('threshold')} of an evaluation item's n-grams. Evaluation sets: "
        + (", ".join(eval_sets) or "none")
        + ("" if decont.get("enabled", True) else " (disabled)")
        + ".",
    ]


def write_dedup_report(root: Path, stats: dict, config: dict) -> None:
    removed = stats["removed"]
    parts = [
        "# Deduplication and decontamination report",
        "",
        f"Built from {stats['records']['in']:,} records; {stats['records']['kept']:,} kept. Every removed record is in "
        "`rejects/<step>/` with its reason and `kept_id` (the kept twin, or the evaluation item it matched).",
        "",
        "## Settings",
        "",
        *settings_lines(config),
        "",
        "## Removed per provenance and source",
        "",
    ]
    rows = []
    for prov, entry in stats["provenances"].items():
        sources = sorted(
            {s for step in removed.values() for s in step.get("by_provenance_source", {}).get(prov, {})}
            | {c["source"] for c in stats["composition"] if c["provenance"] == prov}
        )
        for source in sources:
            kept = sum(
                c["count"] for c in stats["composition"] if c["provenance"] == prov and c["source"] == source
            )
            counts = [_removed(removed, step, prov, source) for step in DEDUP_STEPS]
            other = sum(_removed(removed, step, prov, source) for step in removed if step not in DEDUP_STEPS)
            rows.append(
                [prov, source, f"{kept + sum(counts) + other:,}", f"{kept:,}", *(f"{n:,}" for n in counts)]
            )
        counts = [_removed(removed, step, prov) for step in DEDUP_STEPS]
        rows.append(
            [f"**{prov}**", "all", f"{entry['in']:,}", f"{entry['kept']:,}", *(f"{n:,}" for n in counts)]
        )
    parts.append(
        _table(
            rows,
            ["provenance", "source", "in", "kept", "exact duplicates", "near duplicates", "contaminated"],
        )
    )
    parts += [
        "",
        "`in` counts every record read; the records the other steps removed (malformed rows, non-French "
        "text, ...) are in `stats.json` and `rejects/`.",
    ]
    parts += ["", "## Contamination", ""]
    contamination = stats["contamination"]
    if contamination["eval_sets"]:
        parts += [
            "Per evaluation set: the rows read, the items indexed (items shorter than the n-gram size "
            "cannot be matched and are left to the near dedup), the rows its adapter could not read, "
            "and the training items it removed.",
            "",
            _table(eval_set_rows(contamination["eval_sets"]), EVAL_SET_HEADER),
            "",
        ]
        for entry in contamination["eval_sets"]:
            if entry["unreadable"]:
                reasons = ", ".join(f"{n:,} {r}" for r, n in entry["unreadable_by_reason"].items())
                parts.append(f"Unreadable rows of {entry['name']} ({reasons}), for example:")
                parts += ["", *(f"- {example}" for example in entry["unreadable_examples"]), ""]
    else:
        parts += ["Decontamination did not run (disabled, or no evaluation set).", ""]
    if contamination["by_eval_set"]:
        parts.append(
            _table(
                [[name, f"{n:,}"] for name, n in contamination["by_eval_set"].items()],
                ["evaluation set", "training items removed"],
            )
        )
        parts += [
            "",
            "Removed training items and the evaluation item each matched"
            + (
                f" (the first {len(contamination['examples'])} of {contamination['total']:,} by id)"
                if contamination["total"] > len(contamination["examples"])
                else ""
            )
            + ":",
            "",
        ]
        parts.append(
            _table(
                [
                    [
                        f"`{row['id']}`",
                        row["provenance"],
                        row["source"],
                        row["split"],
                        f"`{row['eval_id']}`",
                        row["eval_set"],
                        row["detail"].split(" of evaluation item")[0],
                    ]
                    for row in contamination["examples"]
                ],
                [
                    "training item",
                    "provenance",
                    "source",
                    "split",
                    "evaluation item",
                    "evaluation set",
                    "shared n-grams",
                ],
            )
        )
        parts.append(
            "\nThe full list, with the matching evaluation item of each, is `rejects/decontamination/`."
        )
    else:
        parts.append("No training item matched an evaluation item.")
    Layout(root).dedup_report_path.write_text("\n".join(parts) + "\n", encoding="utf-8")
