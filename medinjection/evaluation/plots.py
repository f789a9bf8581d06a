"""The report's PNG plots (matplotlib, Agg): EM by mix and task, original vs permuted options,
judge score vs answer length (the plots against human labels: ``calibration_report``).

Byte-identical for the same inputs: a fixed size, resolution and style, seeded jitter, and no
``Software`` (matplotlib version) entry in the PNG metadata; PNGs carry no date.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medinjection.evaluation.calibration import answer_length
from medinjection.evaluation.report_data import display_name, mc_tasks, perm_tasks

DPI = 100
JITTER_SEED = 0


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcdefaults()
    return plt


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _value(entry: dict | None, scale: float = 100.0) -> tuple[float, float, float]:
    if not entry or entry.get("value") is None:
        return (np.nan, 0.0, 0.0)
    value = entry["value"] * scale
    ci = entry.get("ci95") or [None, None]
    low = value - ci[0] * scale if ci[0] is not None else 0.0
    high = ci[1] * scale - value if ci[1] is not None else 0.0
    return (value, max(low, 0.0), max(high, 0.0))


def grouped_bars(ax, groups: list[str], series: dict[str, list[tuple[float, float, float]]]) -> None:
    """Bars of each series (model) within each group (task), with interval error bars."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        v = np.array([t[0] for t in values])
        err = np.array([[t[1] for t in values], [t[2] for t in values]])
        ax.bar(x + (i - (len(series) - 1) / 2) * width, v, width, yerr=err, capsize=2, label=name)
    ax.set_xticks(x, groups, rotation=20, ha="right")


def em_by_mix(builder, path: Path) -> Path | None:

    tasks = mc_tasks(builder.outputs)
    if not tasks:
        return None
    has_aggregate = any(builder.aggregate(t, "em_constrained_macro") for t in builder.tags)
    groups = [*tasks, *(["aggregated (macro)"] if has_aggregate else [])]
    series = {}
    for tag in builder.tags:
        values = [_value(builder.entry(tag, b, "em_constrained")) for b in tasks]
        if has_aggregate:
            values.append(_value(builder.aggregate(tag, "em_constrained_macro")))
        series[display_name(tag)] = values
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) + 2), 4.0))
    grouped_bars(ax, groups, series)
    ax.set_ylabel("constrained exact match (%)")
    ax.set_title("Constrained EM by mix and task (95 % intervals)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return save(fig, path)


def position_bias(builder, path: Path) -> Path | None:

    tasks = perm_tasks(builder.outputs)
    if not tasks:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 4.0), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        tags = [t for t in builder.tags if builder.entry(t, task, "em_constrained_perm")]
        series = {
            "original order": [_value(builder.entry(t, task, "em_constrained")) for t in tags],
            "permuted": [_value(builder.entry(t, task, "em_constrained_perm")) for t in tags],
        }
        grouped_bars(ax, [display_name(t) for t in tags], series)
        ax.set_title(task)
        ax.set_ylabel("constrained exact match (%)")
        ax.legend(fontsize=7)
    fig.suptitle("Position bias: original vs permuted options")
    fig.tight_layout()
    return save(fig, path)


def _jitter(n: int, size: float) -> np.ndarray:
    return np.random.default_rng(JITTER_SEED).uniform(-size, size, n)


def judge_vs_length(predictions: dict[str, list[dict]], path: Path) -> Path | None:

    judges = [
        s
        for s in ("judge_binary", "judge_graded")
        if any(r.get(s) is not None for rows in predictions.values() for r in rows)
    ]
    if not judges:
        return None
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, len(judges), figsize=(4.5 * len(judges), 4.0), squeeze=False)
    for ax, judge in zip(axes[0], judges, strict=True):
        for tag, rows in predictions.items():
            kept = [r for r in rows if r.get(judge) is not None]
            if not kept:
                continue
            x = np.array([answer_length(r) + 1 for r in kept], dtype=float)
            y = np.array([r[judge] for r in kept], dtype=float)
            ax.scatter(
                x * np.exp(_jitter(len(x), 0.03)),
                y + _jitter(len(y), 0.04),
                s=12,
                alpha=0.6,
                label=display_name(tag),
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("answer length (1 + tokens, log scale)")
        ax.set_ylabel("judge score")
        ax.set_title(judge)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)


def write_plots(builder, predictions: dict[str, list[dict]], output: Path) -> dict[str, Path]:
    """Every plot the data allows, by title; plots without data are left out (the judge against
    human ratings: ``calibration_report.write_plots``)."""

    made: dict[str, Any] = {
        "Constrained EM by mix and task": em_by_mix(builder, output / "em_by_mix.png"),
        "Original vs permuted options": position_bias(builder, output / "position_bias.png"),
    }
    if predictions:
        made["Judge score vs answer length"] = judge_vs_length(predictions, output / "judge_vs_length.png")
    return {name: path for name, path in made.items() if path is not None}
