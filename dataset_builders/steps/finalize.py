"""The last stage: gather datatrove's per-task stats, count what was written and what was rejected,
check that nothing was lost, and write ``stats.json`` and the folder's ``README.md``.

The checks: for every step, records in = records kept + records rejected; each step's kept records
are the next step's input; the rejects on disk match the counted drops per step and reason; and for
every source, rows read = rows written + rows rejected. A build that breaks one fails here.
What the read step found worth telling (a file without rows, the release rows taken and left out
per origin) goes to ``stats.json`` too: ``warnings`` (printed in the build's summary) and ``reading``.
Every file is found through ``Layout`` (the folder's one owner); the chat format version of the
written ``messages`` is read back from the shards' footers into ``stats.json`` (``build.chat_version``).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from medinjection.core.layout import Layout, shard_chat_version
from medinjection.dataset_builders.steps.reader import read_notes


class BuildIntegrityError(RuntimeError):
    pass


def load_stage_stats(layout: Layout, stage: str) -> dict[str, Counter]:
    """Per-step counters of one stage, summed over its tasks (datatrove's ``stats/NNNNN.json``)."""
    totals: dict[str, Counter] = defaultdict(Counter)
    for path in sorted((layout.logs(stage) / "stats").glob("*.json")):
        for step in json.loads(path.read_text()):
            name = step["name"].split(": ", 1)[-1].strip()
            for key, value in step["stats"].items():
                totals[name][key] += value["total"] if isinstance(value, dict) else value
    return totals


def count_rejects(layout: Layout) -> tuple[Counter, Counter]:
    """Counts of rejects by (step, reason) and by (source, reason), read from the files."""
    by_step, by_source = Counter(), Counter()
    for row in layout.iter_rejects():
        by_step[(row["step"], row["reason"])] += 1
        by_source[(row["source"], row["reason"])] += 1
    return by_step, by_source


def count_outputs(layout: Layout) -> Counter:
    """Rows written, by (provenance, split, source, type), read from the provenance shards (the mixes
    hold copies of train rows and are never build outputs)."""
    import pyarrow.parquet as pq

    counts = Counter()
    for shard in layout.provenance_shards():
        table = pq.read_table(shard.path, columns=["provenance", "source", "type"])
        for row in table.to_pylist():
            counts[(row["provenance"], shard.split, row["source"], row["type"])] += 1
    return counts


def chat_version(layout: Layout) -> str | None:
    """The one chat format version of every written shard's ``messages`` (None: no shard written)."""
    versions = {shard.path.name: shard_chat_version(shard.path) for shard in layout.provenance_shards()}
    found = sorted({v for v in versions.values() if v})
    unrecorded = sorted(name for name, v in versions.items() if not v)
    if unrecorded or len(found) > 1:
        raise BuildIntegrityError(
            f"the shards do not agree on one chat format version: {found or 'none'}"
            + (f"; none recorded in {unrecorded[:3]}" if unrecorded else "")
        )
    return found[0] if found else None


def step_summary(name: str, stats: Counter) -> dict:
    rejected = {
        key.removeprefix("dropped_"): value
        for key, value in sorted(stats.items())
        if key.startswith("dropped_")
    }
    return {"step": name, "in": stats["total"], "kept": stats["forwarded"], "rejected": rejected}


def compute_stats(root: Path, config: dict, counted_steps: list[tuple[str, list[str]]]) -> dict:
    """``counted_steps``: (stage, step names) in pipeline order; a source's rows "in" are those of the
    first step that sees the source (so records made by a generation stage are not counted twice)."""
    layout = Layout(root)
    steps = []
    source_in = Counter()
    for stage, names in counted_steps:
        stage_stats = load_stage_stats(layout, stage)
        for name in names:
            stats = stage_stats.get(name, Counter())
            steps.append({"stage": stage, **step_summary(name, stats)})
            seen = Counter()
            for key, value in stats.items():
                if key.startswith("source:") and key.endswith(":total"):
                    seen[key.split(":")[1]] += value
            for source, value in seen.items():
                source_in.setdefault(source, value)
            if seen:  # rows enter the build here (a reader, a generation step): not fed by the previous step
                steps[-1]["entry"] = True
    rejects_by_step, rejects_by_source = count_rejects(layout)
    outputs = count_outputs(layout)
    reading = read_notes(layout.work("read"))
    kept_by_source = Counter()
    provenance_of = {}
    for (provenance, _split, source, _type), n in outputs.items():
        kept_by_source[source] += n
        provenance_of[source] = provenance
    sources = {}
    for source in sorted(set(source_in) | set(kept_by_source)):
        rejected = {reason: n for (src, reason), n in sorted(rejects_by_source.items()) if src == source}
        sources[source] = {
            "in": source_in[source],
            "kept": kept_by_source[source],
            "rejected": rejected,
        }
    composition = [
        {"provenance": p, "split": s, "source": src, "type": t, "count": n}
        for (p, s, src, t), n in sorted(outputs.items())
    ]
    splits: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (provenance, split, _source, _type), n in outputs.items():
        splits[provenance][split] += n
    rejects_total = Counter()
    for (_step, reason), n in rejects_by_step.items():
        rejects_total[reason] += n
    stats = {
        "build": {
            **{
                key: config[key]
                for key in ("name", "seed", "provenance_priority", "filters", "split", "sources")
            },
            "chat_version": chat_version(layout),
            "translation_checks": config.get("translation_checks") or [],
        },
        "records": {
            "in": sum(source_in.values()),
            "kept": sum(outputs.values()),
            "rejected": sum(rejects_by_step.values()),
        },
        "steps": steps,
        "sources": sources,
        "rejects": dict(sorted(rejects_total.items())),
        "splits": {p: dict(sorted(s.items())) for p, s in sorted(splits.items())},
        "composition": composition,
        "warnings": [note for report in reading for note in report.get("notes", [])],
        "reading": reading,
    }
    check_integrity(stats, rejects_by_step)
    check_ids(layout)
    return stats


def check_integrity(stats: dict, rejects_by_step: Counter) -> None:
    problems = []
    previous_kept = None
    for step in stats["steps"]:
        rejected = sum(step["rejected"].values())
        if step["in"] != step["kept"] + rejected:
            problems.append(
                f"step {step['step']}: in {step['in']} != kept {step['kept']} + rejected {rejected}"
            )
        if previous_kept is not None and not step.get("entry") and step["in"] != previous_kept:
            problems.append(f"step {step['step']}: in {step['in']} != previous step's kept {previous_kept}")
        previous_kept = step["kept"]
        for reason, n in step["rejected"].items():
            on_disk = rejects_by_step.get((step["step"], reason), 0)
            if on_disk != n:
                problems.append(f"step {step['step']}: {n} {reason} counted but {on_disk} in rejects/")
    if previous_kept is not None and previous_kept != stats["records"]["kept"]:
        problems.append(f"last step kept {previous_kept} but {stats['records']['kept']} rows were written")
    for name, source in stats["sources"].items():
        rejected = sum(source["rejected"].values())
        if source["in"] != source["kept"] + rejected:
            problems.append(
                f"source {name}: in {source['in']} != kept {source['kept']} + rejected {rejected}"
            )
    if stats["records"]["in"] != stats["records"]["kept"] + stats["records"]["rejected"]:
        problems.append(f"records: {stats['records']}")
    if problems:
        raise BuildIntegrityError("the build lost or invented records:\n  " + "\n  ".join(problems))


TWIN_REASONS = ("exact_duplicate", "near_duplicate")


def check_ids(layout: Layout) -> None:
    """No id is written twice, and every duplicate's kept twin was written."""
    import pyarrow.parquet as pq

    written: set[str] = set()
    problems = []
    for shard in layout.provenance_shards():
        for record_id in pq.read_table(shard.path, columns=["id"]).column("id").to_pylist():
            if record_id in written:
                problems.append(f"id {record_id} written twice")
            written.add(record_id)
    removed: dict[str, tuple[str, str]] = {}
    for row in layout.iter_rejects():
        removed[row["id"]] = (row["reason"], row["kept_id"])
    for record_id, (reason, kept_id) in removed.items():
        if reason not in TWIN_REASONS:
            continue
        # a later step may remove the kept twin in turn (an exact duplicate's twin found to be the near
        # duplicate of a test item, contaminated, or excluded by review): follow the chain to a record
        # that was written or removed for a reason of its own
        seen = {record_id}
        while (
            kept_id not in written
            and removed.get(kept_id, ("", ""))[0] in TWIN_REASONS
            and kept_id not in seen
        ):
            seen.add(kept_id)
            kept_id = removed[kept_id][1]
        if kept_id not in written and removed.get(kept_id, ("", ""))[0] in ("", *TWIN_REASONS):
            problems.append(f"{record_id} rejected as {reason} of {kept_id}, which was not kept")
    if problems:
        raise BuildIntegrityError("the build lost or invented records:\n  " + "\n  ".join(problems[:20]))


def write_stats(layout: Layout, stats: dict) -> None:
    layout.write_json(layout.stats_path, stats)


class Finalize(PipelineStep):
    name = "finalize"
    type = "📊 - STATS"

    def __init__(self, root: str, config: dict, counted_steps: list[tuple[str, list[str]]]):
        super().__init__()
        self.root = root
        self.config = config
        self.counted_steps = counted_steps

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from medinjection.cards.dataset_card import write_dataset_readme
        from medinjection.dataset_builders.dedup_report import add_removal_stats, write_dedup_report

        root = Path(self.root)
        stats = add_removal_stats(root, compute_stats(root, self.config, self.counted_steps))
        write_stats(Layout(root), stats)
        write_dedup_report(root, stats, self.config)
        write_dataset_readme(root, stats)
        self.stat_update("records_kept", value=stats["records"]["kept"])
        return
        yield
