"""The checks a generated item passes before it is accepted; each failure is a ``RecordError`` whose
reason is one of ``schema.REJECT_REASONS``."""

from __future__ import annotations

import json
import re
from difflib import SequenceMatcher
from typing import Any

from medinjection.core.schema import RecordError

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)
_WORD = re.compile(r"\w+", re.U)


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object of an answer (a Markdown code fence around it is allowed), or ``invalid_json``."""
    match = _FENCE.match(text)
    body = match.group(1) if match else text
    try:
        value = json.loads(body)
    except json.JSONDecodeError as err:
        raise RecordError("invalid_json", f"answer is not valid JSON ({err.msg} at char {err.pos})") from None
    if not isinstance(value, dict):
        raise RecordError("invalid_json", f"answer is a JSON {type(value).__name__}, not an object")
    return value


def _text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError("invalid_structure", f"field {field!r} is a {type(value).__name__}, not a string")
    return value.strip()


def parse_options(value: Any) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(o, dict) for o in value):
        raise RecordError("invalid_structure", "options is not a list of {letter, text} objects")
    return [
        {"letter": _text(o.get("letter"), "letter").upper(), "text": _text(o.get("text"), "text")}
        for o in value
    ]


def item_text(item: dict[str, Any]) -> str:
    parts = [item.get("instruction") or "", item.get("context") or ""]
    parts += [o["text"] for o in item.get("options") or []]
    if item.get("type") == "OEQ":
        parts.append(item.get("answer") or "")
    return " ".join(p for p in parts if p)


def check_translation(
    english: dict[str, Any], answer: dict[str, Any], min_ratio: float, max_ratio: float
) -> dict[str, Any]:
    """The French fields of a translation, checked against the English item (letters, key, length)."""
    options = parse_options(answer.get("options"))
    french = {
        "instruction": _text(answer.get("instruction"), "instruction"),
        "context": _text(answer.get("context"), "context"),
        "options": options,
    }
    if not french["instruction"]:
        raise RecordError("empty_text", "the translated question is empty")
    if bool(english.get("context")) != bool(french["context"]):
        raise RecordError("invalid_structure", "the context was dropped or invented")
    en_letters = [o["letter"] for o in english.get("options") or []]
    fr_letters = [o["letter"] for o in options]
    if len(fr_letters) != len(en_letters):
        raise RecordError("options_changed", f"{len(fr_letters)} options instead of {len(en_letters)}")
    if fr_letters != en_letters:
        raise RecordError("options_changed", f"option letters {fr_letters} instead of {en_letters}")
    if any(not o["text"] for o in options):
        raise RecordError("empty_option", "a translated option is empty")
    if english["type"] == "OEQ":
        french["answer"] = _text(answer.get("answer"), "answer")
        if not french["answer"]:
            raise RecordError("empty_text", "the translated answer is empty")
        if answer.get("correct_letters"):
            raise RecordError("answer_key_changed", "an open-ended item came back with answer letters")
    else:
        got = answer.get("correct_letters")
        if not isinstance(got, list) or sorted(str(x).strip().upper() for x in got) != sorted(
            english["correct_letters"]
        ):
            raise RecordError(
                "answer_key_changed", f"correct letters {got!r} instead of {english['correct_letters']}"
            )
        french["answer"] = english["answer"]
    en_len, fr_len = len(item_text(english)), len(item_text({**french, "type": english["type"]}))
    ratio = fr_len / max(en_len, 1)
    if not min_ratio <= ratio <= max_ratio:
        raise RecordError(
            "length_ratio", f"French/English length ratio {ratio:.2f} outside [{min_ratio}, {max_ratio}]"
        )
    return french


def check_synthetic(answer: dict[str, Any], kind: str, n_options: int) -> dict[str, Any]:
    """The fields of a generated item, with the structure its type asks for."""
    item = {
        "type": kind,
        "instruction": _text(answer.get("instruction"), "instruction"),
        "context": _text(answer.get("context"), "context"),
        "options": parse_options(answer.get("options")),
    }
    if not item["instruction"]:
        raise RecordError("empty_text", "the generated question is empty")
    if kind == "OEQ":
        item["answer"] = _text(answer.get("answer"), "answer")
        item["correct_letters"] = []
        if item["options"]:
            raise RecordError("type_mismatch", "an open-ended item came with options")
        if not item["answer"]:
            raise RecordError("empty_text", "the generated answer is empty")
        return item
    letters = [o["letter"] for o in item["options"]]
    expected = [chr(ord("A") + i) for i in range(n_options)]
    if letters != expected:
        raise RecordError("invalid_structure", f"option letters {letters}, expected {expected}")
    correct = answer.get("correct_letters")
    if not isinstance(correct, list) or not correct:
        raise RecordError("no_correct_answer", f"correct_letters is {correct!r}")
    correct = sorted({str(c).strip().upper() for c in correct})
    if set(correct) - set(letters):
        raise RecordError("letter_not_in_options", f"correct letters {correct} not in {letters}")
    if kind == "MCQU" and len(correct) != 1:
        raise RecordError("type_mismatch", f"MCQU with {len(correct)} correct letters {correct}")
    item["correct_letters"] = correct
    return item


def words(text: str) -> list[str]:
    return _WORD.findall(text.casefold())


def copy_of_seed(
    generated: str, seed: str, max_common_chars: int, max_overlap: float, n: int = 8
) -> str | None:
    """Why ``generated`` is a copy of ``seed`` (a long common run of characters, or most of its word
    n-grams found in the seed), or None."""
    a, b = " ".join(words(generated)), " ".join(words(seed))
    match = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    if match.size > max_common_chars:
        return f"{match.size} characters in a row copied from the seed: {a[match.a : match.a + 80]!r}..."
    gen_words, seed_words = words(generated), words(seed)
    grams = {tuple(gen_words[i : i + n]) for i in range(len(gen_words) - n + 1)}
    if grams:
        seed_grams = {tuple(seed_words[i : i + n]) for i in range(len(seed_words) - n + 1)}
        overlap = len(grams & seed_grams) / len(grams)
        if overlap > max_overlap:
            return f"{overlap:.0%} of its word {n}-grams are in the seed"
    return None
