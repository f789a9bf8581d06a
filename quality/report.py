"""The review report: error rates with Wilson intervals, agreement, error types and the exclusion list.

Input: the pulled review records, plain dicts (see ``quality.review.pull_records``)::

    {"id": "...", "metadata": {"provenance": ..., "source": ..., ...},
     "responses": [{"user": "alice", "status": "submitted", "values": {"answer_correct": "incorrect", ...}}]}

Rules (also written into the report under ``rules``):

- Only ``submitted`` responses count; drafts and discarded responses are ignored.
- A record is *reviewed* when it has at least one submitted ``answer_correct``.
- A record is *judged incorrect* when strictly more than half of its submitted ``answer_correct``
  responses say ``incorrect`` (1 of 1, 2 of 2, 2 of 3; not 1 of 2). Judged-incorrect ids form the
  exclusion list.
- Error rate of a group = judged incorrect / reviewed, with a 95% Wilson score interval.
- Agreement on ``answer_correct``: Krippendorff's alpha (nominal) over every record with at least
  two submitted answers, and Cohen's kappa for each pair of annotators over the records both answered.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from itertools import combinations
from pathlib import Path
from statistics import NormalDist
from typing import Any

CORRECT_QUESTION = "answer_correct"
Z95 = NormalDist().inv_cdf(0.975)

RULES = {
    "counted_responses": "submitted responses only",
    "reviewed": "a record with at least one submitted answer_correct response",
    "incorrect": "strictly more than half of a record's submitted answer_correct responses say 'incorrect'",
    "error_rate": "records judged incorrect / records reviewed",
    "confidence_interval": "95% Wilson score interval",
    "agreement": "answer_correct labels: Krippendorff's alpha (nominal) over records with >= 2 submitted "
    "answers; Cohen's kappa per annotator pair over the records both answered",
    "screen_agreement": "for each threshold t, records scored below t by the quality screen are flagged; "
    "precision = flagged and judged incorrect / flagged, recall = flagged and judged incorrect / judged "
    "incorrect, over the reviewed records with a score (95% Wilson intervals)",
    "excluded": "the ids of the records judged incorrect",
}


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (``(0, 1)`` when ``n`` is 0)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def krippendorff_alpha_nominal(units: Iterable[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data; ``units``: the values given to each unit (missing left out).

    Units with fewer than two values are not pairable and are ignored. ``None`` when undefined (no
    pairable unit, or a single value used throughout: no expected disagreement).
    """
    coincidence: Counter = Counter()
    for values in units:
        m = len(values)
        if m < 2:
            continue
        for i, a in enumerate(values):
            for j, b in enumerate(values):
                if i != j:
                    coincidence[(a, b)] += 1 / (m - 1)
    n_c: Counter = Counter()
    for (a, _b), weight in coincidence.items():
        n_c[a] += weight
    n = sum(n_c.values())
    if n <= 1:
        return None
    observed = sum(w for (a, b), w in coincidence.items() if a != b)
    expected = sum(n_c[a] * n_c[b] for a in n_c for b in n_c if a != b)
    if expected == 0:
        return None
    return 1 - (n - 1) * observed / expected


