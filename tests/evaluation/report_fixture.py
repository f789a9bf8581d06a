"""Evaluation outputs with known properties, in the layout and schema ``medinjection evaluate`` writes.

Three models (base, nat, trad) on a multiple-choice task scored with 2 permutations and an
open-ended task judged with both prompts. By design:

- nat answers right on far more items than base (a significant gain), trad on the same items as
  base but one (no significant difference);
- permuted options cost every model accuracy;
- the open-ended answers of nat copy the reference, those of base and trad do not; trad's answers are
  long and its judge grades high: the judge rewards length.

Summaries are computed from the prediction rows with the project's own functions (``stats.metric``,
``open_ended.summarize``, ``stats.compare_paired`` and ``benjamini_hochberg``), so the report's
numbers can be checked against the summary files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from medinjection.evaluation import stats
from medinjection.evaluation.open_ended import OEQOptions, summarize, text_metric_columns

MC = "frenchmedmcqa"
OEQ = "mediqal-oeq"
N_MC, N_OEQ, K = 60, 24, 2
RIGHT = {
    "base": set(range(0, 60, 3)),
    "nat": set(range(0, 60, 3)) | set(range(1, 60, 3)),
    "trad": set(range(0, 60, 3)) - {0},
}
TAGS = ("base", "nat", "trad")
ORIGINS = ("FrenchMedMCQA", "MediQAl", "MedQA")
"""Origins of the multiple-choice items: five (origin, type) groups, the rows of the paper's table
(two MCQ, three MCQU: the 0.5 MCQ + 0.5 MCQU aggregate is not the mean over groups)."""
REFERENCES = [
    f"Le traitement du cas {i} repose sur l'amoxicilline et la surveillance de la fièvre."
    for i in range(N_OEQ)
]


def mc_rows(tag: str) -> list[dict]:
    rows = []
    for i in range(N_MC):
        kind = "MCQ" if i % 4 == 0 else "MCQU"
        for permutation in range(K + 1):
            # under permutations: right in one of the two orders (a per-item mean of 0.5), or in both
            right = i in RIGHT[tag] and (permutation == 0 or i % 4 == 0 or (i + permutation) % 2 == 0)
            gold = ["A", "C"] if kind == "MCQ" else ["B"]
            pred = gold if right else (["A"] if kind == "MCQ" else [])
            row = {
                "id": f"mc-{i}",
                "task": MC,
                "type": kind,
                "source": "frenchmedmcqa",
                "origin": ORIGINS[2 if i % 10 == 9 else int(i % 5 >= 3)],
                "scorer": "mcq",
                "permutation": permutation,
                "options": ["A", "B", "C", "D", "E"],
                "gold": gold,
            }
            for p in ("constrained", "greedy"):
                greedy_right = right and i % 5 != 0
                letters = pred if p == "constrained" or greedy_right else []
                row[f"{p}_text"] = ", ".join(letters)
                row[p] = letters
                row[f"em_{p}"] = float(set(letters) == set(gold))
                row[f"hamming_{p}"] = (
                    len(set(letters) & set(gold)) / len(set(letters) | set(gold)) if kind == "MCQ" else None
                )
            rows.append(row)
    return rows


def oeq_rows(tag: str) -> list[dict]:
    answers = []
    for i, reference in enumerate(REFERENCES):
        if tag == "nat":
            answers.append(reference)
        elif tag == "trad":
            answers.append("Il faut discuter le traitement. " * (3 + i % 5) + "Amoxicilline.")
        else:
            answers.append("Paracétamol." if i % 2 else "L'amoxicilline est indiquée.")
    columns = text_metric_columns(answers, REFERENCES, OEQOptions(bertscore_model=None))
    rows = []
    for i, answer in enumerate(answers):
        row = {
            "id": f"oeq-{i}",
            "task": OEQ,
            "type": "OEQ",
            "source": "mediqal",
            "scorer": "oeq",
            "permutation": 0,
            "question": f"Question : quel est le traitement du cas {i} ?",
            "reference": REFERENCES[i],
            "answer_text": answer,
            "answer_tokens": len(answer.split()) * 2,
            "finished": True,
            **{name: values[i] for name, values in columns.items()},
        }
        binary = 1.0 if tag == "nat" or (tag == "trad" and i % 3) else 0.0
        graded = {"nat": 5.0, "trad": 3.0 + (i % 5) / 2, "base": 2.0}[tag]
        statuses = {"judge_binary": "ok", "judge_graded": "ok"}
        if i == 7:
            statuses["judge_binary"] = "unparseable"
        if i == 11 and tag == "base":
            statuses["judge_graded"] = "failed"
        for metric, value in (("judge_binary", binary), ("judge_graded", round(graded))):
            ok = statuses[metric] == "ok"
            row[metric] = value if ok else None
            row[f"{metric}_status"] = statuses[metric]
            row[f"{metric}_raw"] = (
                str(int(value)) if ok else ("Je pense que oui" if statuses[metric] == "unparseable" else None)
            )
            row[f"{metric}_prompt"] = f"judge-{metric.split('_')[1]}-v1"
            row[f"{metric}_model"] = "judge-model"
        rows.append(row)
    return rows


MC_METRICS = ("em_constrained", "em_greedy", "hamming_constrained", "hamming_greedy")


def mc_metrics(rows: list[dict]) -> dict:
    original = [r for r in rows if r["permutation"] == 0]
    metrics = {m: stats.metric([r[m] for r in original]) for m in MC_METRICS}
    by_id: dict[str, list[float]] = {}
    for r in rows:
        if r["permutation"] > 0:
            by_id.setdefault(r["id"], []).append(r["em_constrained"])
    perm = [sum(v) / len(v) for _, v in sorted(by_id.items())]
    orig = [r["em_constrained"] for r in sorted(original, key=lambda r: r["id"])]
    metrics["em_constrained_perm"] = stats.metric(perm)
    diff, ci = stats.paired_bootstrap(orig, perm)
    metrics["em_constrained_perm_drop"] = {"value": diff, "ci95": list(ci), "n": len(orig)}
    every = {}
    for r in rows:
        every.setdefault(r["id"], []).append(r["em_constrained"])
    metrics["em_constrained_robust"] = stats.metric([min(v) for _, v in sorted(every.items())])
    return metrics


def mc_groups(rows: list[dict]) -> list[dict]:
    """The summary's ``groups``: the four metrics per (origin, type), computed here from the rows."""
    original = [r for r in rows if r["permutation"] == 0]
    groups = []
    for origin, kind in sorted({(r["origin"], r["type"]) for r in original}):
        mine = [r for r in original if (r["origin"], r["type"]) == (origin, kind)]
        metrics = {
            m: stats.metric([r[m] for r in mine]) for m in MC_METRICS if any(r[m] is not None for r in mine)
        }
        groups.append({"origin": origin, "type": kind, "n": len(mine), "metrics": metrics})
    return groups


