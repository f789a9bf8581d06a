"""``medinjection report``: the paper's comparison tables and plots, from evaluation outputs only.

Reads what ``medinjection evaluate`` (and ``medinjection judge``) wrote under one output folder:
``<model_tag>/<task>/summary.json`` and ``predictions.parquet``, ``<model_tag>/aggregate.json``,
``comparisons.json``; and, with ``--ratings``, the table of ``medinjection quality ratings pull``.
Writes ``report.md`` (and ``report.json``, the same figures for scripts) and PNG plots.

Every figure is the summary's value with its 95 % interval, and beside it the verdict of the
paired test against the base model on the same items:

- from ``comparisons.json`` (the evaluation's family, Benjamini-Hochberg adjusted) when it has the
  comparison;
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

from medinjection.evaluation import mix_curves
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


class Comparisons:
    """Verdicts against the base model: the evaluation's own, else computed here (second family)."""

    def __init__(self, outputs: list[Output], comparisons: dict | None, resamples: int, seed: int):
        self.by_key = {(o.tag, o.task): o for o in outputs}
        self.resamples, self.seed = resamples, seed
        self.alpha = (comparisons or {}).get("alpha", 0.05)
        self.evaluation: dict[tuple[str, str, str], dict] = {}
        for row in ((comparisons or {}).get("families") or {}).get("vs_base", []):
            self.evaluation[(row["model"], row["task"], row["metric"])] = row
        for output in outputs:  # summaries' vs_base mappings (same rows) when there is no comparisons.json
            for metric, row in (output.summary.get("vs_base") or {}).items():
                self.evaluation.setdefault((output.tag, output.task, metric), row)
        self.computed: dict[tuple[str, str, str], dict] = {}
        self.wanted: list[tuple[str, str, str]] = []

    def want(self, tag: str, task: str, metric: str) -> None:
        key = (tag, task, metric)
        if tag != BASE and key not in self.evaluation and key not in self.wanted:
            if (BASE, task) in self.by_key and (tag, task) in self.by_key:
                self.wanted.append(key)

    def compute(self) -> None:
        """Compute every wanted comparison the evaluation did not make, then adjust them together."""
        from medinjection.evaluation.open_ended import paired_corpus_bleu

        rows = []
        for tag, task, metric in sorted(self.wanted):
            mine, base = self.by_key[(tag, task)], self.by_key[(BASE, task)]
            if (mine.summary.get("items_sha256") or "") != (base.summary.get("items_sha256") or ""):
                continue  # not the same items: not comparable
            if metric == "bleu":
                result = paired_corpus_bleu(
                    mine.rows(), base.rows(), resamples=self.resamples, seed=self.seed
                )
            else:
                a, b = per_item(mine.rows(), metric), per_item(base.rows(), metric)
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
            rows.append(((tag, task, metric), result))
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

    def get(self, tag: str, task: str, metric: str) -> dict | None:
        key = (tag, task, metric)
        if key in self.evaluation:
            return {**self.evaluation[key], "family": "evaluation"}
        return self.computed.get(key)

    def mark(self, tag: str, task: str, metric: str) -> str:
        found = self.get(tag, task, metric)
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
        self.aggregates = {t: read_optional_json(root / t / "aggregate.json") for t in self.tags}
        self.comparisons = Comparisons(
            outputs, read_optional_json(root / "comparisons.json"), resamples, seed
        )
        self.resamples, self.seed = resamples, seed
        self.data: dict[str, Any] = {"models": self.tags, "tables": {}}
        self.notes: list[str] = []
        self.mix_points: list[mix_curves.MixPoint] = []
        self.missing: dict[str, set[tuple[str, str, str]]] = {}  # reason -> (tag, benchmark, metric)

    def entry(self, tag: str, task: str, metric: str) -> dict | None:
        output = self.by_key.get((tag, task))
        return output.metric(metric) if output else None

    def aggregate(self, tag: str, metric: str) -> dict | None:
        return ((self.aggregates.get(tag) or {}).get("metrics") or {}).get(metric)

    def cell(self, tag: str, task: str, metric: str, shown: str | None = None) -> str:
        entry = self.entry(tag, task, metric)
        self.data["tables"].setdefault(shown or metric, {}).setdefault(tag, {})[task] = entry
        if entry is not None and entry.get("value") is None and entry.get("missing"):
            self.missing.setdefault(entry["missing"], set()).add((tag, task, metric))
        return cell(entry, metric, self.comparisons.mark(tag, task, metric))

    def want_all(self, tasks: list[str], metrics: list[str]) -> None:
        for tag in self.tags:
            for task in tasks:
                for metric in metrics:
                    if self.entry(tag, task, metric) is not None:
                        self.comparisons.want(tag, task, metric)

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
        tasks = [b for b in mc_tasks(self.outputs) if any(self.entry(t, b, metric) for t in self.tags)]
        if not tasks:
            return ""
        header = ["model", *tasks]
        if with_aggregate:
            header += ["aggregated (macro)", "all items (micro)"]
        rows = []
        for tag in self.tags:
            row = [display_name(tag), *(self.cell(tag, b, metric) for b in tasks)]
            if with_aggregate:
                for kind in ("macro", "micro"):
                    entry = self.aggregate(tag, f"{metric}_{kind}")
                    self.data["tables"].setdefault(metric, {}).setdefault(tag, {})[f"_aggregate_{kind}"] = (
                        entry
                    )
                    row.append(cell(entry, metric, self.comparisons.mark(tag, f"_aggregate_{kind}", metric)))
            rows.append(row)
        return f"### {title}\n\n" + table(header, rows) + "\n"

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
    builder.want_all(mc, ["em_constrained", "em_greedy", "hamming_constrained", "hamming_greedy"])
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
        "## Multiple choice\n\nThe paper's headline figure is the aggregated constrained EM (the macro mean over "
        "tasks; the micro mean over all items beside it).\n",
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
        {"model": k[0], "task": k[1], "metric": k[2], **v}
        for k, v in sorted(builder.comparisons.computed.items())
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
