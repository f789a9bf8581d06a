"""``medinjection judge``: judge the open-ended answers of evaluation outputs already written.

For each ``OUTPUT/<model_tag>/<task>/`` folder with open-ended rows: the judge's verdicts
become columns of ``predictions.parquet`` (``judge_binary``, ``judge_binary_status``, ...), the
summary's judge entries are recomputed from them (with the bootstrap settings the summary
records), the summary is rewritten (and its run-folder copy, when the adapter files are still the
scored ones), then the model's ``aggregate.json`` and the output folder's ``comparisons.json``.

Judging again is free: every verdict is in the response cache (default
``OUTPUT/judge-cache.sqlite``), so only answers never judged, or whose request failed, are asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medinjection.core.runs import PREDICTIONS, SUMMARY
from medinjection.evaluation.judge import JUDGE_CACHE, STATUSES, JudgeError, JudgeSettings


@dataclass
class Judged:
    folder: Path
    n_answers: int
    counts: dict[str, dict[str, int]]  # metric -> status -> count
    usage: dict[str, Any]


def output_root(path: Path) -> Path:
    """The evaluation output folder of a predictions file (``OUTPUT/<tag>/<bench>/predictions.parquet``)
    or of a folder given directly."""
    path = Path(path)
    return path.parents[2] if path.is_file() else path


def judged_folders(path: Path) -> list[Path]:
    """The ``<tag>/<task>`` folders to judge: the file's own, or every scored one under a folder."""
    from medinjection.core.outputs import scored_outputs

    path = Path(path)
    if path.is_file():
        if path.name != PREDICTIONS or not (path.parent / SUMMARY).is_file():
            raise JudgeError(f"{path}: not a {PREDICTIONS} with its {SUMMARY} beside it (an evaluate output)")
        return [path.parent]
    if not path.is_dir():
        raise JudgeError(f"{path}: no such file or folder")
    folders = [folder for tasks in scored_outputs(path).values() for folder in tasks.values()]
    if not folders:
        raise JudgeError(f"{path}: no <model_tag>/<task>/{PREDICTIONS} with a {SUMMARY} under it")
    return sorted(folders)


def judge_folder(folder: Path, settings: JudgeSettings) -> Judged | None:
    """Judge one output folder in place; ``None`` when it holds no open-ended rows."""
    from medinjection.core.outputs import read_predictions, read_summary, write_json, write_predictions
    from medinjection.evaluation.open_ended import JUDGE_METRICS, add_judgments
    from medinjection.evaluation.scoring import resummarize

    doc = read_summary(folder / SUMMARY)  # first: a summary of another schema names its rows otherwise
    rows = read_predictions(folder / PREDICTIONS)
    oeq = [row for row in rows if row.get("scorer") == "oeq"]
    if not oeq:
        return None
    usage = add_judgments(oeq, settings)
    write_predictions(folder / PREDICTIONS, rows)
    doc["judge"] = {**settings.describe(), "usage": usage}
    write_json(folder / SUMMARY, doc)
    resummarize(folder)  # metrics (the judge's with their counts), predictions_sha256, the run copy
    counts = {
        metric: {s: sum(r.get(f"{metric}_status") == s for r in oeq) for s in STATUSES}
        for metric in (m for m in JUDGE_METRICS if any(r.get(f"{m}_status") for r in oeq))
    }
    return Judged(folder, len(oeq), counts, usage)


def judge_outputs(path: Path, settings: JudgeSettings, log: Callable[[str], None] = print) -> list[Judged]:
    """Judge every output folder of ``path``, then refresh the aggregates and the comparisons."""
    from medinjection.core.outputs import read_summary
    from medinjection.evaluation.aggregation import write_aggregate
    from medinjection.evaluation.compare import update_comparisons
    from medinjection.evaluation.stats import RESAMPLES, SEED

    done = []
    for folder in judged_folders(path):
        judged = judge_folder(folder, settings)
        if judged is None:
            continue
        done.append(judged)
        line = "; ".join(
            f"{metric}: {c['ok']} verdicts, {c['unparseable']} unparseable, {c['failed']} failed"
            for metric, c in judged.counts.items()
        )
        log(f"{folder.parent.name} / {folder.name}: {judged.n_answers} answers; {line}")
    if not done:
        raise JudgeError(f"{path}: no open-ended answers to judge")
    root = output_root(path)
    boot = read_summary(done[0].folder / SUMMARY).get("bootstrap") or {}
    resamples, seed = int(boot.get("resamples", RESAMPLES)), int(boot.get("seed", SEED))
    for tag_dir in sorted({j.folder.parent for j in done}):
        write_aggregate(root, tag_dir.name, resamples=resamples, seed=seed)
    update_comparisons(root, resamples=resamples, seed=seed)
    return done


__all__ = ["JUDGE_CACHE", "Judged", "judge_folder", "judge_outputs", "judged_folders"]
