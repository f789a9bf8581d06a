"""``medinjection report``: the paper's comparison tables and plots, from evaluation outputs only.

Reads what ``medinjection evaluate`` (and ``medinjection judge``) wrote under one output folder:
``<model_tag>/<task>/summary.json`` and ``predictions.parquet``, ``comparisons.json``; and, with
``--ratings``, the table of ``medinjection quality ratings pull``. Writes ``report.md`` (and
``report.json``, the same figures for scripts) and PNG plots.

The multiple-choice tables are the paper's: one row per (origin, type) of each task (the summaries'
``groups``), the task as a whole, then the aggregates over tasks, recomputed here from the outputs
present (``summary.aggregate``, with the evaluation's bootstrap settings), never read from an
``aggregate.json`` that may predate a deleted or rescored task. What is missing (a summary, a
predictions file, ``comparisons.json``) is said in the notes.

Every figure is the summary's value with its 95 % interval, and beside it the verdict of the
paired test against the base model on the same items:

- from ``comparisons.json`` (the evaluation's family, Benjamini-Hochberg adjusted) when it has the
  comparison (an aggregate's only when it is over the tasks present);
- otherwise computed here from the predictions with the same tests (``stats.compare_paired``:
  McNemar for 0/1 metrics, a paired sign-flip permutation test otherwise; a paired bootstrap of
  the corpus statistic for corpus BLEU), adjusted together as a second family. The report says
  which family each verdict came from.

Same inputs give the same bytes: fixed seeds, sorted models and tasks, no dates, and PNGs
saved without matplotlib's version stamp (``plots.py``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medinjection.core.outputs import AGGREGATE, COMPARISONS, incomplete_outputs
from medinjection.evaluation import mix_curves, summary
from medinjection.evaluation.compare import AGGREGATES, aggregate_comparisons
from medinjection.evaluation.judge import former_version
from medinjection.evaluation.report_data import (  # noqa: F401  (re-exported for the command and the tests)
    BASE,
    BINARY_METRICS,
    MARKS,
    OEQ_COLUMNS,
    PAPER_MIXES,
    RAW_METRICS,
    Output,
    ReportError,
    display_name,
    mc_tasks,
    model_order,
    oeq_tasks,
    perm_tasks,
    read_optional_json,
    read_outputs,
    read_ratings,
)
from medinjection.evaluation.stats import RESAMPLES, SEED, benjamini_hochberg, compare_paired, verdict

AGGREGATE_ROWS = (
    ("macro", "aggregated (macro over tasks)"),
    ("halves", "½ MCQ + ½ MCQU datasets (authors' later code)"),
    ("micro", "all items (micro)"),
)
"""The aggregate rows of the exact-match tables: the suffix of the metric (``summary.STATISTICS``)
and the row's label."""

# --- formatting -------------------------------------------------------------------------------


def _number(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}" if metric in RAW_METRICS else f"{100 * value:.2f}"


def cell(entry: dict[str, Any] | None, metric: str, mark: str = "") -> str:
    """``37.31 [35.10, 39.52] ▲``: the value, its interval, the verdict mark against the base
    (``[n/a]`` for a missing interval, e.g. a metric over fewer than two items)."""
    if entry is None:
        return "n/a"
    if entry.get("value") is None:
        return "missing" if entry.get("missing") else "–"
    text = f"{_number(entry['value'], metric)} {_interval(entry.get('ci95'), metric)}"
    return f"{text} {mark}".rstrip()


def _interval(ci: list | tuple | None, metric: str) -> str:
    if not ci or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return "[n/a]"
    return f"[{_number(ci[0], metric)}, {_number(ci[1], metric)}]"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --- comparisons ------------------------------------------------------------------------------