def cohen_kappa(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    """Cohen's kappa for two raters; ``pairs``: (rater 1 label, rater 2 label) per item. ``None`` if undefined."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[label] * second[label] for label in first) / (n * n)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


def submitted(record: dict) -> list[dict]:
    return [r for r in record.get("responses", []) if r.get("status") == "submitted"]


def correctness_labels(record: dict) -> dict[str, str]:
    """{annotator: answer_correct label} of the record's submitted responses."""
    return {
        r["user"]: r["values"][CORRECT_QUESTION]
        for r in submitted(record)
        if r["values"].get(CORRECT_QUESTION) is not None
    }


def verdict(record: dict) -> str | None:
    """``incorrect`` (strict majority says so), ``ok``, or ``None`` when not reviewed."""
    labels = list(correctness_labels(record).values())
    if not labels:
        return None
    return "incorrect" if sum(label == "incorrect" for label in labels) * 2 > len(labels) else "ok"


def rate(incorrect: int, reviewed: int) -> dict[str, Any]:
    low, high = wilson_interval(incorrect, reviewed)
    return {
        "reviewed": reviewed,
        "incorrect": incorrect,
        "rate": incorrect / reviewed if reviewed else None,
        "ci95": [low, high],
    }


def error_rates(records: Sequence[dict], key: str) -> dict[str, dict]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for record in records:
        outcome = verdict(record)
        if outcome is None:
            continue
        group = str(record["metadata"].get(key, ""))
        counts[group][1] += 1
        counts[group][0] += outcome == "incorrect"
    return {group: rate(*counts[group]) for group in sorted(counts)}


def agreement(records: Sequence[dict]) -> dict[str, Any]:
    per_record = [correctness_labels(record) for record in records]
    alpha = krippendorff_alpha_nominal([list(labels.values()) for labels in per_record])
    annotators = sorted({user for labels in per_record for user in labels})
    kappas = []
    for a, b in combinations(annotators, 2):
        pairs = [(labels[a], labels[b]) for labels in per_record if a in labels and b in labels]
        if pairs:
            kappas.append({"annotators": [a, b], "items": len(pairs), "kappa": cohen_kappa(pairs)})
    return {
        "question": CORRECT_QUESTION,
        "krippendorff_alpha_nominal": alpha,
        "units": sum(len(labels) >= 2 for labels in per_record),
        "cohen_kappa": kappas,
    }


def mean_rating(records: Sequence[dict], question: str, key: str) -> dict[str, dict]:
    values: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for response in submitted(record):
            value = response["values"].get(question)
            if value is not None:
                values[str(record["metadata"].get(key, ""))].append(float(value))
    return {group: {"mean": sum(v) / len(v), "responses": len(v)} for group, v in sorted(values.items())}


THRESHOLDS = (2, 3, 4, 5)


def screen_agreement(records: Sequence[dict]) -> dict[str, Any] | None:
    """How well the quality screen's score predicts the reviewers' verdict, for each threshold ``t``:
    an item is *flagged* when its score is below ``t`` and *wrong* when reviewers judged it incorrect;
    precision = flagged and wrong / flagged, recall = flagged and wrong / wrong (Wilson intervals), over
    the reviewed records that carry a score (None when none does)."""
    scored = [
        (int(r["metadata"]["quality_score"]), verdict(r) == "incorrect")
        for r in records
        if verdict(r) is not None and r.get("metadata", {}).get("quality_score") is not None
    ]
    if not scored:
        return None
    wrong = sum(w for _, w in scored)
    rows = []
    for t in THRESHOLDS:
        flagged = [w for s, w in scored if s < t]
        hits = sum(flagged)
        rows.append(
            {
                "threshold": t,
                "rule": f"score < {t}",
                "flagged": len(flagged),
                "flagged_and_wrong": hits,
                "precision": hits / len(flagged) if flagged else None,
                "precision_ci95": list(wilson_interval(hits, len(flagged))) if flagged else [None, None],
                "recall": hits / wrong if wrong else None,
                "recall_ci95": list(wilson_interval(hits, wrong)) if wrong else [None, None],
            }
        )
    return {"reviewed_with_score": len(scored), "judged_incorrect": wrong, "thresholds": rows}


def build_report(
    records: Sequence[dict], dataset: str = "", workspace: str = "", min_submitted: int = 2
) -> dict[str, Any]:
    """The report dict (keys documented in docs/architecture.md (Quality review))."""
    reviewed = [r for r in records if verdict(r) is not None]
    incorrect = sorted(r["id"] for r in reviewed if verdict(r) == "incorrect")
    error_types = Counter()
    for record in records:
        for response in submitted(record):
            error_types.update(response["values"].get("error_types") or [])
    annotators = sorted({r["user"] for record in records for r in submitted(record)})
    return {
        "dataset": dataset,
        "workspace": workspace,
        "rules": RULES,
        "records": {
            "total": len(records),
            "reviewed": len(reviewed),
            "complete": sum(len(correctness_labels(r)) >= min_submitted for r in records),
            "min_submitted": min_submitted,
            "submitted_responses": sum(len(submitted(r)) for r in records),
        },
        "annotators": annotators,
        "error_rate": {
            "overall": rate(len(incorrect), len(reviewed)),
            "by_provenance": error_rates(records, "provenance"),
            "by_source": error_rates(records, "source"),
        },
        "agreement": agreement(records),
        "error_types": [
            {"error_type": name, "count": n}
            for name, n in sorted(error_types.items(), key=lambda x: (-x[1], x[0]))
        ],
        "language_quality": mean_rating(records, "language_quality", "provenance"),
        "translation_faithfulness": mean_rating(records, "translation_faithfulness", "provenance"),
        "screen_agreement": screen_agreement(records),
        "excluded": incorrect,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def to_markdown(report: dict[str, Any]) -> str:
    rec = report["records"]
    lines = [
        f"# Review report: {report['dataset'] or 'review'}",
        "",
        f"{rec['reviewed']} of {rec['total']} sampled records reviewed ({rec['complete']} by at least "
        f"{rec['min_submitted']} annotators; {rec['submitted_responses']} submitted responses from "
        f"{len(report['annotators'])} annotators).",
        "",
        "## Error rate",
        "",
        "A record is judged incorrect when strictly more than half of its submitted answers to "
        '"is the answer correct" say incorrect. Intervals: 95% Wilson score.',
        "",
        "| group | reviewed | incorrect | error rate | 95% CI |",
        "|---|---:|---:|---:|---|",
    ]
    rows = [("all", report["error_rate"]["overall"])]
    rows += [(f"provenance: {k}", v) for k, v in report["error_rate"]["by_provenance"].items()]
    rows += [(f"source: {k}", v) for k, v in report["error_rate"]["by_source"].items()]
    for name, value in rows:
        low, high = value["ci95"]
        lines.append(
            f"| {name} | {value['reviewed']} | {value['incorrect']} | {_pct(value['rate'])} | {_pct(low)} – {_pct(high)} |"
        )
    agr = report["agreement"]
    lines += [
        "",
        "## Inter-annotator agreement (is the answer correct)",
        "",
        f"Krippendorff's alpha (nominal): {_num(agr['krippendorff_alpha_nominal'])} over {agr['units']} records.",
        "",
    ]
    if agr["cohen_kappa"]:
        lines += ["| annotators | shared records | Cohen's kappa |", "|---|---:|---:|"]
        lines += [
            f"| {' / '.join(k['annotators'])} | {k['items']} | {_num(k['kappa'])} |"
            for k in agr["cohen_kappa"]
        ]
        lines.append("")
    lines += ["## Most frequent error types", ""]
    lines += [f"- {e['error_type']}: {e['count']}" for e in report["error_types"]] or ["- none reported"]
    lines += ["", "## Ratings (mean of submitted responses, 1–5)", ""]
    for title, key in (
        ("language quality", "language_quality"),
        ("translation faithfulness", "translation_faithfulness"),
    ):
        for group, value in report[key].items():
            lines.append(f"- {title}, {group}: {value['mean']:.2f} ({value['responses']} responses)")
    screen = report.get("screen_agreement")
    if screen:
        lines += [
            "",
            "## The quality screen against the reviewers",
            "",
            f"{screen['reviewed_with_score']} reviewed records carry a quality screen score; "
            f"{screen['judged_incorrect']} of them were judged incorrect.",
            "",
            "| flag when | flagged | flagged and incorrect | precision [95% CI] | recall [95% CI] |",
            "|---|---:|---:|---|---|",
        ]
        for row in screen["thresholds"]:
            lines.append(
                f"| {row['rule']} | {row['flagged']} | {row['flagged_and_wrong']} | "
                f"{_pct(row['precision'])} [{_pct(row['precision_ci95'][0])}, {_pct(row['precision_ci95'][1])}] | "
                f"{_pct(row['recall'])} [{_pct(row['recall_ci95'][0])}, {_pct(row['recall_ci95'][1])}] |"
            )
    lines += ["", f"## Excluded from the next build: {len(report['excluded'])} records", ""]
    lines += [f"- `{rid}`" for rid in report["excluded"]]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: str | Path) -> Path:
    """Error rate per provenance and per source with the 95% Wilson intervals, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [(f"provenance: {k}", v) for k, v in report["error_rate"]["by_provenance"].items()]
    groups += [(f"source: {k}", v) for k, v in report["error_rate"]["by_source"].items()]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(groups) + 1.5))
    names = [name for name, _ in groups]
    rates = [v["rate"] or 0.0 for _, v in groups]
    lower = [r - v["ci95"][0] for r, (_, v) in zip(rates, groups, strict=True)]
    upper = [v["ci95"][1] - r for r, (_, v) in zip(rates, groups, strict=True)]
    ax.barh(names, rates, xerr=[lower, upper], capsize=4, color="#c0504d")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("error rate (95% Wilson interval)")
    ax.set_title(f"Review: {report['dataset'] or 'sample'}")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_exclusion_list(report: dict[str, Any], path: str | Path) -> Path:
    """One id per line, ``#`` comments first; the format the build's ``filters.review`` reads."""
    path = Path(path)
    header = f"# records judged incorrect in review {report['dataset']!r}: {RULES['incorrect']}\n"
    path.write_text(header + "".join(f"{rid}\n" for rid in report["excluded"]), encoding="utf-8")
    return path


def write_report(report: dict[str, Any], folder: str | Path, stem: str = "review_report") -> dict[str, Path]:
    """``<stem>.json``, ``<stem>.md``, ``<stem>.png`` and ``excluded_ids.txt`` in ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": folder / f"{stem}.json",
        "markdown": folder / f"{stem}.md",
        "plot": folder / f"{stem}.png",
        "excluded": folder / "excluded_ids.txt",
    }
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["markdown"].write_text(to_markdown(report), encoding="utf-8")
    plot(report, paths["plot"])
    write_exclusion_list(report, paths["excluded"])
    return paths
