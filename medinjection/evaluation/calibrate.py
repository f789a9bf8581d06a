"""``medinjection calibrate``: which judge and which metric agree with your clinicians, before a long
evaluation trusts them.

    medinjection calibrate answers.jsonl --output calib/
    medinjection calibrate answers.jsonl --output calib/ \\
        --judge google/medgemma-27b-text-it --judge-base-url http://127.0.0.1:8000/v1 \\
        --judge gpt-4.1-mini --judge-base-url https://api.openai.com/v1 \\
        --prompt binary-lenient-v1 --prompt my-prompts/strict.yaml --bertscore-model bert-base-multilingual-cased

Input (JSONL, CSV or Parquet): one row per annotation of an answer: ``id`` (the question), ``question``,
``reference``, ``answer``, ``model`` (the generator), and at least one human label, ``human_equivalent``
(0/1, yes/no, oui/non, true/false) and/or ``human_rating`` (an integer 1-5); optional ``annotator``
(several rows of one answer, one per annotator, are averaged; rows of one answer without an
annotator count as separate annotations; one annotator twice is an error) and ``answer_tokens``
(the answer's length in tokens, for all answers or none; words otherwise). The rows of one answer
must carry the same question, reference and answer text. A bad row stops the run with its line and
field.

Every answer is scored with the evaluation's per-answer metrics (``text_metrics``: ``bleu_sentence``,
``rouge2``, ``meteor``, ``bertscore_f1`` with ``--bertscore-model``) and by each judge given, with
each prompt (``judge.judge_items``: strict verdicts, the response cache; give ``--cache`` the
evaluation's ``judge-cache.sqlite`` and nothing judged there is asked again; a killed run resumes).
``calibration.calibrate_answers`` computes every figure; written: ``calibration.json``,
``calibration.md`` and the plots (``calibration_report``). Judges pair with ``--judge-backend`` and
``--judge-base-url`` by position (one value applies to every judge); every judge runs every prompt.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medinjection.core.files import read_jsonl, write_json, write_text_atomic
from medinjection.evaluation.calibration import (
    LABELS,
    CalibrationError,
    Score,
    answer_length,
    calibrate_answers,
    parse_label,
)

TEXT_FIELDS = ("id", "question", "reference", "answer", "model")
FORMATS = (".jsonl", ".csv", ".parquet")
RESULT, MARKDOWN = "calibration.json", "calibration.md"
JUDGE_CACHE = "judge-cache.sqlite"


@dataclass
class Labelled:
    """The answers of a labelled set (one row per answer, labels averaged over its annotators)."""

    source: Path
    answers: list[dict[str, Any]]
    rows: int
    annotators: int
    length_unit: str


def _rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(where, row)`` of every row: ``<file>, line N`` (JSONL, CSV) or ``<file>, row N`` (Parquet)."""
    if not path.is_file():
        raise CalibrationError(f"{path}: no such file")
    if path.suffix == ".jsonl":
        out = []
        for number, row in read_jsonl(path, CalibrationError):
            if not isinstance(row, dict):
                raise CalibrationError(f"{path}, line {number}: not a JSON object")
            out.append((f"{path}, line {number}", row))
        return out
    if path.suffix == ".csv":
        try:
            with path.open(encoding="utf-8-sig", newline="") as handle:
                reader = csv.DictReader(handle)
                return [(f"{path}, line {reader.line_num}", dict(row)) for row in reader]
        except UnicodeDecodeError as err:
            raise CalibrationError(f"{path}: not UTF-8 text ({err})") from None
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as err:
            raise CalibrationError(f"{path}: not a readable Parquet file ({err})") from None
        return [(f"{path}, row {number}", row) for number, row in enumerate(rows, start=1)]
    raise CalibrationError(f"{path}: a labelled answer set is {', '.join(FORMATS)}")