def per_item(rows: list[dict[str, Any]], metric: str) -> dict[str, float]:
    """Per-item values of a metric: a column (original order), ``<m>_perm`` (mean over the permuted
    copies) or ``<m>_robust`` (1 when right in every order)."""
    values: dict[str, list[float]] = {}
    column, mode = metric, "original"
    for suffix in ("_perm", "_robust"):
        if metric.endswith(suffix):
            column, mode = metric[: -len(suffix)], suffix[1:]
    for row in rows:
        value = row.get(column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        permutation = row.get("permutation") or 0
        if mode == "original" and permutation != 0 or mode == "perm" and permutation == 0:
            continue
        values.setdefault(row["id"], []).append(float(value))
    if mode == "robust":
        return {k: min(v) for k, v in values.items()}
    return {k: sum(v) / len(v) for k, v in values.items()}


Group = tuple[str, str] | None
"""``(origin, type)`` of a row of the paper's table, or None for the whole task."""


def in_group(rows: list[dict[str, Any]], group: Group) -> list[dict[str, Any]]:
    return rows if group is None else [r for r in rows if summary.dataset_key(r) == group]


def by_id(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["id"]: row for row in rows if (row.get("permutation") or 0) == 0}


class Comparisons:
    """Verdicts against the base model: the evaluation's own, else computed here (second family).

    A key is ``(model, task, metric, group)``: ``task`` may be an aggregate (``_aggregate_macro`` ...)
    and ``group`` an ``(origin, type)`` of the task (the evaluation compares whole tasks only)."""

    def __init__(self, outputs: list[Output], comparisons: dict | None, resamples: int, seed: int):
        self.by_key = {(o.tag, o.task): o for o in outputs}
        self.resamples, self.seed = resamples, seed
        self.alpha = (comparisons or {}).get("alpha", 0.05)
        self.evaluation: dict[tuple, dict] = {}
        self.stale: set[str] = set()
        for row in ((comparisons or {}).get("families") or {}).get("vs_base", []):
            if row["task"] in AGGREGATES and sorted(row.get("tasks") or []) != self.common_tasks(
                row["model"], row["metric"]
            ):
                self.stale.add(row["model"])  # over other tasks than those scored here
                continue
            self.evaluation[(row["model"], row["task"], row["metric"], None)] = row
        for output in outputs:  # summaries' vs_base mappings (same rows) when there is no comparisons.json
            for metric, row in (output.summary.get("vs_base") or {}).items():
                self.evaluation.setdefault((output.tag, output.task, metric, None), row)
        self.computed: dict[tuple, dict] = {}
        self.wanted: list[tuple] = []

    def common_tasks(self, tag: str, metric: str) -> list[str]:
        """Tasks ``tag`` and the base scored on the same items, where ``tag`` has ``metric``: those an
        aggregate comparison is over (as ``compare.compare_models`` chooses them)."""
        return sorted(
            task
            for (t, task), output in self.by_key.items()
            if t == tag
            and (BASE, task) in self.by_key
            and output.summary.get("items_sha256") == self.by_key[(BASE, task)].summary.get("items_sha256")
            and output.metric(metric) is not None
        )

    def want(self, tag: str, task: str, metric: str, group: Group = None) -> None:
        key = (tag, task, metric, group)
        if tag == BASE or key in self.evaluation or key in self.wanted:
            return
        if task in AGGREGATES:
            if self.common_tasks(tag, metric):
                self.wanted.append(key)
        elif (BASE, task) in self.by_key and (tag, task) in self.by_key:
            self.wanted.append(key)

    def compute(self) -> None:
        """Compute every wanted comparison the evaluation did not make, then adjust them together."""
        from medinjection.evaluation.open_ended import paired_corpus_bleu

        rows = []
        aggregates: dict[tuple[str, str], dict[str, dict]] = {}
        for key in sorted(self.wanted, key=lambda k: (*k[:3], k[3] or ("", ""))):
            tag, task, metric, group = key
            if task in AGGREGATES:
                if (tag, metric) not in aggregates:
                    tasks = self.common_tasks(tag, metric)
                    mine = {t: by_id(self.by_key[(tag, t)].rows()) for t in tasks}
                    base = {t: by_id(self.by_key[(BASE, t)].rows()) for t in tasks}
                    found = aggregate_comparisons(
                        mine, base, tasks, metric, resamples=self.resamples, seed=self.seed
                    )
                    aggregates[(tag, metric)] = {r["task"]: r for r in found}
                if task in aggregates[(tag, metric)]:
                    rows.append((key, aggregates[(tag, metric)][task]))
                continue
            mine, base = self.by_key[(tag, task)], self.by_key[(BASE, task)]
            if (mine.summary.get("items_sha256") or "") != (base.summary.get("items_sha256") or ""):
                continue  # not the same items: not comparable
            mine_rows, base_rows = in_group(mine.rows(), group), in_group(base.rows(), group)
            if metric == "bleu":
                result = paired_corpus_bleu(mine_rows, base_rows, resamples=self.resamples, seed=self.seed)
            else:
                a, b = per_item(mine_rows, metric), per_item(base_rows, metric)
                ids = sorted(set(a) & set(b))
                if not ids:
                    continue
                # 0/1 per item: exact match and robust; the mean over K permuted copies is not
                binary = metric in BINARY_METRICS or (
                    metric.startswith("em_") and not metric.endswith("_perm")
                )
                result = compare_paired(
                    [a[i] for i in ids],
                    [b[i] for i in ids],
                    binary=binary,
                    resamples=self.resamples,
                    seed=self.seed,
                ).as_dict()
            rows.append((key, result))
        adjusted = benjamini_hochberg([r["p_value"] for _, r in rows])
        for (key, result), p_adjusted in zip(rows, adjusted, strict=True):
            significant = p_adjusted is not None and p_adjusted < self.alpha
            self.computed[key] = {
                **result,
                "p_adjusted": p_adjusted,
                "significant": significant,
                "verdict": verdict(result["diff"], significant),
                "family": "report",
            }

    def get(self, tag: str, task: str, metric: str, group: Group = None) -> dict | None:
        key = (tag, task, metric, group)
        if key in self.evaluation:
            return {**self.evaluation[key], "family": "evaluation"}
        return self.computed.get(key)

    def mark(self, tag: str, task: str, metric: str, group: Group = None) -> str:
        found = self.get(tag, task, metric, group)
        if found is None or not found.get("verdict"):
            return ""
        return MARKS[found["verdict"]] + ("" if found.get("family") == "evaluation" else "ᵣ")


# --- the report -------------------------------------------------------------------------------


@dataclass
class Report:
    markdown: str
    data: dict[str, Any]
    figures: dict[str, Path]


class _Builder:
    def __init__(self, root: Path, outputs: list[Output], resamples: int, seed: int):
        self.root, self.outputs = root, outputs
        self.by_key = {(o.tag, o.task): o for o in outputs}
        if len(self.by_key) != len(outputs):
            raise ReportError(f"{root}: two summaries for the same model tag and task")
        self.tags = model_order({o.tag for o in outputs})
        self.resamples, self.seed = resamples, seed
        self.data: dict[str, Any] = {"models": self.tags, "tables": {}}
        self.notes: list[str] = []
        self.mix_points: list[mix_curves.MixPoint] = []
        self.missing: dict[str, set[tuple[str, str, str]]] = {}  # reason -> (tag, benchmark, metric)
        self.comparisons = Comparisons(outputs, self._comparisons_file(), resamples, seed)
        for tag in sorted(self.comparisons.stale):
            self.notes.append(
                f"{COMPARISONS} compares the aggregates of {display_name(tag)} over other tasks than those "
                "scored here: those verdicts are computed by the report (ᵣ)"
            )
        self.aggregates = {t: self._aggregates(t) for t in self.tags}
        self._missing_outputs()

    def _comparisons_file(self) -> dict | None:
        """``comparisons.json``, and a note when it is missing or empty (its verdicts then come from
        the summaries' ``vs_base`` rows, or are computed here)."""
        path = self.root / COMPARISONS
        others = [t for t in self.tags if t != BASE]
        if BASE not in self.tags:
            if others:
                self.notes.append(f"no base model ({BASE}/) scored here: no verdict against the base")
            return (
                read_optional_json(path)
                if path.is_file() and path.read_text(encoding="utf-8").strip()
                else None
            )
        found = None
        if path.is_file() and path.read_text(encoding="utf-8").strip():
            found = read_optional_json(path)
        if not others:
            return found
        if found is None:
            why = "empty" if path.is_file() else "missing"
            self.notes.append(
                f"{COMPARISONS} is {why}: every verdict not in the summaries' vs_base rows (aggregates "
                "included) is computed by the report (ᵣ)"
            )
        elif not ((found.get("families") or {}).get("vs_base")):
            self.notes.append(
                f"{COMPARISONS} holds no comparison against the base: the verdicts not in the summaries' "
                "vs_base rows are computed by the report (ᵣ)"
            )
        return found

    def _aggregates(self, tag: str) -> dict[str, dict]:
        """The exact-match aggregates of ``tag`` over its multiple-choice tasks present, recomputed as
        ``aggregate.json`` computes them (with the evaluation's bootstrap settings); a note when its
        ``aggregate.json`` was computed from other predictions."""
        tasks = [o for o in self.outputs if o.tag == tag and o.task in mc_tasks(self.outputs)]
        if not tasks:
            return {}
        boot = tasks[0].summary.get("bootstrap") or {}
        metrics = summary.aggregate(
            {o.task: o.rows() for o in tasks},
            ("em_constrained", "em_greedy"),
            resamples=int(boot.get("resamples", RESAMPLES)),
            seed=int(boot.get("seed", SEED)),
        )
        written = read_optional_json(self.root / tag / AGGREGATE)
        if written is not None:
            present = {o.task: o.summary.get("predictions_sha256") for o in self.outputs if o.tag == tag}
            recorded = written.get("predictions_sha256")
            if sorted(written.get("tasks") or []) != sorted(present) or (
                recorded is not None and recorded != present
            ):
                self.notes.append(
                    f"{tag}/{AGGREGATE} was computed over other predictions (tasks "
                    f"{', '.join(written.get('tasks') or []) or 'none'}; here: {', '.join(sorted(present))}): "
                    f"{display_name(tag)}'s aggregates are recomputed from the outputs present"
                )
        return metrics

    def _missing_outputs(self) -> None:
        """A note for each (model, task) of the grid without a scored output, saying which file is
        missing and what the aggregates are over instead."""
        incomplete = incomplete_outputs(self.root)
        tasks = sorted({o.task for o in self.outputs} | {t for v in incomplete.values() for t in v})
        mc = set(mc_tasks(self.outputs))
        for tag in sorted(set(self.tags) | set(incomplete), key=lambda t: (t not in self.tags, t)):
            present = sorted(o.task for o in self.outputs if o.tag == tag and o.task in mc)
            for task in tasks:
                if (tag, task) in self.by_key:
                    continue
                files = incomplete.get(tag, {}).get(task)
                where = f"{' and '.join(files)} missing in {tag}/{task}/" if files else "not scored"
                note = f"{display_name(tag)} on {task}: {where}: its cells read n/a"
                if task in mc and tag in self.tags:
                    over = f"are over {', '.join(present)} only" if present else "have no task left"
                    note += f"; {display_name(tag)}'s aggregates {over}"
                self.notes.append(note)

    def entry(self, tag: str, task: str, metric: str, group: Group = None) -> dict | None:
        output = self.by_key.get((tag, task))
        if output is None:
            return None
        if group is None:
            return output.metric(metric)
        for found in output.summary.get("groups") or []:
            if (found.get("origin"), found.get("type")) == group:
                return (found.get("metrics") or {}).get(metric)
        return None

    def groups(self, task: str, metric: str) -> list[tuple[str, str]]:
        """The (origin, type) groups of ``task`` that have ``metric``, in the summaries' order."""
        found: list[tuple[str, str]] = []
        for tag in self.tags:
            output = self.by_key.get((tag, task))
            for group in (output.summary.get("groups") or []) if output else []:
                key = (group.get("origin"), group.get("type"))
                if key not in found and (group.get("metrics") or {}).get(metric):
                    found.append(key)
        return sorted(found)

    def aggregate(self, tag: str, metric: str) -> dict | None:
        return self.aggregates.get(tag, {}).get(metric)

    def cell(self, tag: str, task: str, metric: str, shown: str | None = None, group: Group = None) -> str:
        entry = self.entry(tag, task, metric, group)
        column = task if group is None else f"{task}: {group[0]} {group[1]}"
        self.data["tables"].setdefault(shown or metric, {}).setdefault(tag, {})[column] = entry
        if entry is not None and entry.get("value") is None and entry.get("missing"):
            self.missing.setdefault(entry["missing"], set()).add((tag, column, metric))
        return cell(entry, metric, self.comparisons.mark(tag, task, metric, group))

    def want_all(self, tasks: list[str], metrics: list[str], with_groups: bool = False) -> None:
        for tag in self.tags:
            for task in tasks:
                for metric in metrics:
                    if self.entry(tag, task, metric) is not None:
                        self.comparisons.want(tag, task, metric)
                    for group in self.groups(task, metric) if with_groups else []:
                        if self.entry(tag, task, metric, group) is not None:
                            self.comparisons.want(tag, task, metric, group)

    def want_aggregates(self, metrics: list[str]) -> None:
        for tag in self.tags:
            for metric in metrics:
                for statistic, _ in AGGREGATE_ROWS:
                    if self.aggregate(tag, f"{metric}_{statistic}"):
                        self.comparisons.want(tag, f"_aggregate_{statistic}", metric)

    # sections

    def runs(self) -> str:
        rows = []
        for tag in self.tags:
            summaries = [o.summary for o in self.outputs if o.tag == tag]
            first = summaries[0]
            sha = first.get("adapter_sha256")
            rows.append(
                [
                    display_name(tag),
                    f"`{first.get('model', '')}`",
                    f"`{sha[:12]}`" if sha else "–",
                    ", ".join(sorted(s["task"] for s in summaries)),
                ]
            )
        items = []
        for task in sorted({o.task for o in self.outputs}):
            counts = {o.summary.get("n_items") for o in self.outputs if o.task == task}
            items.append(f"{task}: {', '.join(str(c) for c in sorted(counts, key=str))} items")
        return (
            "## Models and tasks\n\n"
            + table(["model", "base model", "adapter sha256", "tasks"], rows)
            + "\n\n"
            + "; ".join(items)
            + ".\n"
        )

    def mc_table(self, metric: str, title: str, with_aggregate: bool) -> str:
        """The paper's table for ``metric``: a row per (origin, type) of each task, the task as a whole
        (when it has several), then the aggregates; a column per model."""
        tasks = [b for b in mc_tasks(self.outputs) if any(self.entry(t, b, metric) for t in self.tags)]
        if not tasks:
            return ""
        for output in self.outputs:
            if output.task in tasks and "groups" not in output.summary:
                self.notes.append(
                    f"{output.tag}/{output.task}/summary.json has no (origin, type) groups (written before "
                    "summaries had them): only the task as a whole is shown; `medinjection evaluate "
                    "--overwrite` scores it again"
                )
        header = ["task", "dataset", "n", *(display_name(t) for t in self.tags)]
        rows = []
        for task in tasks:
            groups = self.groups(task, metric)
            for group in groups if len(groups) > 1 else []:
                rows.append(
                    [
                        task,
                        f"{group[0]} {group[1]}",
                        self._n(task, metric, group),
                        *(self.cell(tag, task, metric, group=group) for tag in self.tags),
                    ]
                )
            whole = f"{groups[0][0]} {groups[0][1]}" if len(groups) == 1 else "all"
            rows.append(
                [task, whole, self._n(task, metric), *(self.cell(tag, task, metric) for tag in self.tags)]
            )
        if with_aggregate:
            for statistic, label in AGGREGATE_ROWS:
                name = f"{metric}_{statistic}"
                entries = {tag: self.aggregate(tag, name) for tag in self.tags}
                if not any(entries.values()):
                    continue
                row = [label, "", self._n_aggregate(entries)]
                for tag, entry in entries.items():
                    self.data["tables"].setdefault(metric, {}).setdefault(tag, {})[
                        f"_aggregate_{statistic}"
                    ] = entry
                    if entry is not None and entry.get("value") is None and entry.get("missing"):
                        self.missing.setdefault(entry["missing"], set()).add((tag, label, metric))
                    row.append(
                        cell(entry, metric, self.comparisons.mark(tag, f"_aggregate_{statistic}", metric))
                    )
                rows.append(row)
        return f"### {title}\n\n" + table(header, rows) + "\n"

    def _n(self, task: str, metric: str, group: Group = None) -> str:
        """The items behind a row (``a/b`` when the models were scored on different numbers)."""
        counts = {
            entry["n"]
            for tag in self.tags
            for entry in [self.entry(tag, task, metric, group)]
            if entry and entry.get("n") is not None
        }
        return "/".join(str(n) for n in sorted(counts)) or "–"

    @staticmethod
    def _n_aggregate(entries: dict[str, dict | None]) -> str:
        counts = {e["n"] for e in entries.values() if e and e.get("n") is not None}
        return "/".join(str(n) for n in sorted(counts)) or "–"

    def mixes(self) -> str:
        """Constrained EM (macro) against the mix's size and native share, for the adapters whose
        summaries carry their run manifest's mix with its ``mixes.json`` entry (weights, size); only
        when those mixes cover at least two sizes (a learning curve): otherwise nothing."""
        entries: dict[str, dict] = {}
        for output in self.outputs:
            mix = output.summary.get("mix")
            if isinstance(mix, dict) and isinstance(mix.get("entry"), dict):
                entries.setdefault(output.tag, mix["entry"])
        figures = {tag: self.aggregate(tag, "em_constrained_macro") for tag in entries}
        points = mix_curves.mix_points(entries, figures)
        if len({p.size for p in points}) < 2:
            return ""
        self.mix_points = points
        self.data["mix_curves"] = mix_curves.table(points)
        rows = [
            [
                display_name(p.tag),
                p.mix,
                str(p.size),
                f"{p.native_share:.2f}",
                cell(
                    figures[p.tag],
                    "em_constrained",
                    self.comparisons.mark(p.tag, "_aggregate_macro", "em_constrained"),
                ),
            ]
            for p in points
        ]
        return (
            "## Mix size and native share\n\nConstrained EM (%), the aggregated (macro) mean over tasks, of "
            "each adapter trained on a mix of a mix file, as its run manifest recorded the mix (its "
            "`mixes.json` entry): the mix's name, its size (train examples; sizes of one mix are nested) "
            "and its native share (native weight / sum of the weights). Plot: `em_by_size.png`.\n\n"
            + table(["model", "mix", "size", "native share", "constrained EM (macro)"], rows)
            + "\n"
        )

    def position_bias(self) -> str:
        tasks = perm_tasks(self.outputs)
        if not tasks:
            return "## Position bias\n\nNo permuted runs (`medinjection evaluate --permutations K`).\n"
        rows = []
        for task in tasks:
            for tag in self.tags:
                if (tag, task) not in self.by_key:
                    continue
                k = (self.by_key[(tag, task)].summary.get("protocol") or {}).get("permutations", "")
                rows.append(
                    [
                        display_name(tag),
                        task,
                        str(k),
                        self.cell(tag, task, "em_constrained", "position_original"),
                        self.cell(tag, task, "em_constrained_perm"),
                        cell(self.entry(tag, task, "em_constrained_perm_drop"), "em_constrained_perm_drop"),
                        self.cell(tag, task, "em_constrained_robust"),
                    ]
                )
        return (
            "## Position bias\n\nConstrained EM (%) with the options in their original order and under K seeded "
            "permutations (mean over the permuted copies); the drop is original minus permuted (paired "
            "interval); robust: right under the original order and every permutation. (The paper: the base "
            "model's constrained EM falls from 37.31 to 23.20 with permuted options.)\n\n"
            + table(["model", "task", "K", "original", "permuted", "drop", "robust"], rows)
            + "\n"
        )

    def oeq(self) -> str:
        tasks = oeq_tasks(self.outputs)
        if not tasks:
            return "## Open-ended answers\n\nNo open-ended task in these outputs.\n"
        parts = [
            "## Open-ended answers\n\nBLEU on sacrebleu's 0-100 scale (corpus, and the mean of sentence BLEU); "
            "ROUGE-2, METEOR, BERTScore-F1 and the binary judge (share judged equivalent) in %; the graded "
            "judge on 1-5. Judge means leave out unparseable and failed verdicts (counted below).\n"
        ]
        for task in tasks:
            rows = []
            for tag in self.tags:
                if (tag, task) in self.by_key:
                    rows.append([display_name(tag), *(self.cell(tag, task, m) for m, _ in OEQ_COLUMNS)])
            parts.append(f"### {task}\n\n" + table(["model", *(n for _, n in OEQ_COLUMNS)], rows) + "\n")
            parts.append(self.oeq_details(task))
        return "\n".join(parts)

    def oeq_details(self, task: str) -> str:
        lines = []
        for tag in self.tags:
            output = self.by_key.get((tag, task))
            if output is None:
                continue
            for metric in ("judge_binary", "judge_graded"):
                entry = output.metric(metric)
                if entry and "n_judged" in entry:
                    lines.append(
                        f"- {display_name(tag)}, {metric}: judge `{entry.get('judge_model')}`, prompt "
                        f"{prompt_text(entry)}: {entry['n']} verdicts of {entry['n_judged']} answers "
                        f"({entry['n_unparseable']} unparseable, {entry['n_failed']} failed)"
                    )
        signatures = sorted(
            {
                f"{m}: {e[k]}"
                for o in self.outputs
                if o.task == task
                for m in ("bleu", "meteor", "bertscore_f1")
                for e in [o.metric(m) or {}]
                for k in ("signature", "resources", "settings")
                if e.get(k)
            }
        )
        lines += [f"- {s}" for s in signatures]
        return "\n".join(lines) + "\n" if lines else ""

    def calibration(self, ratings: list[dict] | None) -> tuple[str, dict | None, dict, list[dict]]:
        """The judge-human section: ``calibration.calibrate`` (the figures of ``medinjection
        calibrate``) rendered by ``calibration_report``, and the length-controlled judge scores."""
        from medinjection.evaluation.calibration import calibrate, join
        from medinjection.evaluation.calibration_report import sections

        predictions = {
            tag: [r for o in self.outputs if o.tag == tag for r in o.rows() if r.get("type") == "OEQ"]
            for tag in self.tags
        }
        predictions = {t: rows for t, rows in predictions.items() if rows}
        if not predictions:
            return "", None, predictions, []
        joined = join(ratings, predictions) if ratings else []
        result = calibrate(
            ratings or [], predictions, joined=joined, resamples=self.resamples, seed=self.seed
        )
        self.data["calibration"] = result
        parts = ["## The judge against human ratings\n"]
        if not ratings:
            parts.append("No ratings given (`--ratings`, from `medinjection quality ratings pull`).\n")
        else:
            parts.append(
                f"{result['n']} rated answers ({result['n_ratings']} ratings by {result['n_annotators']} "
                "annotators); each answer's label is the mean rating (1-5) and the share of its annotators "
                "who found it equivalent. The same figures as `medinjection calibrate`.\n"
            )
            parts.append(sections(result, level=3))
        rows = []
        for score, controlled in result["length_controlled"].items():
            if not controlled:
                continue
            for tag in self.tags:
                entry = controlled["models"].get(tag)
                if entry:
                    rows.append(
                        [
                            score,
                            display_name(tag),
                            _number(entry["raw"], score),
                            cell(entry, score),
                            f"{2 ** entry['mean_log2_length'] - 1:.0f}",
                            str(entry["n"]),
                        ]
                    )
            self.notes.append(
                f"length control of {score}: slope {controlled['slope']:.3f} per doubling, "
                f"{controlled['slope_source']}"
            )
        if rows:
            parts.append(
                "### Length-controlled judge scores\n\nThe judge score each model would get at the mean "
                "answer length of all models (its score minus slope x its excess log2 length; see the "
                "notes for the slope).\n\n"
                + table(["judge", "model", "raw", "length-controlled", "geo. mean tokens", "n"], rows)
                + "\n"
            )
        return "\n".join(parts), result, predictions, joined


def prompt_text(entry: dict[str, Any]) -> str:
    """How a judge entry's prompt reads: its version and the start of its sha256. A version that older
    outputs record for a renamed prompt is shown with its name now; a summary written before hashes
    were recorded says so."""
    version, sha = entry.get("prompt_version"), entry.get("prompt_sha256")
    renamed = former_version(version)
    if renamed is not None:
        return f"`{version}` (now `{renamed[0]}`, the same texts, sha256 {(sha or renamed[1])[:12]})"
    return f"`{version}` (sha256 {sha[:12]})" if sha else f"`{version}` (sha256 not recorded)"


_COUNTS = re.compile(r"^(?P<reason>.*?) \((?P<counts>\d+ \w+(?:, \d+ \w+)*)\)$")


def missing_notes(missing: dict[str, set[tuple[str, str, str]]], tags: list[str]) -> list[str]:
    """One note per reason a figure is missing, with what it applies to: ``no BERTScore model given:
    bertscore_f1 of Base, NAT on mediqal-oeq``. Reasons that differ only by their counts in
    parentheses (``no parseable verdict (3 unparseable, 0 failed)``) are one reason, counts summed."""
    grouped: dict[str, set[tuple[str, str, str]]] = {}
    totals: dict[str, dict[str, int]] = {}
    for reason, cells in missing.items():
        match = _COUNTS.match(reason)
        base = match["reason"] if match else reason
        grouped.setdefault(base, set()).update(cells)
        if match:
            for count in match["counts"].split(", "):
                number, word = count.split(" ", 1)
                totals.setdefault(base, {}).setdefault(word, 0)
                totals[base][word] += int(number) * len(cells)  # the counts of each cell
    order = {tag: i for i, tag in enumerate(tags)}
    notes = []
    for base, cells in sorted(grouped.items()):
        counts = ", ".join(f"{n} {word}" for word, n in totals.get(base, {}).items())
        metrics = sorted({m for _, _, m in cells})
        models = sorted({t for t, _, _ in cells}, key=lambda t: (order.get(t, len(order)), t))
        tasks = sorted({b for _, b, _ in cells})
        if len(cells) == len(metrics) * len(models) * len(tasks):
            where = (
                f"{', '.join(metrics)} of {', '.join(display_name(t) for t in models)} on {', '.join(tasks)}"
            )
        else:
            where = "; ".join(
                f"{display_name(t)}, {b}, {m}"
                for t, b, m in sorted(cells, key=lambda c: (order.get(c[0], len(order)), c[0], c[1], c[2]))
            )
        notes.append(f"{base}{f' ({counts} in all)' if counts else ''}: {where}")
    return notes


def build_report(
    root: str | Path,
    output: str | Path,
    ratings: str | Path | None = None,
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Report:
    """Write ``report.md``, ``report.json`` and the PNG plots of the evaluation outputs under ``root``."""
    from medinjection.evaluation import calibration_report, plots

    root, output = Path(root), Path(output)
    outputs = read_outputs(root)
    builder = _Builder(root, outputs, resamples, seed)
    mc = mc_tasks(outputs)
    builder.want_all(mc, ["em_constrained", "em_greedy", "hamming_constrained", "hamming_greedy"], True)
    builder.want_aggregates(["em_constrained", "em_greedy"])
    builder.want_all(perm_tasks(outputs), ["em_constrained_perm", "em_constrained_robust"])
    builder.want_all(oeq_tasks(outputs), [m for m, _ in OEQ_COLUMNS])
    builder.comparisons.compute()

    rated = read_ratings(ratings) if ratings else None
    sections = [
        "# MedInjection-FR evaluation report\n",
        f"From `{root.resolve().name}/`: {len(builder.tags)} models, {len({o.task for o in outputs})} tasks. "
        "Each figure: value [95 % bootstrap interval]; beside it the paired test against the base model on the "
        "same items (▲ better, ▼ worse, = no significant difference, Benjamini-Hochberg adjusted p < "
        f"{builder.comparisons.alpha}): from the evaluation's comparisons, or, marked ᵣ, computed by the report "
        "from the predictions (a second family). Multiple-choice figures in %.\n",
        builder.runs(),
        "## Multiple choice\n\nAs the paper's table: a row per (origin, type) of each task, then the task as a "
        "whole. The paper's headline figure is the aggregated constrained EM; how the paper forms it is not "
        "stated. Below it: the macro mean over tasks; 0.5 x the mean over the MCQ datasets + 0.5 x the mean "
        "over the MCQU datasets (a dataset: one task's (origin, type); the formula of the authors' later code, "
        "not tied to this paper by any public code); and the micro mean over all items. Aggregates are "
        "recomputed from the outputs present.\n",
        builder.mc_table("em_constrained", "Constrained exact match (%)", True),
        builder.mc_table("em_greedy", "Greedy exact match (%)", True),
        builder.mc_table("hamming_constrained", "Hamming score, constrained (%), MCQ items", False),
        builder.mc_table("hamming_greedy", "Hamming score, greedy (%), MCQ items", False),
        builder.mixes(),
        builder.position_bias(),
        builder.oeq(),
    ]
    calibration_text, calibration, predictions, joined = builder.calibration(rated)
    sections.append(calibration_text)

    output.mkdir(parents=True, exist_ok=True)
    figures = plots.write_plots(builder, predictions, output)
    if builder.mix_points:
        figures["Constrained EM against mix size and native share"] = mix_curves.plot(
            builder.mix_points, output / "em_by_size.png"
        )
    if joined:
        figures.update(calibration_report.write_plots(joined, calibration, output, with_length=False))
    if figures:
        sections.append(
            "## Plots\n\n" + "\n\n".join(f"![{name}]({path.name})" for name, path in figures.items()) + "\n"
        )
    notes = missing_notes(builder.missing, builder.tags) + sorted(set(builder.notes))
    if notes:
        sections.append("## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    builder.data["comparisons_computed"] = [
        {"model": k[0], "task": k[1], "metric": k[2], **({"group": list(k[3])} if k[3] else {}), **v}
        for k, v in sorted(builder.comparisons.computed.items(), key=lambda kv: (*kv[0][:3], kv[0][3] or ()))
    ]
    markdown = "\n".join(s for s in sections if s).rstrip() + "\n"
    (output / "report.md").write_text(markdown, encoding="utf-8")
    (output / "report.json").write_text(
        json.dumps(plain(builder.data), indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8",
    )
    return Report(markdown, builder.data, figures)


def plain(value: Any) -> Any:
    """JSON-ready: NaN -> None, numpy scalars -> Python numbers, tuples -> lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
