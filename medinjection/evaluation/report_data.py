"""What the report and its plots read: the scored outputs of one evaluation folder, the models in the
report's order with their display names, and the ratings table.

Reading only: ``report.py`` builds the tables and verdicts, ``plots.py`` draws; both stand on this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medinjection.core.files import read_jsonl
from medinjection.core.outputs import read_json, read_summary, scored_outputs
from medinjection.dataset_builders.mixes import MIXES

PAPER_MIXES = tuple(MIXES)
BASE = "base"
MARKS = {"better": "▲", "worse": "▼", "no difference": "="}
OEQ_COLUMNS = (
    ("bleu", "BLEU"),
    ("bleu_sentence", "BLEU (sent.)"),
    ("rouge2", "ROUGE-2"),
    ("meteor", "METEOR"),
    ("bertscore_f1", "BERTScore-F1"),
    ("judge_binary", "Judge 0/1"),
    ("judge_graded", "Judge 1-5"),
)
# How a metric is printed: "pct" = fraction x 100, "raw" = as is (BLEU 0-100, judge grade 1-5).
RAW_METRICS = {"bleu", "bleu_sentence", "judge_graded"}
BINARY_METRICS = {"judge_binary"}


class ReportError(ValueError):
    pass


@dataclass
class Output:
    tag: str
    task: str
    summary: dict[str, Any]
    predictions: Path
    _rows: list[dict[str, Any]] | None = field(default=None, repr=False)

    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            from medinjection.core.outputs import read_predictions

            self._rows = read_predictions(self.predictions) if self.predictions.is_file() else []
        return self._rows

    def metric(self, name: str) -> dict[str, Any] | None:
        return (self.summary.get("metrics") or {}).get(name)


def model_order(tags: set[str]) -> list[str]:
    """base first, then the paper's mixes in its order, then any other tag by name."""
    known = [t for t in (BASE, *PAPER_MIXES) if t in tags]
    return known + sorted(tags - set(known))


def display_name(tag: str) -> str:
    return "Base" if tag == BASE else tag.upper().replace("_", "-") if tag in PAPER_MIXES else tag


def read_outputs(root: str | Path) -> list[Output]:
    """Every scored ``<model_tag>/<task>/`` under ``root`` (``outputs.scored_outputs``), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise ReportError(f"{root}: no such folder (give the output_dir of `medinjection evaluate`)")
    outputs = []
    for tag, tasks in sorted(scored_outputs(root).items()):
        for _, folder in sorted(tasks.items()):
            path = folder / "summary.json"
            summary = read_summary(path, ReportError)
            for key in ("task", "metrics"):
                if key not in summary:
                    raise ReportError(f"{path}: no {key!r} (not an evaluation summary)")
            outputs.append(
                Output(
                    summary.get("model_tag") or tag,
                    summary["task"],
                    summary,
                    folder / "predictions.parquet",
                )
            )
    if not outputs:
        raise ReportError(
            f"{root}: no <model_tag>/<task>/summary.json with its predictions.parquet "
            "(run `medinjection evaluate` first)"
        )
    return outputs


def read_optional_json(path: Path) -> dict[str, Any] | None:
    """An optional JSON file of the output folder (``None`` when absent; a corrupt one is an error)."""
    return read_json(path, ReportError) if path.is_file() else None


def read_ratings(path: str | Path) -> list[dict[str, Any]]:
    """The ratings table, each row carrying its place (``_where``: file and line or row) so that
    ``calibration.human_scores`` names the row of a label off the scale."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no such ratings table (`medinjection quality ratings pull` writes it)")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        return [{**row, "_where": f"{path}, row {number}"} for number, row in enumerate(rows, start=1)]
    if path.suffix == ".jsonl":
        rows = []
        for number, row in read_jsonl(path, ReportError):
            if not isinstance(row, dict):
                raise ReportError(f"{path}, line {number}: not a JSON object")
            rows.append({**row, "_where": f"{path}, line {number}"})
        return rows
    raise ReportError(f"{path}: a ratings table is .parquet or .jsonl")


def mc_tasks(outputs: list[Output]) -> list[str]:
    return sorted({o.task for o in outputs if o.metric("em_constrained")})


def oeq_tasks(outputs: list[Output]) -> list[str]:
    return sorted({o.task for o in outputs if o.metric("rouge2") or o.metric("bleu")})


def perm_tasks(outputs: list[Output]) -> list[str]:
    return sorted({o.task for o in outputs if o.metric("em_constrained_perm")})