def _tokens(where: str, value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number.is_integer() or number < 0:
        raise CalibrationError(f"{where}: field 'answer_tokens': {value!r} is not a count of tokens")
    return int(number)


def read_labelled(path: str | Path) -> Labelled:
    """The answers of a labelled set, every row checked (see the module docstring)."""
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise CalibrationError(f"{path}: no rows")
    answers: dict[tuple[str, str], dict[str, Any]] = {}
    seen: dict[tuple[str, str, str], str] = {}
    annotators = set()
    counted_tokens = 0
    for where, row in rows:
        for key in TEXT_FIELDS:
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key in ("id", "model"):
                value = str(value)
            if not isinstance(value, str) or (not value.strip() and key != "answer"):
                raise CalibrationError(
                    f"{where}: field {key!r}: missing or empty (each row needs {list(TEXT_FIELDS)})"
                )
            row[key] = value
        labels = {}
        for label in LABELS:
            try:
                labels[label] = parse_label(label, row.get(label))
            except CalibrationError as err:
                raise CalibrationError(f"{where}: field {label!r}: {err}") from None
        if all(v is None for v in labels.values()):
            raise CalibrationError(f"{where}: no human label (give {' and/or '.join(LABELS)})")
        tokens = _tokens(where, row.get("answer_tokens"))
        annotator = row.get("annotator")
        annotator = None if annotator is None or str(annotator).strip() == "" else str(annotator)
        key = (row["id"], row["model"])
        if annotator is not None:
            annotators.add(annotator)
            if (*key, annotator) in seen:
                raise CalibrationError(
                    f"{where}: answer of {row['model']!r} to {row['id']!r} labelled twice by {annotator!r} "
                    f"(first at {seen[(*key, annotator)]})"
                )
            seen[(*key, annotator)] = where
        answer = answers.get(key)
        if answer is None:
            answer = answers[key] = {
                **{k: row[k] for k in TEXT_FIELDS},
                "answer_tokens": tokens,
                "where": where,
                "labels": {label: [] for label in LABELS},
                "n_annotators": 0,
            }
            counted_tokens += tokens is not None
        else:
            for name in ("question", "reference", "answer"):
                if row[name] != answer[name]:
                    raise CalibrationError(
                        f"{where}: field {name!r}: differs from the same answer's at {answer['where']} "
                        f"({row['model']!r} to {row['id']!r}): one answer, one text"
                    )
        answer["n_annotators"] += 1
        for label, value in labels.items():
            if value is not None:
                answer["labels"][label].append(value)
    if 0 < counted_tokens < len(answers):
        raise CalibrationError(
            f"{path}: 'answer_tokens' given for some answers only: give it for all or none"
        )
    out = []
    for answer in answers.values():
        labels = answer.pop("labels")
        for label in LABELS:
            answer[label] = sum(labels[label]) / len(labels[label]) if labels[label] else None
        answer["length"] = answer_length(answer)
        out.append(answer)
    unit = (
        "answer_tokens column" if counted_tokens else "words (whitespace-separated; no answer_tokens column)"
    )
    return Labelled(path, out, len(rows), len(annotators), unit)


# --- scoring ----------------------------------------------------------------------------------


def add_metrics(
    answers: list[dict[str, Any]], bertscore_model: str | None = None
) -> tuple[list[Score], dict]:
    """The evaluation's per-answer metrics as columns of the answers; the scores and their settings."""
    from medinjection.evaluation import text_metrics

    texts = [a["answer"] for a in answers]
    references = [a["reference"] for a in answers]
    results = [
        text_metrics.sentence_bleu(texts, references),
        text_metrics.rouge2(texts, references),
        text_metrics.meteor(texts, references),
    ]
    if bertscore_model:
        results.append(text_metrics.bertscore_f1(texts, references, model=bertscore_model))
    scores, settings = [], {}
    for result in results:
        if result.per_item is None:
            settings[result.name] = {"missing": result.missing}
            continue
        for answer, value in zip(answers, result.per_item, strict=True):
            answer[result.name] = value
        settings[result.name] = result.details
        scores.append(Score(result.name, result.name))
    return scores, settings


@dataclass
class JudgeSpec:
    """One judge of the command line: a model at a backend, run with every prompt
    (``backend_options``: other fields of its ``GenerationBackendConfig``, e.g. retries)."""

    model: str
    backend: str = "openai"
    base_url: str | None = None
    prompts: tuple[str, ...] = ()
    backend_options: dict[str, Any] = field(default_factory=dict)


def _per_judge(values: list[str] | None, judges: list[str], option: str, default: Any) -> list[Any]:
    values = list(values or [])
    if not values:
        return [default] * len(judges)
    if len(values) == 1:
        return values * len(judges)
    if len(values) != len(judges):
        raise CalibrationError(
            f"{len(values)} {option} values for {len(judges)} --judge: give one for every judge, in order, "
            "or one for all"
        )
    return values


def judge_specs(
    judges: list[str] | None,
    backends: list[str] | None = None,
    base_urls: list[str] | None = None,
    prompts: list[str] | None = None,
) -> list[JudgeSpec]:
    """The judges of the command line (``--judge-backend`` / ``--judge-base-url`` by position)."""
    from medinjection.evaluation.judge import DEFAULT_PROMPTS, judge_prompt

    judges = list(judges or [])
    if not judges and (backends or base_urls):
        raise CalibrationError("--judge-backend / --judge-base-url without --judge")
    names = tuple(prompts or DEFAULT_PROMPTS)
    for name in names:
        judge_prompt(name)  # unknown names and bad files fail now, before any answer is scored
    return [
        JudgeSpec(model, backend, url, names)
        for model, backend, url in zip(
            judges,
            _per_judge(backends, judges, "--judge-backend", "openai"),
            _per_judge(base_urls, judges, "--judge-base-url", None),
            strict=True,
        )
    ]


def _batches(prompts: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Prompts grouped so that no two of a group share a metric (``judge_items`` asks that)."""
    from medinjection.evaluation.judge import judge_prompt

    batches: list[list[str]] = []
    for name in prompts:
        metric = judge_prompt(name).metric
        for batch in batches:
            if all(judge_prompt(other).metric != metric for other in batch):
                batch.append(name)
                break
        else:
            batches.append([name])
    return [tuple(b) for b in batches]


def _display(model: str) -> str:
    path = Path(model).expanduser()
    return path.name if path.is_dir() else model


def add_judgments(
    answers: list[dict[str, Any]],
    specs: list[JudgeSpec],
    cache: Path,
    *,
    max_tokens: int | None = None,
    concurrency: int = 16,
    log=None,
) -> tuple[list[Score], dict[str, Any]]:
    """Every judge's verdicts with every prompt as columns of the answers (``judge<k>:<prompt>`` and
    its ``_status``); the scores and the usage of each judge."""
    from medinjection.evaluation.judge import judge_items, judge_prompt, make_judge_settings

    items = [
        {"id": a["id"], "question": a["question"], "answer_text": a["answer"], "reference": a["reference"]}
        for a in answers
    ]
    scores, usage = [], {}
    names: set[str] = set()
    for number, spec in enumerate(specs, start=1):
        display = _display(spec.model)
        for batch in _batches(spec.prompts):
            settings = make_judge_settings(
                spec.model,
                cache,
                backend=spec.backend,
                base_url=spec.base_url,
                prompts=batch,
                max_tokens=max_tokens,
                concurrency=concurrency,
            )
            if spec.backend_options:
                settings.backend = settings.backend.model_copy(update=spec.backend_options)
            results, used = judge_items(items, settings)
            for name in batch:
                prompt = judge_prompt(name)
                column = f"judge{number}:{prompt.version}"
                for answer, judgment in zip(answers, results[prompt.metric], strict=True):
                    answer[column] = None if judgment["verdict"] is None else float(judgment["verdict"])
                    answer[f"{column}_status"] = judgment["status"]
                shown = f"{display} / {prompt.version}"
                if shown in names:
                    shown = f"{shown} (judge {number})"
                names.add(shown)
                scores.append(
                    Score(
                        shown,
                        column,
                        "judge",
                        (prompt.low, prompt.high) == (0, 1),
                        {
                            "model": spec.model,
                            "backend": spec.backend,
                            "base_url": spec.base_url,
                            "prompt": prompt.version,
                            "prompt_sha256": prompt.sha256,
                            "prompt_file": name,
                            "scale": [prompt.low, prompt.high],
                        },
                    )
                )
            key = f"judge{number}: {spec.model}"
            usage[key] = {k: usage.get(key, {}).get(k, 0) + v for k, v in used.items()}
            if log:
                log(f"judged {len(items)} answers with {display} ({', '.join(batch)}): {_usage_line(used)}")
    return scores, usage


def _usage_line(usage: dict[str, Any]) -> str:
    return f"{usage.get('requests', 0)} requests, {usage.get('cache_hits', 0)} from the cache, {usage.get('failures', 0)} failed"


# --- the command's output ---------------------------------------------------------------------


def markdown(result: dict[str, Any], figures: dict[str, Path]) -> str:
    from medinjection.evaluation.calibration_report import sections

    source = result["source"]
    labels = result["labels"]
    described = []
    if "human_equivalent" in labels:
        e = labels["human_equivalent"]
        described.append(
            f"`human_equivalent` on {e['n']} answers ({e['equivalent']} equivalent, {e['not_equivalent']} not, "
            f"{e['split']} split evenly)"
        )
    if "human_rating" in labels:
        r = labels["human_rating"]
        described.append(f"`human_rating` on {r['n']} answers (mean {r['mean']:.2f})")
    judges = sorted(
        {
            (e["name"], e.get("model"), e.get("backend"), e.get("prompt_file"), e.get("prompt_sha256"))
            for e in result["judges"]
        }
    )
    lines = [
        "# Calibration of judges and metrics against human labels\n",
        f"From `{source['file']}`: {result['n']} answers by {len(source['generators'])} generators "
        f"({', '.join(source['generators'])}), {source['rows']} labelled rows"
        + (f" by {source['annotators']} annotators" if source["annotators"] else "")
        + f". Labels: {'; '.join(described)}. Length: {source['length_unit']}.\n",
    ]
    if judges:
        lines.append(
            "Judges: "
            + "; ".join(
                f"{name} = `{model}` ({backend}, prompt `{prompt}`, sha256 `{(sha or '?')[:12]}`)"
                for name, model, backend, prompt, sha in judges
            )
            + ".\n"
        )
    missing = [f"{name}: {s['missing']}" for name, s in result["metric_settings"].items() if s.get("missing")]
    if missing:
        lines.append("Left out: " + "; ".join(missing) + ".\n")
    lines.append(sections(result, level=2))
    if figures:
        lines.append("## Plots\n\n" + "\n\n".join(f"![{t}]({p.name})" for t, p in figures.items()) + "\n")
    return "\n".join(lines).rstrip() + "\n"


def calibration_result(
    path: str | Path,
    cache: str | Path,
    *,
    judges: list[JudgeSpec] | None = None,
    bertscore_model: str | None = None,
    max_tokens: int | None = None,
    concurrency: int = 16,
    resamples: int = 1000,
    seed: int = 0,
    log=None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read, score and judge the labelled answers; ``(calibration.json's content, the answer rows)``."""
    from medinjection.evaluation.report import plain

    labelled = read_labelled(path)
    answers = labelled.answers
    scores, metric_settings = add_metrics(answers, bertscore_model)
    usage = {}
    if judges:
        judge_scores, usage = add_judgments(
            answers, judges, Path(cache), max_tokens=max_tokens, concurrency=concurrency, log=log
        )
        scores = judge_scores + scores
    result = calibrate_answers(answers, scores, resamples=resamples, seed=seed)
    source = {
        "file": labelled.source.name,
        "rows": labelled.rows,
        "annotators": labelled.annotators,
        "generators": sorted({a["model"] for a in answers}),
        "length_unit": labelled.length_unit,
    }
    ordered = {
        "n": result["n"],
        "labels": result["labels"],
        "source": source,
        "bootstrap": result["bootstrap"],
        "metric_settings": metric_settings,
        "judge_usage": usage,
        "metrics": result["metrics"],
        "judges": result["judges"],
    }
    return plain(ordered), answers


def run_calibration(
    path: str | Path,
    output: str | Path,
    *,
    cache: str | Path | None = None,
    **options: Any,
) -> dict[str, Any]:
    """``calibration_result``, then ``calibration.json``, ``calibration.md`` and the plots written
    under ``output`` (the judges' cache: ``cache``, else ``output/judge-cache.sqlite``)."""
    from medinjection.evaluation.calibration_report import write_plots

    output = Path(output)
    result, answers = calibration_result(path, cache or output / JUDGE_CACHE, **options)
    output.mkdir(parents=True, exist_ok=True)
    figures = write_plots(answers, result, output)
    write_json(output / RESULT, result)
    write_text_atomic(output / MARKDOWN, markdown(result, figures))
    return result


def best(result: dict[str, Any]) -> dict[str, dict]:
    """The best-agreeing entry against each label (``ranked``'s first with a Pearson r)."""
    from medinjection.evaluation.calibration import ranked

    out = {}
    for label in LABELS:
        entries = [e for e in ranked(result, label) if e["pearson"]["value"] is not None]
        if entries:
            out[label] = entries[0]
    return out
