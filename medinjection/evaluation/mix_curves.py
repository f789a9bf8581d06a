"""Constrained EM against a mix's size and against its native share: learning curves and provenance
ratios from models whose run manifests carry a mix file's mix (weights, size).

A point is one scored adapter: its mix (the ``mixes.json`` entry its manifest copied: the mix's
``name`` in the mix file, its provenance ``weights``, its ``size``), and one figure of its summaries
with the 95 % interval (by default the macro mean of ``em_constrained`` over the tasks scored, as
the report's aggregated column). Sizes of one mix give a learning curve; mixes of different weights
at one size give the effect of the native share. Pure functions, plus one byte-stable plot.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medinjection.evaluation.plots import save


@dataclass(frozen=True)
class MixPoint:
    tag: str
    mix: str  # the mix's name in its mix file (sizes of one mix share it)
    size: int
    native_share: float
    value: float
    ci95: tuple[float | None, float | None]


def native_share(weights: dict[str, float]) -> float:
    total = sum(weights.values())
    return weights.get("native", 0.0) / total if total else 0.0


def mix_points(mixes: dict[str, dict], figures: dict[str, dict | None]) -> list[MixPoint]:
    """One point per model tag with both a mix entry (``weights``, ``size``; ``mix`` for its family)
    and a figure ``{"value", "ci95"}``; sorted by mix, then size."""
    points = []
    for tag, entry in mixes.items():
        figure = figures.get(tag)
        if not entry or not entry.get("weights") or not entry.get("size") or not figure:
            continue
        if figure.get("value") is None:
            continue
        ci = tuple(figure.get("ci95") or (None, None))
        points.append(
            MixPoint(
                tag,
                entry.get("mix") or tag,
                int(entry["size"]),
                native_share(entry["weights"]),
                figure["value"],
                ci,
            )
        )
    return sorted(points, key=lambda p: (p.mix, p.size, p.tag))


def curves(points: list[MixPoint]) -> dict[str, list[MixPoint]]:
    """The points of each mix with at least two sizes (a learning curve), by mix."""
    by_mix: dict[str, list[MixPoint]] = defaultdict(list)
    for point in points:
        by_mix[point.mix].append(point)
    return {
        mix: sorted(ps, key=lambda p: p.size)
        for mix, ps in sorted(by_mix.items())
        if len({p.size for p in ps}) > 1
    }


def table(points: list[MixPoint]) -> list[dict[str, Any]]:
    return [
        {
            "model": p.tag,
            "mix": p.mix,
            "size": p.size,
            "native_share": round(p.native_share, 4),
            "value": p.value,
            "ci95": list(p.ci95),
        }
        for p in points
    ]


def plot(points: list[MixPoint], path: Path, label: str = "constrained EM, macro (%)") -> Path | None:
    """EM against size (one line per mix, log scale) and against the native share; None without points."""
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcdefaults()
    fig, (by_size, by_share) = plt.subplots(1, 2, figsize=(10, 4))

    def bars(ps):
        low = [100 * (p.value - p.ci95[0]) if p.ci95[0] is not None else 0.0 for p in ps]
        high = [100 * (p.ci95[1] - p.value) if p.ci95[1] is not None else 0.0 for p in ps]
        return [max(v, 0.0) for v in low], [max(v, 0.0) for v in high]

    by_mix: dict[str, list[MixPoint]] = defaultdict(list)
    for p in points:
        by_mix[p.mix].append(p)
    for mix, ps in sorted(by_mix.items()):
        ps = sorted(ps, key=lambda p: p.size)
        by_size.errorbar(
            [p.size for p in ps], [100 * p.value for p in ps], yerr=bars(ps), marker="o", capsize=3, label=mix
        )
    by_size.set_xscale("log")
    sizes = sorted({p.size for p in points})
    by_size.set_xticks(sizes, [str(s) for s in sizes])  # the sizes trained, not log-scale decades
    by_size.minorticks_off()
    by_size.set_xlabel("train examples")
    by_size.set_ylabel(label)
    by_size.set_title("EM against mix size")
    by_size.legend(fontsize=7)
    by_share.errorbar(
        [p.native_share for p in points],
        [100 * p.value for p in points],
        yerr=bars(points),
        fmt="o",
        capsize=3,
    )
    labels: dict[tuple[float, float], list[str]] = defaultdict(list)
    for p in points:  # one label per place: points at the same share and value share it
        labels[(p.native_share, 100 * p.value)].append(p.tag)
    for place, tags in sorted(labels.items()):
        by_share.annotate(", ".join(tags), place, fontsize=6, xytext=(3, 3), textcoords="offset points")
    by_share.set_xlabel("native share of the mix")
    by_share.set_xlim(-0.05, 1.05)
    by_share.set_title("EM against native share")
    fig.tight_layout()
    return save(fig, path)
