"""Where evaluation writes, and reading it back.

::

    OUTPUT/
      <model_tag>/<task>/predictions.parquet   one row per item and permutation
      <model_tag>/<task>/summary.json          metrics with intervals, what was scored, how
      <model_tag>/<task>/rejected.jsonl        rows that could not be scored (skip_bad_rows)
      <model_tag>/aggregate.json               micro, macro and halves means over its tasks
      comparisons.json                         paired tests, Benjamini-Hochberg adjusted

``model_tag`` is ``base`` for the base model and the run folder's name (the mix) for an adapter;
a full evaluation's summaries of an adapter are also written to ``RUN_DIR/eval/<task>/summary.json``
(a subset's, ``limit``, never: it must not replace the run's real scores).

Schema 2 (``schema_version``): an evaluation set is a *task*. A summary names it (``task``,
``task_spec``); a prediction row names its ``task`` and the ``scorer`` that scored it (``mcq``,
``oeq``). A summary of another schema is an error naming the file (its keys mean something else).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from medinjection.core import files
from medinjection.core.files import write_json
from medinjection.core.runs import PREDICTIONS, SUMMARY, SUMMARY_SCHEMA, RunLayout, check_summary_schema

BASE_TAG = "base"
AGGREGATE = "aggregate.json"
COMPARISONS = "comparisons.json"
REJECTED = "rejected.jsonl"
SCHEMA_VERSION = SUMMARY_SCHEMA


class OutputError(ValueError):
    """A file of an output folder that cannot be read (corrupt, truncated); the message names it."""


def task_dir(output: str | Path, tag: str, task: str) -> Path:
    return Path(output) / tag / task


def read_json(path: Path, error: type[Exception] = OutputError) -> dict:
    """A JSON object of an output folder (summary, aggregate, comparisons); a file that does not
    parse, or holds no object, is an ``error`` (``OutputError`` unless the caller has its own) naming it."""
    return files.read_json(path, error, expect=dict)


def read_summary(path: Path, error: type[Exception] = OutputError) -> dict:
    """An evaluation ``summary.json`` of this schema; anything else is an ``error`` naming the file."""
    summary = read_json(path, error)
    check_summary_schema(summary, path, error)
    return summary


def write_predictions(
    path: Path,
    rows: list[dict[str, Any]],
    float_columns: tuple[str, ...] = (),
    string_columns: tuple[str, ...] = (),
) -> str:
    """Write rows (the union of their columns, null where a row lacks one); returns the file's sha256.

    ``float_columns`` (the metric columns) are stored as float64 and ``string_columns`` as strings
    even when every row is null (e.g. Hamming on a task without multi-answer items), so files of
    different tasks concatenate.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: list[str] = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    table = pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows])
    for names, kind in ((float_columns, pa.float64()), (string_columns, pa.string())):
        for name in names:
            if name in table.column_names and pa.types.is_null(table.schema.field(name).type):
                table = table.set_column(
                    table.column_names.index(name), name, pa.nulls(table.num_rows, type=kind)
                )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.parquet")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_predictions(path: Path) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise OutputError(f"{path}: not a readable Parquet file ({err})") from None


def write_rejected(path: Path, rejected: list[dict]) -> None:
    if not rejected:
        if path.exists():
            path.unlink()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rejected:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def scored_outputs(output: Path) -> dict[str, dict[str, Path]]:
    """``{model_tag: {task: folder}}`` of every folder holding both a summary and predictions."""
    found: dict[str, dict[str, Path]] = {}
    for summary in sorted(Path(output).glob(f"*/*/{SUMMARY}")):
        folder = summary.parent
        if (folder / PREDICTIONS).is_file():
            found.setdefault(folder.parent.name, {})[folder.name] = folder
    return found


def incomplete_outputs(output: Path) -> dict[str, dict[str, list[str]]]:
    """``{model_tag: {task: [missing file names]}}`` of every folder holding one of a summary and its
    predictions but not the other (a scoring interrupted, a file deleted): not a scored output."""
    found: dict[str, dict[str, list[str]]] = {}
    for folder in sorted(
        {p.parent for name in (SUMMARY, PREDICTIONS) for p in Path(output).glob(f"*/*/{name}")}
    ):
        missing = [name for name in (SUMMARY, PREDICTIONS) if not (folder / name).is_file()]
        if missing:
            found.setdefault(folder.parent.name, {})[folder.name] = missing
    return found


def reusable(folder: Path, fingerprint: dict[str, Any]) -> bool:
    """Whether ``folder`` already holds this exact scoring (same model, artefact, items, protocol)."""
    summary_path, predictions = folder / SUMMARY, folder / PREDICTIONS
    if not (summary_path.is_file() and predictions.is_file()):
        return False
    try:
        summary = read_json(summary_path)
    except OutputError as err:
        raise OutputError(f"{err}; score it again with --overwrite") from None
    if summary.get("schema_version") != SCHEMA_VERSION or summary.get("fingerprint") != fingerprint:
        return False
    return hashlib.sha256(predictions.read_bytes()).hexdigest() == summary.get("predictions_sha256")


def write_run_copy(summary: dict[str, Any]) -> Path | None:
    """Copy an adapter's summary into its run folder when it scored every item of its task and the files
    there are still the scored ones; returns the copy's path, or None when none was written."""
    adapter = summary.get("adapter")
    if not adapter or summary.get("subsample"):
        return None  # a smoke run (limit) must never replace the run's evaluation of the whole task
    layout = RunLayout(Path(adapter))
    if not layout.is_run() or layout.adapter_sha256() != summary.get("adapter_sha256"):
        return None  # the folder now holds other adapter files: its eval/ must not claim these scores
    path = layout.summary_path(summary["task"])
    write_json(path, summary)
    return path
