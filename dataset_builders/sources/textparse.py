"""Reading multiple-choice items out of flat text, shared by the adapters whose sources write the
options inside the question (the released MedInjection-FR subsets, some mlabonne rows).

Each function either returns what it found or raises ``RecordError("malformed_row", ...)`` with a
detail that says what was looked for, so a row that cannot be read goes to ``rejects/`` and is never
guessed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from medinjection.core.schema import LETTERS, RecordError

if TYPE_CHECKING:
    from medinjection.dataset_builders.sources.base import RawRow

# One option per line: "A. texte", "A) texte", "(A) texte", "[A] texte", "A: texte", "A - texte".
_OPTION_LINE = re.compile(r"^[ \t*_-]*[(\[]?([A-J])[)\].:][ \t]*(\S.*?)[ \t]*$", re.MULTILINE)
# Options inline, each opened by "(A)": "(A) texte (B) texte ..." (the MediQAl / MedInjection-FR prompt form).
_OPTION_INLINE = re.compile(r"\(([A-J])\)[ \t]*(.+?)(?=[ \t\n]*\([A-J]\)|\Z)", re.DOTALL)
_HEADER = re.compile(
    r"[ \t\n]*(?:\*\*)?(?:choix(?: de réponses?)?|options?|propositions?|réponses? possibles?|answer choices)"
    r"(?:\*\*)?[ \t]*:?[ \t]*(?:\*\*)?[ \t\n]*$",
    re.IGNORECASE,
)
# An answer that is only letters: "A", "a", "(A)", "A, C", "A,C", "A;C", "A et C", "A/C", "A C".
_LETTERS_ONLY = re.compile(
    r"^[\s(\[]*[A-Ja-j][)\].]?(?:\s*(?:[,;/+&]|et|and|\s)\s*[(\[]?[A-Ja-j][)\].]?)*\s*\.?$"
)
# An answer that opens with its letter: "A. texte", "(B) texte", "C) texte", "Réponse : D".
_LEADING_LETTER = re.compile(
    r"^\s*(?:(?:la )?(?:bonne )?réponse(?: correcte)?(?: est)?\s*:?\s*)?[(\[]?([A-J])(?:[)\].:](?:\s|$)|\s*$)",
    re.IGNORECASE,
)


def _consecutive(found: list[tuple[str, str]]) -> bool:
    letters = [letter for letter, _ in found]
    return len(letters) >= 2 and letters == list(LETTERS[: len(letters)])


def split_options(text: str) -> tuple[str, list[dict[str, str]]]:
    """``(question, options)`` from a text whose options follow the question, lettered from A.

    Returns ``(text, [])`` when no run of at least two options A, B, ... is found.
    """
    lines = list(_OPTION_LINE.finditer(text))
    # The options are the last run of lettered lines starting at "A".
    for start_index in range(len(lines) - 1, -1, -1):
        if lines[start_index].group(1) != "A":
            continue
        run = [(m.group(1), m.group(2)) for m in lines[start_index:]]
        if _consecutive(run):
            question = text[: lines[start_index].start()]
            return _strip_header(question), [{"letter": letter, "text": body} for letter, body in run]
    inline = list(_OPTION_INLINE.finditer(text))
    if inline and inline[0].group(1) == "A":
        run = [(m.group(1), m.group(2).strip()) for m in inline]
        if _consecutive(run):
            return _strip_header(text[: inline[0].start()]), [
                {"letter": letter, "text": body} for letter, body in run
            ]
    return text, []


def _strip_header(question: str) -> str:
    return _HEADER.sub("", question.rstrip()).strip()


def parse_answer_letters(answer: Any, options: list[dict[str, str]] | None = None) -> list[str]:
    """The correct letters named by ``answer``: letters alone ("A, C"), a letter opening the answer
    ("B. texte"), a list of letters, or (when ``options`` are given) the exact text of one option.

    Raises ``RecordError("malformed_row")`` when the answer names no letter.
    """
    if isinstance(answer, list | tuple):
        letters = [str(item).strip().strip("()[].").upper() for item in answer]
        if letters and all(len(letter) == 1 and letter in LETTERS for letter in letters):
            return sorted(set(letters))
        raise RecordError("malformed_row", f"answer list {answer!r} is not a list of option letters")
    text = str(answer or "").strip()
    if _LETTERS_ONLY.match(text):
        return sorted(set(re.findall(r"[A-J]", text.upper().replace("ET", " ").replace("AND", " "))))
    leading = _LEADING_LETTER.match(text)
    if leading:
        return [leading.group(1).upper()]
    if options:
        wanted = text.casefold().rstrip(".")
        matches = [opt["letter"] for opt in options if opt["text"].casefold().rstrip(".") == wanted]
        if len(matches) == 1:
            return matches
    raise RecordError("malformed_row", f"answer {text[:80]!r} names no option letter")


def content_hash(row: dict[str, Any], keys: tuple[str, ...] | None) -> str:
    """A stable 16-hex digest of ``row``'s values at ``keys`` (all its own columns when ``None``)."""
    if keys is None:
        keys = tuple(sorted(k for k in row if not k.startswith("_")))
    payload = json.dumps([row.get(key) for key in keys], ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def number_repeats(rows: Iterator[RawRow], keys: tuple[str, ...] | None) -> Iterator[RawRow]:
    """Mark the n-th repeat of an identical row (``_repeat = n``) so that content-hash ids stay unique.

    Two identical rows must still be two records (the exact-dedup step then keeps one and rejects the
    other as a duplicate); with the same id they could not be told apart. Every task reads the whole
    source in the same order, so the numbering is the same in every task.
    """
    from medinjection.dataset_builders.sources.base import RawRow

    seen: dict[str, int] = {}
    for raw in rows:
        digest = content_hash(raw.row, keys)
        count = seen.get(digest, 0)
        seen[digest] = count + 1
        yield RawRow({**raw.row, "_repeat": count}, raw.split, raw.location) if count else raw


def hashed_id(row: dict[str, Any], keys: tuple[str, ...] | None, prefix: str = "") -> str:
    """``<prefix>:<content hash>`` (``#n`` added for the n-th repeat of an identical row)."""
    repeat = f"#{row['_repeat']}" if row.get("_repeat") else ""
    return f"{prefix}:{content_hash(row, keys)}{repeat}" if prefix else f"{content_hash(row, keys)}{repeat}"


def first_present(row: dict[str, Any], names: tuple[str, ...], what: str, location: str) -> Any:
    """The value of the first of ``names`` that ``row`` has (not None); a clear error otherwise."""
    for name in names:
        if row.get(name) is not None:
            return row[name]
    raise RecordError(
        "malformed_row",
        f"{location}: no {what} column (looked for {list(names)}; the row has {sorted(k for k in row if not k.startswith('_'))})",
    )
