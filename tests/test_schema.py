"""The one record schema: ids, validation reasons, and the datasets Features."""

from __future__ import annotations

import pytest

from medinjection.core.schema import (
    COLUMNS,
    FEATURES,
    REJECT_REASONS,
    RELEASE_COLUMNS,
    RecordError,
    format_letters,
    make_id,
    new_record,
    validate_record,
)


def mcq(**overrides):
    record = new_record(
        source="demo",
        source_id="1",
        provenance="native",
        type="MCQ",
        instruction="Quels antibiotiques sont des bêta-lactamines ?",
        options=[
            {"letter": "A", "text": "Amoxicilline"},
            {"letter": "B", "text": "Céfazoline"},
            {"letter": "C", "text": "Gentamicine"},
        ],
        correct_letters=["A", "B"],
        answer="A, B",
    )
    record.update(overrides)
    return record


def test_schema_is_a_superset_of_the_release_columns():
    assert set(RELEASE_COLUMNS) <= set(COLUMNS)
    assert list(FEATURES) == list(COLUMNS)


def test_ids_are_stable_and_depend_on_source_and_source_id():
    assert make_id("frenchmedmcqa", "42") == make_id("frenchmedmcqa", "42")
    assert make_id("frenchmedmcqa", "42") != make_id("mediqal", "42")
    assert make_id("frenchmedmcqa", "42").startswith("frenchmedmcqa-")
    assert new_record(source="s", source_id="x")["id"] == make_id("s", "x")


def test_new_record_refuses_unknown_fields():
    with pytest.raises(KeyError, match="questoin"):
        new_record(questoin="?")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"provenance": "scraped"}, "invalid_provenance"),
        ({"type": "QCM"}, "invalid_type"),
        ({"instruction": "  "}, "empty_text"),
        ({"instruction": None}, "missing_field"),
        ({"options": [{"letter": "A", "text": "x"}]}, "too_few_options"),
        (
            {"options": [{"letter": "A", "text": "x"}, {"letter": "A", "text": "y"}]},
            "duplicate_option_letters",
        ),
        ({"options": [{"letter": "A", "text": "x"}, {"letter": "B", "text": ""}]}, "empty_option"),
        ({"correct_letters": []}, "no_correct_answer"),
        ({"correct_letters": ["D"]}, "letter_not_in_options"),
        ({"type": "MCQU"}, "type_mismatch"),
        ({"type": "OEQ"}, "type_mismatch"),
        ({"type": "OEQ", "options": [], "correct_letters": [], "answer": ""}, "empty_text"),
    ],
)
def test_validation_reasons(overrides, reason):
    with pytest.raises(RecordError) as err:
        validate_record(mcq(**overrides))
    assert err.value.reason == reason
    assert reason in REJECT_REASONS
    assert err.value.record_id in str(err.value)


def test_valid_records_pass():
    validate_record(mcq())
    validate_record(mcq(type="MCQU", correct_letters=["A"]))
    validate_record(mcq(type="OEQ", options=[], correct_letters=[], answer="Une réponse."))


def test_letters_have_one_written_form():
    assert format_letters(["c", "A", "a"]) == "A, C"
