"""Tables and plots of a calibration result (``calibration.calibrate_answers``), shared by
``calibration.md`` of ``medinjection calibrate`` and the ratings section of ``medinjection report``.

Same result, same bytes: entries in a fixed order, numbers at fixed precision, PNGs through
``plots.save`` (fixed size and resolution, seeded jitter, no version stamp).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medinjection.evaluation.calibration import LABELS, log_length, paper_figure, ranked
from medinjection.evaluation.plots import _jitter, _pyplot, grouped_bars, save

PAPER_LINE = (
    "For reference, the paper's judge-human Pearson r (MedInjection-FR, on its own labelled answers, "
    "not these): MedGemma-27B 0.61, Gemini 2.0 Flash 0.57, GPT-4.1-mini 0.49, ROUGE-2 about 0.36, "
    "BLEU about 0.02."
)
TITLES = {
    "human_equivalent": "human 'equivalent' (share of annotators)",
    "human_rating": "human rating (1-5)",
}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def figure(entry: dict[str, Any] | None, digits: int = 2) -> str:
    """``0.61 [0.52, 0.69]``; ``–`` when undefined, ``[n/a]`` for a missing interval."""
    if not entry or entry.get("value") is None:
        return "–"
    ci = entry.get("ci95")
    interval = f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci and None not in ci else "[n/a]"
    return f"{entry['value']:.{digits}f} {interval}"


def _paper(entry: dict[str, Any]) -> str:
    found = paper_figure(entry)
    return f"{found[1]:.2f} ({found[0]})" if found else "–"


def ranking_table(result: dict[str, Any], label: str) -> str:
    entries = ranked(result, label)
    if not entries:
        return ""
    binary = any("accuracy" in e for e in entries)
    header = ["rank", "score", "kind", "n", "Pearson r", "Spearman", "Kendall"]
    header += ["accuracy", "Cohen's kappa", "F1"] if binary else []
    rows = []
    for rank, entry in enumerate(entries, start=1):
        row = [str(rank), entry["name"], entry["kind"], str(entry["n"])]
        row += [figure(entry[m]) for m in ("pearson", "spearman", "kendall")]
        if binary:
            row += [figure(entry.get(m)) if m in entry else "–" for m in ("accuracy", "cohen_kappa", "f1")]
        rows.append([*row, _paper(entry)])
    return _table([*header, "paper (Pearson r)"], rows)


def verdicts_table(result: dict[str, Any]) -> str:
    rows = []
    for entry in _entries(result):
        if entry["kind"] != "judge":
            continue
        counts = entry.get("verdicts") or {}
        confusion = entry.get("confusion")
        rows.append(
            [
                entry["name"],
                entry["label"],
                str(counts.get("ok", 0)),
                str(counts.get("unparseable", 0)),
                str(counts.get("failed", 0)),
                "TP {tp}, FP {fp}, FN {fn}, TN {tn}".format(**confusion) if confusion else "–",
            ]
        )
    if not rows:
        return ""
    return _table(["judge", "label", "verdicts", "unparseable", "failed", "confusion (vs majority)"], rows)


def _entries(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for label in LABELS for e in ranked(result, label)]


def verbosity_table(result: dict[str, Any]) -> str:
    rows = []
    for entry in _entries(result):
        bias = entry["bias"]["verbosity"]
        rows.append(
            [
                entry["name"],
                entry["label"],
                figure(bias["with_length"]),
                figure(bias["at_equal_label"]),
                figure(bias["slope_at_equal_label"], 3),
                str(bias["n"]),
            ]
        )
    if not rows:
        return ""
    return _table(["score", "label", "with length", "at equal label", "slope / doubling", "n"], rows)


def generators_table(result: dict[str, Any]) -> str:
    entries = _entries(result)
    generators = sorted({m for e in entries for m in e["bias"]["per_generator"]["models"]})
    if not entries or not generators:
        return ""
    rows = []
    for entry in entries:
        block = entry["bias"]["per_generator"]
        cells = []
        for model in generators:
            found = block["models"].get(model)
            cells.append(f"{figure(found)}; {found['offset']:+.2f} (n {found['n']})" if found else "–")
        p = block["test"]["p_value"]
        spread = block["spread"]
        rows.append(
            [
                entry["name"],
                entry["label"],
                block["statistic"],
                *cells,
                "–" if spread is None else f"{spread:.2f}",
                "–" if p is None else f"{p:.3f}",
            ]
        )
    return _table(["score", "label", "agreement", *generators, "spread", "p (generator effect)"], rows)


def sections(result: dict[str, Any], level: int = 2) -> str:
    """The calibration tables in Markdown, headings at ``level``."""
    head = "#" * level
    parts = []
    boot = result.get("bootstrap") or {}
    parts.append(
        f"Intervals: 95 % percentile bootstrap over answers ({boot.get('resamples')} resamples, seed "
        f"{boot.get('seed')}). Each table ranks the scores by Pearson r with the human label, best first. "
        "Against `human_equivalent` a 0/1 judge also gets accuracy, Cohen's kappa and F1 against the "
        "annotators' majority (even splits left out). " + PAPER_LINE + "\n"
    )
    for label in LABELS:
        text = ranking_table(result, label)
        if text:
            parts.append(f"{head} Agreement with the {TITLES[label]}\n\n{text}\n")
    text = verdicts_table(result)
    if text:
        parts.append(
            f"{head} Judges' verdicts\n\nUnparseable and failed verdicts are counted here and left out of "
            f"every figure (never scored 0).\n\n{text}\n"
        )
    text = verbosity_table(result)
    if text:
        parts.append(
            f"{head} Verbosity bias\n\nPearson correlation of each score with log2(1 + answer tokens), over "
            "all labelled answers and at equal human label (both centred within each label value); the "
            "slope is the score's change per doubling of the answer's length at equal label. A score "
            f"without length bias is near 0 at equal label.\n\n{text}\n"
        )
    text = generators_table(result)
    if text:
        parts.append(
            f"{head} Agreement per generator\n\nEach cell: the agreement within that generator's answers "
            "(Pearson r; accuracy for a 0/1 judge against the majority 'equivalent') with its interval, then "
            "its offset: its mean score minus the mean score of all answers with the same human label. "
            "Spread: largest minus smallest agreement. p: a stratified permutation test of the generator "
            "effect (generators shuffled among answers of equal human label; statistic: the "
            "between-generator sum of squares of the score within label values). A small p says the score "
            "treats some generators' answers differently at equal human label: not neutral. Agreements "
            "alone can differ under a neutral score (a generator with nearly all answers good has a narrow "
            "label range, hence a lower correlation), which is why the test looks at the offsets.\n\n"
            f"{text}\n"
        )
    return "\n".join(parts)


# --- plots ------------------------------------------------------------------------------------


def _grid(n: int):
    plt = _pyplot()
    columns = min(n, 4)
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 3.6 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def score_vs_label(answers: Sequence[dict], result: dict[str, Any], label: str, path: Path) -> Path | None:
    """One panel per score: the score of each answer against its human label (jittered)."""
    entries = ranked(result, label)
    if not entries:
        return None
    fig, axes = _grid(len(entries))
    for ax, entry in zip(axes, entries, strict=False):
        rows = [a for a in answers if a.get(label) is not None and a.get(entry["score"]) is not None]
        x = np.array([a[label] for a in rows], dtype=float)
        y = np.array([a[entry["score"]] for a in rows], dtype=float)
        spread = 0.02 if label == "human_equivalent" else 0.08
        ax.scatter(x + _jitter(len(x), spread), y, s=10, alpha=0.6)
        r = entry["pearson"]["value"]
        ax.set_title(f"{entry['name']}: r = {r:.2f}" if r is not None else entry["name"], fontsize=8)
        ax.set_xlabel(TITLES[label], fontsize=8)
        ax.set_ylabel(entry["score"], fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def agreement_by_generator(result: dict[str, Any], label: str, path: Path) -> Path | None:
    """Bars: each score's agreement within each generator's answers, with intervals."""
    entries = ranked(result, label)
    generators = sorted({m for e in entries for m in e["bias"]["per_generator"]["models"]})
    if not entries or len(generators) < 2:
        return None
    series = {}
    for model in generators:
        values = []
        for entry in entries:
            found = entry["bias"]["per_generator"]["models"].get(model) or {}
            value, ci = found.get("value"), found.get("ci95")
            if value is None:
                values.append((np.nan, 0.0, 0.0))
            else:
                low = value - ci[0] if ci else 0.0
                high = ci[1] - value if ci else 0.0
                values.append((value, max(low, 0.0), max(high, 0.0)))
        series[model] = values
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(entries) + 2), 4.0))
    grouped_bars(ax, [e["name"] for e in entries], series)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_ylabel("agreement (Pearson r; accuracy: 0/1 judge)", fontsize=8)
    ax.set_title(f"Per generator, against the {TITLES[label]} (95 % intervals)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save(fig, path)


def score_vs_length(answers: Sequence[dict], result: dict[str, Any], path: Path) -> Path | None:
    """One panel per score: the score against log2(1 + answer tokens), one colour per generator."""
    names = {}
    for entry in _entries(result):
        names.setdefault(entry["score"], entry["name"])
    if not names:
        return None
    generators = sorted({a["model"] for a in answers})
    fig, axes = _grid(len(names))
    for ax, (column, name) in zip(axes, names.items(), strict=False):
        for model in generators:
            rows = [a for a in answers if a["model"] == model and a.get(column) is not None]
            if not rows:
                continue
            x = log_length([a["length"] for a in rows])
            y = np.array([a[column] for a in rows], dtype=float)
            ax.scatter(x + _jitter(len(x), 0.03), y, s=10, alpha=0.6, label=model)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("log2(1 + answer tokens)", fontsize=8)
        ax.set_ylabel(column, fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return save(fig, path)


def write_plots(
    answers: Sequence[dict], result: dict[str, Any], output: Path, *, with_length: bool = True
) -> dict[str, Path]:
    """The calibration plots the data allows, by title (``with_length``: also score vs length)."""
    made: dict[str, Path | None] = {}
    for label in LABELS:
        made[f"Scores vs {TITLES[label]}"] = score_vs_label(
            answers, result, label, output / f"score_vs_{label}.png"
        )
    for label in LABELS:
        made[f"Agreement with the {TITLES[label]} per generator"] = agreement_by_generator(
            result, label, output / f"agreement_by_generator_{label}.png"
        )
    if with_length:
        made["Scores vs answer length"] = score_vs_length(answers, result, output / "score_vs_length.png")
    return {title: path for title, path in made.items() if path is not None}