def write_task(root: Path, tag: str, task: str, rows: list[dict], multiple_choice: bool = True) -> None:
    """One ``<tag>/<task>/`` output: the rows and their summary (metrics and groups computed here)."""
    folder = root / tag / task
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "predictions.parquet")
    summary = {
        "schema_version": 2,
        "model": "medinjection/tiny-random-qwen3",
        "model_tag": tag,
        "adapter": None if tag == "base" else f"/runs/{tag}",
        "adapter_sha256": None if tag == "base" else (tag * 64)[:64],
        "task": task,
        "items_sha256": f"items-{task}",
        "n_items": len({r["id"] for r in rows}),
        "protocol": {"permutations": K if multiple_choice else 0, "seed": 0},
        "metrics": mc_metrics(rows) if multiple_choice else summarize(rows),
    }
    if multiple_choice:
        summary["groups"] = mc_groups(rows)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))


def write_outputs(root: Path) -> Path:
    """Write the fixture outputs under ``root`` (an evaluation output_dir) and return it."""
    rows_of: dict[tuple[str, str], list[dict]] = {}
    for tag in TAGS:
        for task, rows in ((MC, mc_rows(tag)), (OEQ, oeq_rows(tag))):
            rows_of[(tag, task)] = rows
            write_task(root, tag, task, rows, task == MC)
    # the evaluation's own comparisons: the four multiple-choice metrics, one BH family
    family = []
    for tag in ("nat", "trad"):
        for metric in MC_METRICS:
            a = {r["id"]: r[metric] for r in rows_of[(tag, MC)] if r["permutation"] == 0}
            b = {r["id"]: r[metric] for r in rows_of[("base", MC)] if r["permutation"] == 0}
            ids = sorted(a)
            result = stats.compare_paired(
                [a[i] for i in ids], [b[i] for i in ids], binary=metric.startswith("em_")
            )
            family.append(
                {"model": tag, "baseline": "base", "task": MC, "metric": metric, **result.as_dict()}
            )
    for row, p in zip(family, stats.benjamini_hochberg([r["p_value"] for r in family]), strict=True):
        row["p_adjusted"] = p
        row["significant"] = p is not None and p < 0.05
        row["verdict"] = stats.verdict(row["diff"], row["significant"])
    (root / "comparisons.json").write_text(
        json.dumps(
            {
                "schema_version": 2,
                "alpha": 0.05,
                "correction": "benjamini-hochberg",
                "families": {"vs_base": family, "pairwise": []},
            }
        )
    )
    for tag in TAGS:
        em = [r["em_constrained"] for r in rows_of[(tag, MC)] if r["permutation"] == 0]
        low, high, _ = stats.stratified_bootstrap_ci([em], "macro")
        aggregate = {
            "schema_version": 2,
            "model_tag": tag,
            "tasks": [MC, OEQ],
            "aggregated": "macro",
            "metrics": {
                "em_constrained_macro": {"value": stats.macro_mean([em]), "ci95": [low, high], "n": len(em)},
                "em_constrained_micro": {"value": stats.micro_mean([em]), "ci95": [low, high], "n": len(em)},
            },
        }
        (root / tag / "aggregate.json").write_text(json.dumps(aggregate))
    return root


def ratings_for(root: Path) -> list[dict]:
    """Human ratings of every open-ended answer: two annotators; the graded judge minus a length effect."""
    ratings = []
    for tag in TAGS:
        for row in pq.read_table(root / tag / OEQ / "predictions.parquet").to_pylist():
            human = {"nat": 5, "trad": 2, "base": 2}[tag]
            for annotator, delta in (("annotator1", 0), ("annotator2", -1 if row["id"].endswith("3") else 0)):
                ratings.append(
                    {
                        "record_id": f"{row['id']}--{tag}",
                        "item_id": row["id"],
                        "model": tag,
                        "annotator": annotator,
                        "rating": max(1, human + delta),
                        "equivalent": human >= 4,
                    }
                )
    return ratings
