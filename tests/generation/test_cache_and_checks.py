"""The response cache (keys, commits visible across processes, JSONL load) and the acceptance checks."""

from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from medinjection.core.config import GenerationBackendConfig
from medinjection.core.schema import REJECT_REASONS, RecordError
from medinjection.dataset_builders.generation.backends import backoff_delay, request_params
from medinjection.dataset_builders.generation.cache import ResponseCache, cache_key, input_hash
from medinjection.dataset_builders.generation.checks import (
    check_synthetic,
    check_translation,
    copy_of_seed,
    parse_json_object,
)

MSG = [{"role": "user", "content": "Traduis : Which organ produces insulin?"}]


def test_key_depends_on_model_version_params_and_input():
    params = request_params(GenerationBackendConfig(model="m"))
    base = cache_key("m", "translate-v1", params, input_hash(MSG))
    assert base == cache_key("m", "translate-v1", dict(params), input_hash([dict(m) for m in MSG]))
    assert base != cache_key("m2", "translate-v1", params, input_hash(MSG))
    assert base != cache_key("m", "translate-v2", params, input_hash(MSG))
    assert base != cache_key("m", "translate-v1", {**params, "temperature": 0.7}, input_hash(MSG))
    assert base != cache_key("m", "translate-v1", params, input_hash([{"role": "user", "content": "autre"}]))


def _writer(path: str, start: int) -> None:
    cache = ResponseCache(path)
    for i in range(start, start + 200):
        cache.put(f"k{i}", model="m", prompt_version="v", params={}, in_hash=str(i), response=f"r{i}")
    cache.close()


def test_concurrent_processes_write_one_cache_in_wal_mode(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ResponseCache(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, start)) for start in (0, 200, 400)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    cache = ResponseCache(path)
    assert len(cache) == 600 and cache.get("k599")["response"] == "r599"
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_jsonl_round_trip_and_bad_key(tmp_path):
    cache = ResponseCache(tmp_path / "a.sqlite")
    key = cache_key("m", "v", {}, "h")
    cache.put(
        key, model="m", prompt_version="v", params={}, in_hash="h", response='{"a": 1}', prompt_tokens=3
    )
    rows = list(cache.dump())
    other = ResponseCache(tmp_path / "b.sqlite")
    assert other.put_many(rows) == 1 and other.get(key)["prompt_tokens"] == 3
    with pytest.raises(ValueError, match="does not match"):
        other.put_many([{**rows[0], "key": "0" * 64}])


def test_backoff_is_bounded_and_honours_retry_after():
    assert all(0 <= backoff_delay(a, 1.0, 8.0) <= min(8.0, 2**a) for a in range(10) for _ in range(20))
    assert backoff_delay(3, 1.0, 8.0, "2") == 2.0


ENGLISH = {
    "type": "MCQ",
    "instruction": "Which drugs are beta-blockers?",
    "context": "",
    "options": [
        {"letter": "A", "text": "Atenolol"},
        {"letter": "B", "text": "Amlodipine"},
        {"letter": "C", "text": "Bisoprolol"},
    ],
    "correct_letters": ["A", "C"],
    "answer": "A, C",
}
FRENCH = {
    "instruction": "Quels médicaments sont des bêtabloquants ?",
    "context": "",
    "options": [
        {"letter": "A", "text": "L'aténolol"},
        {"letter": "B", "text": "L'amlodipine"},
        {"letter": "C", "text": "Le bisoprolol"},
    ],
    "correct_letters": ["C", "A"],
    "answer": "A, C",
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"options": FRENCH["options"][:2]}, "options_changed"),
        ({"options": [{**FRENCH["options"][0], "letter": "D"}, *FRENCH["options"][1:]]}, "options_changed"),
        ({"correct_letters": ["A"]}, "answer_key_changed"),
        ({"instruction": ""}, "empty_text"),
        ({"context": "Un contexte inventé."}, "invalid_structure"),
        ({"instruction": "Quels médicaments sont des bêtabloquants ? " * 10}, "length_ratio"),
    ],
)
def test_translation_checks(change, reason):
    assert check_translation(ENGLISH, FRENCH, 0.5, 2.0)["options"][2]["text"] == "Le bisoprolol"
    with pytest.raises(RecordError) as err:
        check_translation(ENGLISH, {**FRENCH, **change}, 0.5, 2.0)
    assert err.value.reason == reason and reason in REJECT_REASONS


def test_json_parsing():
    assert parse_json_object('```json\n{"a": 1}\n```') == {"a": 1}
    for bad in ("Voici : {", "[1, 2]", ""):
        with pytest.raises(RecordError, match="invalid_json"):
            parse_json_object(bad)


OPTS = [{"letter": letter, "text": f"Proposition {letter}"} for letter in "ABCDE"]


@pytest.mark.parametrize(
    ("kind", "answer", "reason"),
    [
        ("MCQU", {"instruction": "Q ?", "options": OPTS, "correct_letters": ["A", "B"]}, "type_mismatch"),
        ("MCQ", {"instruction": "Q ?", "options": OPTS, "correct_letters": []}, "no_correct_answer"),
        ("MCQ", {"instruction": "Q ?", "options": OPTS, "correct_letters": ["F"]}, "letter_not_in_options"),
        ("MCQ", {"instruction": "Q ?", "options": OPTS[:4], "correct_letters": ["A"]}, "invalid_structure"),
        ("OEQ", {"instruction": "Q ?", "answer": "", "options": []}, "empty_text"),
        ("OEQ", {"instruction": "Q ?", "answer": "R.", "options": OPTS}, "type_mismatch"),
        ("MCQU", {"instruction": "", "options": OPTS, "correct_letters": ["A"]}, "empty_text"),
    ],
)
def test_synthesis_structure(kind, answer, reason):
    with pytest.raises(RecordError) as err:
        check_synthetic(answer, kind, 5)
    assert err.value.reason == reason


def test_copy_of_seed():
    seed = (
        "Un homme de 58 ans, fumeur, diabétique de type 2, consulte aux urgences pour une douleur thoracique "
        "constrictive apparue au repos il y a deux heures, irradiant vers le bras gauche."
    )
    assert copy_of_seed("Quelle artère est occluse dans un infarctus inférieur ?", seed, 120, 0.5) is None
    assert "characters in a row" in copy_of_seed(seed + " Quel diagnostic ?", seed, 60, 0.5)
    assert "8-grams" in copy_of_seed(seed[:120], seed, 1000, 0.5)
