"""The chat format shared by training and evaluation."""

from __future__ import annotations

import pytest

from medinjection.core.chat import load_chat_template, parse_letters, to_messages
from medinjection.core.schema import new_record


def record(kind="MCQ", **extra):
    base = dict(
        source="demo",
        source_id="1",
        provenance="native",
        type=kind,
        instruction="Quelle est la bonne réponse ?",
    )
    if kind != "OEQ":
        base |= dict(
            options=[{"letter": L, "text": f"option {L}"} for L in "ABCD"], correct_letters=["C", "A"]
        )
    base |= extra
    return new_record(**base)


def test_mcq_messages_carry_options_and_letters():
    system, user, assistant = to_messages(record())
    assert [system["role"], user["role"], assistant["role"]] == ["system", "user", "assistant"]
    assert "A. option A\nB. option B" in user["content"]
    assert "plusieurs" in user["content"]
    assert assistant["content"] == "A, C"


def test_context_block_only_when_there_is_context():
    assert "Contexte" not in to_messages(record())[1]["content"]
    with_ctx = to_messages(record("OEQ", context="Patient de 54 ans.", answer="Un infarctus."))
    assert with_ctx[1]["content"].startswith("Contexte : Patient de 54 ans.\n\nQuestion :")
    assert with_ctx[2]["content"] == "Un infarctus."


def test_the_parser_reads_back_what_the_format_writes():
    rec = record()
    written = to_messages(rec)[-1]["content"]
    assert parse_letters(written, ["A", "B", "C", "D"]) == {"A", "C"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", {"B"}),
        ("A, C", {"A", "C"}),
        ("A,C", {"A", "C"}),
        (" D. ", {"D"}),
        ("A;B", {"A", "B"}),
        ("E", None),
        ("La réponse est A", None),
        ("", None),
        ("a", None),
        ("A C", None),
    ],
)
def test_strict_parser(text, expected):
    assert parse_letters(text, ["A", "B", "C", "D"]) == (frozenset(expected) if expected else None)


def test_unknown_template_version_names_the_known_ones():
    with pytest.raises(ValueError, match="v1"):
        load_chat_template("v99")
