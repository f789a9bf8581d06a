"""A translation backend checked before use: translate the English side of a parallel English-French
file with the build's own translation prompt and backend, and score it against the French side.

The authors scored their translation backends on the WMT 2024 biomedical test (en->fr: Gemini 2.0
Flash BLEU 53.72, COMET 0.8783; GPT-4o-mini BLEU 51.01, COMET 0.8751) before translating; this does
the same for any backend, with the exact request the translate step would send (each English sentence
is the ``instruction`` of an item, so the prompt version is the one the build uses and every answer
is shared with the generation cache).

Pairs: JSONL (``{"en": ..., "fr": ...}``, also ``source``/``reference`` and an optional ``id``) or
TSV (``en<TAB>fr``, or ``id<TAB>en<TAB>fr``). Scores: BLEU and chrF of sacrebleu, each with its
signature; COMET when the ``unbabel-comet`` package is installed and a ``comet_model`` is given
(otherwise reported missing, with the reason). An answer that is not the prompt's JSON counts as an
empty translation (the build would reject that item), and the report says how many there were.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medinjection.core.config import GenerationBackendConfig
from medinjection.core.files import read_json, sha256_file, write_json
from medinjection.core.schema import RecordError
from medinjection.dataset_builders.generation.cache import ResponseCache
from medinjection.dataset_builders.generation.checks import parse_json_object
from medinjection.dataset_builders.generation.runner import Generator
from medinjection.dataset_builders.steps.translate import translation_request

REPORT = "translation_check.json"
TRANSLATIONS = "translations.jsonl"
FORMAT = 1
REPORT_KEYS = ("backend", "prompt_version", "pairs", "n", "bleu", "chrf", "comet")


class TranslationCheckError(ValueError):
    """Pairs or a report that cannot be used; the message names the file (and line) and what is wrong."""


@dataclass(frozen=True)
class Pair:
    id: str
    en: str
    fr: str


def read_pairs(path: str | Path) -> list[Pair]:
    """The pairs of a JSONL or TSV file; a line that is not a pair is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise TranslationCheckError(f"{path}: no such pairs file (JSONL {{en, fr}} or TSV en<TAB>fr)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise TranslationCheckError(f"{path}: not UTF-8 text ({err})") from None
    pairs = []
    jsonl = path.suffix.lower() in (".jsonl", ".json")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        if jsonl:
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise TranslationCheckError(f"{where}: not a JSON object ({err.msg})") from None
            if not isinstance(row, dict):
                raise TranslationCheckError(f"{where}: a JSON {type(row).__name__}, not an object")
            en, fr = row.get("en", row.get("source")), row.get("fr", row.get("reference"))
            rid = str(row.get("id", number))
        else:
            cells = line.split("\t")
            if len(cells) not in (2, 3):
                raise TranslationCheckError(
                    f"{where}: {len(cells)} tab-separated cells; expected en, fr (or id, en, fr)"
                )
            rid, en, fr = (str(number), *cells) if len(cells) == 2 else cells
        for name, value in (("en", en), ("fr", fr)):
            if not isinstance(value, str) or not value.strip():
                raise TranslationCheckError(f"{where}: field {name!r} is missing or empty")
        pairs.append(Pair(rid, en.strip(), fr.strip()))
    if not pairs:
        raise TranslationCheckError(f"{path}: no pair in the file")
    return pairs


def english_item(pair: Pair) -> dict[str, Any]:
    """An English sentence as the translate step sees an item: its question, nothing else."""
    return {
        "type": "OEQ",
        "instruction": pair.en,
        "context": "",
        "options": [],
        "correct_letters": [],
        "answer": "",
    }


def hypothesis(text: str | None) -> tuple[str, str]:
    """``(French text, status)`` of one answer: ``ok``, ``unparseable`` or ``failed``."""
    if text is None:
        return "", "failed"
    try:
        value = parse_json_object(text)
    except RecordError:
        return "", "unparseable"
    french = value.get("instruction")
    return (french.strip(), "ok") if isinstance(french, str) and french.strip() else ("", "unparseable")


def score(hypotheses: list[str], references: list[str], sources: list[str], comet_model: str | None) -> dict:
    """BLEU and chrF (sacrebleu, with signatures) and COMET (when installed and named)."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    result = {
        "bleu": {
            "score": round(bleu.corpus_score(hypotheses, [references]).score, 4),
            "signature": str(bleu.get_signature()),
        },
        "chrf": {
            "score": round(chrf.corpus_score(hypotheses, [references]).score, 4),
            "signature": str(chrf.get_signature()),
        },
    }
    result["comet"] = comet_score(hypotheses, references, sources, comet_model)
    return result


def comet_score(hypotheses: list[str], references: list[str], sources: list[str], model: str | None) -> dict:
    if not model:
        return {"score": None, "missing": "no --comet-model given"}
    try:
        from comet import download_model, load_from_checkpoint
    except ImportError:
        return {
            "score": None,
            "missing": "the unbabel-comet package is not installed (pip install unbabel-comet)",
        }
    try:
        path = model if Path(model).exists() else download_model(model)
        scorer = load_from_checkpoint(path)
        data = [
            {"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hypotheses, references, strict=True)
        ]
        output = scorer.predict(data, batch_size=16, gpus=0, progress_bar=False)
    except Exception as err:  # offline, a bad checkpoint: the figure is missing, never a guess
        return {
            "score": None,
            "missing": f"COMET model {model!r} could not be used: {type(err).__name__}: {err}",
        }
    return {"score": round(float(output.system_score), 4), "model": model}


def check_translation_backend(
    pairs_path: str | Path,
    backend: GenerationBackendConfig,
    *,
    prompt_version: str = "v1",
    cache_path: str | Path,
    output: str | Path,
    limit: int | None = None,
    comet_model: str | None = None,
) -> dict:
    """Translate the pairs' English side, score it, write ``translation_check.json`` and
    ``translations.jsonl`` into ``output``; returns the report."""
    pairs = read_pairs(pairs_path)[:limit] if limit else read_pairs(pairs_path)
    requests = [translation_request(english_item(pair), prompt_version) for pair in pairs]
    cache = ResponseCache(cache_path)
    generator = Generator(backend, cache)
    try:
        answers = generator.generate(requests)
    finally:
        generator.close()
        cache.close()
    translated = [hypothesis(answer.text) for answer in answers]
    hypotheses = [text for text, _ in translated]
    statuses = [status for _, status in translated]
    figures = score(hypotheses, [p.fr for p in pairs], [p.en for p in pairs], comet_model)
    report = {
        "format": FORMAT,
        "pairs": {"path": str(pairs_path), "sha256": sha256_file(pairs_path), "n": len(pairs)},
        "n": len(pairs),
        "backend": {"type": backend.type, "model": backend.model},
        "prompt_version": requests[0].prompt_version,
        **figures,
        "unparseable": statuses.count("unparseable"),
        "failed": statuses.count("failed"),
        "usage": generator.usage.as_dict(backend.prices),
    }
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps(
            {"id": p.id, "en": p.en, "reference": p.fr, "translation": h, "status": s}, ensure_ascii=False
        )
        for p, h, s in zip(pairs, hypotheses, statuses, strict=True)
    ]
    (folder / TRANSLATIONS).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    write_json(folder / REPORT, report)
    return report


def load_report(path: str | Path) -> dict:
    """A ``translation_check.json`` (or the folder holding one), reduced to what a card states."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT
    if not path.is_file():
        raise TranslationCheckError(
            f"{path}: no translation check report (run medinjection translation-check)"
        )
    report = read_json(path, TranslationCheckError, expect=dict)
    missing = [key for key in REPORT_KEYS if key not in report]
    if missing:
        raise TranslationCheckError(f"{path}: not a translation check report (no {', '.join(missing)})")
    summary = {key: report[key] for key in REPORT_KEYS}
    summary["pairs"] = {"name": Path(report["pairs"]["path"]).name, "sha256": report["pairs"]["sha256"]}
    summary["report_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return summary
