"""Source adapters: each maps its fixture rows (written in the source's documented shape) to the schema,
names the row it cannot map, reads the real shared files, and fails fast on an unreachable Hub id."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from medinjection.core.config import ConfigError, SourceSpec, load_build_config
from medinjection.core.schema import RecordError, validate_record
from medinjection.dataset_builders.sources import ADAPTERS, SourceUnavailable, get_adapter
from medinjection.dataset_builders.sources.textparse import parse_answer_letters, split_options

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def read(
    adapter: str, path: Path, repeated_ids: int = 0, **spec
) -> tuple[dict[str, dict], list[tuple[str, RecordError]]]:
    """({source_id: record}, [(location, error)]) for every row of a source."""
    source = get_adapter(adapter)(SourceSpec(adapter=adapter, path=str(path), **spec))
    source.check_available()
    records, errors, repeated = {}, [], []
    for raw in source.iter_raw():
        try:
            record = source.map_row(raw)
        except RecordError as err:
            errors.append((raw.location, err))
            continue
        validate_record(record)  # a mapped row is a valid record
        if record["source_id"] in records:
            repeated.append(record["source_id"])
        records[record["source_id"]] = record
    assert len(repeated) == repeated_ids, f"rows sharing an id: {repeated}"
    return records, errors


def assert_malformed(errors, expected: dict[str, str]) -> None:
    """Each expected (file name, row index) fails as malformed_row, naming the row and the problem."""
    assert len(errors) == len(expected), [str(e) for _, e in errors]
    for location, err in errors:
        assert err.reason == "malformed_row", err
        key = next(k for k in expected if location.endswith(k))
        assert key in err.detail, f"the detail does not name the row: {err.detail}"
        assert expected[key] in err.detail, err.detail


def test_every_adapter_is_registered_and_describes_itself():
    expected = {
        "frenchmedmcqa", "mediqal", "frbmedqa", "mlabonne_medical_mcqa_fr", "mlabonne_medical_cases_fr",
        "medinjection_release", "pubmedqa", "mmlu_medical", "medqa", "medmcqa",
    }  # fmt: skip
    assert expected <= set(ADAPTERS)
    for name in expected:
        info = ADAPTERS[name].describe()
        assert info["name"] == name and info["license"] and info["homepage"] and info["citation"]
    assert {ADAPTERS[n].language for n in ("pubmedqa", "mmlu_medical", "medqa", "medmcqa")} == {"en"}
    with pytest.raises(KeyError, match="known:"):
        get_adapter("nope")


def test_frenchmedmcqa_each_published_split_shape_gives_the_right_types():
    # train.json and dev.json carry `type` (simple/multiple); the release's test.json has no `type`
    test_rows = json.loads((FIXTURES / "frenchmedmcqa" / "test.json").read_text())
    assert test_rows and all("type" not in row and "nbr_correct_answers" in row for row in test_rows)
    records, errors = read("frenchmedmcqa", FIXTURES / "frenchmedmcqa")
    kinds = {(r["source_split"], r["type"], r["answer"]) for r in records.values()}
    assert kinds == {
        ("train", "MCQU", "A"),
        ("train", "MCQ", "A, C, D"),
        ("validation", "MCQU", "C"),
        ("validation", "MCQ", "A, B"),
        ("test", "MCQU", "A"),  # one correct answer, no flag
        ("test", "MCQ", "A, C, D"),  # several correct answers, no flag
        ("test", "MCQ", "A, B"),
    }
    assert Counter(r["source_split"] for r in records.values()) == {"train": 2, "validation": 2, "test": 3}
    problems = {loc.rsplit("/", 1)[-1]: (err.reason, err.detail) for loc, err in errors}
    assert set(problems) == {"train.json:2", "train.json:3", "test.json:3"}
    assert (
        problems["train.json:2"][0] == "type_mismatch"
        and "'multiple' but 1 correct" in problems["train.json:2"][1]
    )
    for where in ("train.json:3", "test.json:3"):  # nbr_correct_answers disagrees with correct_answers
        assert problems[where][0] == "malformed_row" and "nbr_correct_answers" in problems[where][1]


def test_pubmedqa_hub_split_is_the_whole_labelled_set_not_a_training_split(monkeypatch):
    """The Hub's pqa_labeled has one split, "train", holding all of PQA-L: read up to the network call
    (a local stand-in answers ``datasets.load_dataset``), its rows get no split of their own (hashed)."""
    import datasets

    hub_rows = FIXTURES / "pubmedqa_hub" / "pqa_labeled.jsonl"
    asked = []

    def stand_in(path, name=None, revision=None, **kwargs):
        asked.append((path, name, revision))
        return datasets.DatasetDict({"train": datasets.Dataset.from_json(str(hub_rows))})

    monkeypatch.setattr(datasets, "load_dataset", stand_in)
    spec = SourceSpec(
        adapter="pubmedqa", hub_id="qiaojin/PubMedQA", revision="0" * 40, options={"format": "both"}
    )
    adapter = get_adapter("pubmedqa")(spec)
    records = [adapter.map_row(raw) for raw in adapter.iter_raw()]
    assert asked == [("qiaojin/PubMedQA", "pqa_labeled", "0" * 40)]
    assert len(records) == 4 and {r["source_split"] for r in records} == {""}
    oeq = next(r for r in records if r["source_id"] == "201")
    assert oeq["context"].startswith("Patients were randomised") and oeq["type"] == "OEQ"
    assert next(r for r in records if r["source_id"] == "202:yes_no")["answer"] == "B"


def test_mmlu_hub_shape_and_splits(monkeypatch):
    """cais/mmlu on the Hub: one config per subject, splits test / validation / dev, ``choices`` and an
    integer ``answer`` (read up to the network call: a local stand-in answers ``load_dataset``)."""
    import datasets

    folder = FIXTURES / "mmlu_hub"

    def stand_in(path, name=None, revision=None, **kwargs):
        if name != "anatomy":
            return datasets.DatasetDict()
        return datasets.DatasetDict(
            {
                s: datasets.Dataset.from_json(str(folder / f"anatomy_{s}.jsonl"))
                for s in ("test", "validation", "dev")
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", stand_in)
    adapter = get_adapter("mmlu_medical")(
        SourceSpec(adapter="mmlu_medical", hub_id="cais/mmlu", revision="0" * 40)
    )
    records = {r["instruction"]: r for r in (adapter.map_row(raw) for raw in adapter.iter_raw())}
    deltoid = records["Which nerve innervates the deltoid muscle?"]
    assert (deltoid["source_split"], deltoid["answer"], deltoid["subject"]) == ("test", "B", "anatomy")
    assert records["Which bone forms the heel?"]["source_split"] == "validation"
    assert records["Which chamber of the heart pumps blood into the aorta?"]["source_split"] == "validation"
    assert records["Which bone forms the heel?"]["options"][2] == {"letter": "C", "text": "Calcaneus"}


def test_mediqal_configs_give_the_types_and_splits():
    records, errors = read("mediqal", FIXTURES / "mediqal")
    u1, u2, m1, o1 = records["mq-u1"], records["mq-u2"], records["mq-m1"], records["mq-o1"]
    assert (u1["type"], u1["correct_letters"], u1["answer"], u1["source_split"]) == (
        "MCQU",
        ["D"],
        "D",
        "train",
    )
    assert [o["letter"] for o in u1["options"]] == list("ABCDE") and u1["options"][3]["text"] == "Furosémide"
    assert u2["context"] == "Un homme de 60 ans hypertendu." and u1["context"] == ""
    assert (m1["type"], m1["correct_letters"], m1["answer"], m1["source_split"]) == (
        "MCQ",
        ["A", "C", "E"],
        "A, C, E",
        "validation",
    )
    assert (o1["type"], o1["answer"], o1["options"], o1["source_split"]) == (
        "OEQ",
        "Une bandelette urinaire.",
        [],
        "test",
    )
    assert {r["provenance"] for r in records.values()} == {"native"} and u1["origin"] == "MediQAl"
    assert_malformed(errors, {"train.json:2": "question"})


def test_mediqal_file_outside_a_config_folder_needs_hub_config(tmp_path):
    (tmp_path / "train.json").write_text((FIXTURES / "mediqal" / "mcqu" / "train.json").read_text())
    _, errors = read("mediqal", tmp_path)
    assert errors and all("config unknown" in e.detail for _, e in errors)
    records, _ = read("mediqal", tmp_path / "train.json", hub_config="mcqm")
    assert records["mq-u1"]["type"] == "MCQ"


def test_release_rows_get_their_options_letters_split_and_origin():
    records, errors = read("medinjection_release", FIXTURES / "medinjection_release" / "translated")
    by_text = {r["instruction"]: r for r in records.values()}
    nerve = [r for r in records.values() if r["instruction"] == "Quel nerf innerve le deltoïde ?"]
    assert len(nerve) == 2, "an identical row is still its own record (exact dedup rejects it later)"
    first = min(nerve, key=lambda r: len(r["source_id"]))
    assert first["options"][1] == {"letter": "B", "text": "Nerf axillaire"} and first["correct_letters"] == [
        "B"
    ]
    assert first["source_id"].startswith("MedQA:") and first["origin"] == "MedQA"
    assert first["source_split"] == "train" and first["provenance"] == "translated"
    treatment = by_text["Quel est le traitement ?"]
    assert (
        treatment["correct_letters"] == ["B"]
        and treatment["origin"] == "MedMCQA"
        and len(treatment["options"]) == 4
    )
    vitamin = by_text["Quelle vitamine ?"]  # inline "(A) … (B) …" options; the answer is an option's text
    assert [o["text"] for o in vitamin["options"]] == ["Vitamine K", "Vitamine C", "Vitamine D"]
    assert vitamin["correct_letters"] == ["A"]
    gram = by_text["Quelles bactéries sont à Gram positif ?"]  # options in the context
    assert (gram["type"], gram["answer"], gram["context"], gram["source_split"]) == (
        "MCQ",
        "A, C",
        "",
        "validation",
    )
    oeq = by_text["La vitamine D réduit-elle les chutes ?"]
    assert (oeq["type"], oeq["source_split"], oeq["context"]) == (
        "OEQ",
        "test",
        "Essai randomisé de 800 adultes.",
    )
    assert_malformed(
        errors,
        {
            "mcqu_train.json:4": "without lettered options",
            "mcqu_train.json:5": "names no option letter",
            "mcqu_train.json:6": "QCM",
        },
    )


def test_frbmedqa_cloze_rows_become_single_answer_items_over_the_candidates():
    """tests/fixtures/sources/frbmedqa: rows in the shape the FrBMedQA authors' code writes
    (passage, question with @placeholder, entities_list of one-key objects, answer @entityN)."""
    records, errors = read("frbmedqa", FIXTURES / "frbmedqa")
    by_split = {r["source_split"]: [] for r in records.values()}
    for record in records.values():
        by_split[record["source_split"]].append(record)
    assert {s: len(v) for s, v in by_split.items()} == {"train": 2, "validation": 1, "test": 1}
    aspirin = next(r for r in records.values() if "cyclo-oxygénase" in r["instruction"])
    assert aspirin["type"] == "MCQU" and aspirin["origin"] == "FrBMedQA" and aspirin["provenance"] == "native"
    assert [o["text"] for o in aspirin["options"]] == [
        "Aspirine",
        "Anti-inflammatoire non stéroïdien",
        "Agrégation plaquettaire",
        "Hémorragie",
    ]
    assert aspirin["correct_letters"] == ["A"] and aspirin["answer"] == "A"
    # the blank is shown, every other entity token reads as its label, in the question and the passage
    assert "l' ____ inhibe la cyclo-oxygénase" in aspirin["instruction"]
    assert aspirin["context"].startswith("L' Aspirine est un Anti-inflammatoire non stéroïdien utilisé")
    assert (
        "@entity" not in aspirin["instruction"] + aspirin["context"]
        and "@placeholder" not in aspirin["instruction"]
    )
    goitre = next(r for r in records.values() if "carence en iode" in r["instruction"])
    assert goitre["correct_letters"] == ["F"] and goitre["options"][5]["text"] == "Goitre"
    assert goitre["subject"] == "Disorders"  # the answer's semantic group, when the row carries them
    assert "hormones du Thyroïde" in goitre["instruction"]
    assert_malformed(
        errors,
        {
            "train.json:2": "'@entity302' is not among the candidates",
            "train.json:3": "no @placeholder",
            "val.json:0": "['@entity999'] in the text but not in entities_list",
            "test.json:0": "27 candidate entities",
        },
    )


def test_frbmedqa_hub_files_are_read_as_json_at_the_pinned_revision(monkeypatch):
    """Read up to the network call: a stand-in for ``snapshot_download`` gives the fixture folder;
    ``datasets`` is never asked (Arrow would make a column of every @entityN key)."""
    import datasets
    import huggingface_hub

    asked = []

    def snapshot(repo_id, repo_type=None, revision=None, allow_patterns=None, **kwargs):
        asked.append((repo_id, repo_type, revision))
        return str(FIXTURES / "frbmedqa")

    def no_datasets(*args, **kwargs):
        raise AssertionError("datasets.load_dataset must not read FrBMedQA")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.setattr(datasets, "load_dataset", no_datasets)
    spec = SourceSpec(adapter="frbmedqa", hub_id="kadzaki/FrBMedQA", revision="a" * 40)
    adapter = get_adapter("frbmedqa")(spec)
    records = []
    for raw in adapter.iter_raw():
        try:
            records.append(adapter.map_row(raw))
        except RecordError:
            continue
    assert asked == [("kadzaki/FrBMedQA", "dataset", "a" * 40)]
    assert sorted(r["source_split"] for r in records) == ["test", "train", "train", "validation"]
    assert all(r["source_id"] for r in records)


RELEASE_NATIVE = FIXTURES / "medinjection_release" / "native"


def test_release_origins_option_takes_and_leaves_out_rows_by_origin():
    excluded, _ = read(
        "medinjection_release",
        RELEASE_NATIVE,
        provenance="native",
        options={"origins": {"exclude": ["frbmedqa", "MEDIQAL", "Bogus Origin"]}},
    )
    assert Counter(r["origin"] for r in excluded.values()) == {
        "S-Editions": 2,
        "QCM Santé Publique": 2,
        "FrBMedQA-cloze": 1,  # another name: not the excluded origin
    }
    included, _ = read(
        "medinjection_release",
        RELEASE_NATIVE,
        provenance="native",
        options={"origins": {"include": ["s editions"]}},
    )
    assert {r["origin"] for r in included.values()} == {"S-Editions"} and len(included) == 2
    everything, _ = read("medinjection_release", RELEASE_NATIVE, provenance="native")
    assert len(everything) == 7


def test_release_origins_are_counted_and_an_unused_name_is_a_note():
    spec = SourceSpec(
        adapter="medinjection_release",
        path=str(RELEASE_NATIVE),
        provenance="native",
        options={"origins": {"exclude": ["FrBMedQA", "MediQAl", "Bogus Origin"]}},
    )
    adapter = get_adapter("medinjection_release")(spec)
    assert len(list(adapter.iter_raw())) == 5
    report = adapter.reading_report()
    assert report["origins"] == {
        "taken": {"FrBMedQA-cloze": 1, "QCM Santé Publique": 2, "S-Editions": 2},
        "left_out": {"FrBMedQA": 1, "MediQAl": 1},
    }
    notes = report["notes"]
    assert any("mcq_val.json holds no row" in n for n in notes), notes
    assert any("['Bogus Origin'], which no row carries" in n for n in notes), notes
    assert len(list(adapter.iter_raw())) == 5 and len(adapter.reading_report()["notes"]) == 2  # not doubled


@pytest.mark.parametrize(
    "value",
    [["FrBMedQA"], {"drop": ["FrBMedQA"]}, {"exclude": []}, {"exclude": ["a"], "include": ["b"]}],
)
def test_release_origins_option_is_checked(value):
    with pytest.raises(ConfigError, match="origins"):
        get_adapter("medinjection_release")(
            SourceSpec(
                adapter="medinjection_release",
                path=str(RELEASE_NATIVE),
                provenance="native",
                options={"origins": value},
            )
        )


def test_release_rows_keep_the_licence_of_their_origin():
    release = get_adapter("medinjection_release")
    assert release.origin_license("FrBMedQA") == "cc-by-4.0"
    assert release.origin_license("MediQAl") == "cc-by-4.0"
    assert release.origin_license("FrenchMedMCQA") == "apache-2.0"
    assert release.origin_license("s-editions") == "unknown"
    assert release.origin_license("QCM Santé Publique") == "mit"  # no licence of its own known: the release's
    assert get_adapter("frbmedqa").origin_license("anything") == "cc-by-4.0"
    assert release.republished and not get_adapter("frbmedqa").republished


# ---- files that are not rows --------------------------------------------------------------------


def write_file(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


ROW = {
    "id": "1",
    "question": "Quel organe ?",
    "answers": {"a": "Foie", "b": "Rein"},
    "correct_answers": ["a"],
}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            json.dumps({"data": [dict(ROW, id=str(i)) for i in range(20)]}),
            "its key 'data' holds a list of 20 rows",
        ),
        (json.dumps({"data": [dict(ROW, id=str(i)) for i in range(20)]}, indent=1), "its key 'data' holds"),
        (json.dumps(ROW, indent=1), "a JSON object with 4 key(s)"),
        (json.dumps(["Foie", "Rein"]), "a JSON list of 2 str values"),
        ("42", "a JSON int"),
        ('[\n {"id": 1,\n]', "not valid JSON"),
    ],
)
def test_a_file_that_is_not_rows_is_an_error_naming_it(tmp_path, content, expected):
    from medinjection.dataset_builders.sources import SourceFormatError
    from medinjection.dataset_builders.sources.base import read_table

    path = write_file(tmp_path, "train.json", content)
    with pytest.raises(SourceFormatError) as err:
        list(read_table(path))
    assert str(path) in str(err.value) and expected in str(err.value)
    assert "expected a JSON list of rows" in str(err.value)


def test_invalid_utf8_names_the_file_byte_and_line(tmp_path):
    from medinjection.dataset_builders.sources import SourceFormatError
    from medinjection.dataset_builders.sources.base import read_table

    for name, data, line in (
        ("a.json", b'[{"q": "caf\xe9"}]', 1),
        ("b.jsonl", b'{"q": "ok"}\n{"q": "caf\xe9"}\n', 2),
        ("c.csv", b"q\ncaf\xe9\n", 2),
    ):
        path = write_file(tmp_path, name, data)
        with pytest.raises(SourceFormatError, match="not valid UTF-8") as err:
            list(read_table(path))
        assert (
            str(path) in str(err.value)
            and "byte 0xe9" in str(err.value)
            and f"line {line})" in str(err.value)
        )


def test_rows_that_are_rows_still_read(tmp_path):
    from medinjection.dataset_builders.sources.base import read_table

    one_line = write_file(tmp_path, "one.json", json.dumps(ROW))  # a one-line JSON Lines file
    assert [row["id"] for _, row in read_table(one_line)] == ["1"]
    mapping = write_file(tmp_path, "map.json", json.dumps({"k1": ROW, "k2": ROW}, indent=1))
    assert [row["_key"] for _, row in read_table(mapping)] == ["k1", "k2"]
    mixed = write_file(tmp_path, "mixed.json", json.dumps([ROW, "stray"]))
    rows = [row for _, row in read_table(mixed)]
    assert rows[0]["id"] == "1" and "a JSON str where a row" in rows[1]["_malformed"]
    bom = write_file(tmp_path, "bom.json", b"\xef\xbb\xbf" + json.dumps([ROW]).encode())
    assert len(list(read_table(bom))) == 1
    for name in ("empty.json", "blank.jsonl", "list.json"):
        path = write_file(tmp_path, name, "[]" if name == "list.json" else "  \n")
        assert list(read_table(path)) == []


def test_release_ids_are_stable_across_reads():
    first, _ = read("medinjection_release", FIXTURES / "medinjection_release" / "translated")
    again, _ = read("medinjection_release", FIXTURES / "medinjection_release" / "translated")
    assert sorted(first) == sorted(again)
    assert sorted(r["id"] for r in first.values()) == sorted(r["id"] for r in again.values())


def test_release_provenance_comes_from_the_spec_or_the_subset(tmp_path):
    spec = SourceSpec(adapter="medinjection_release", hub_id="MedInjection-FR/Synthetic", revision="0" * 40)
    assert get_adapter("medinjection_release")(spec).provenance_value == "synthetic"
    spec = SourceSpec(adapter="medinjection_release", path=str(tmp_path), provenance="native")
    assert get_adapter("medinjection_release")(spec).provenance_value == "native"
    with pytest.raises(SourceUnavailable, match="provenance"):
        get_adapter("medinjection_release")(SourceSpec(adapter="medinjection_release", path=str(tmp_path)))


@pytest.mark.parametrize(
    ("text", "letters"),
    [
        ("A", ["A"]),
        ("a, c", ["A", "C"]),
        ("A et C", ["A", "C"]),
        ("(B) Texte", ["B"]),
        ("Réponse : D", ["D"]),
        (["B", "a"], ["A", "B"]),
    ],
)
def test_answer_letters(text, letters):
    assert parse_answer_letters(text) == letters


def test_answer_that_is_a_sentence_is_not_read_as_a_letter():
    with pytest.raises(RecordError, match="names no option letter"):
        parse_answer_letters("A partir de 40 ans, un dépistage.")


def test_split_options_needs_a_run_from_a():
    assert split_options("Le patient B. présente une fièvre.\nC. Suite du texte") == (
        "Le patient B. présente une fièvre.\nC. Suite du texte",
        [],
    )


@pytest.mark.parametrize("fmt", ["oeq", "yes_no", "both"])
def test_pubmedqa_formats(fmt):
    records, errors = read("pubmedqa", FIXTURES / "pubmedqa", options={"format": fmt})
    if fmt in ("oeq", "both"):
        oeq = records["101"]
        assert (oeq["type"], oeq["answer"]) == ("OEQ", "Early mobilisation reduced complications.")
        assert oeq["context"] == "Background paragraph.\n\nResults paragraph."
        assert oeq["language"] == "en" and oeq["provenance"] == "translated" and oeq["source_split"] == ""
    if fmt in ("yes_no", "both"):
        yes, maybe = records["101:yes_no"], records["102:yes_no"]
        assert [o["text"] for o in yes["options"]] == ["yes", "no", "maybe"]
        assert (yes["type"], yes["answer"], maybe["answer"]) == ("MCQU", "A", "C")
        assert_malformed(errors, {"ori_pqal.json:2": "perhaps"})
    else:
        assert not errors  # the OEQ form does not read final_decision
    assert len(records) == {"oeq": 3, "yes_no": 2, "both": 5}[fmt]


def test_unknown_adapter_options_are_refused():
    with pytest.raises(ConfigError, match="allowed"):
        read("pubmedqa", FIXTURES / "pubmedqa", options={"fromat": "oeq"})
    with pytest.raises(ConfigError, match="format"):
        read("pubmedqa", FIXTURES / "pubmedqa", options={"format": "mcq"})
    with pytest.raises(ConfigError, match="none"):
        read("medqa", FIXTURES / "medqa", options={"x": 1})


def test_mmlu_csv_without_header():
    records, errors = read("mmlu_medical", FIXTURES / "mmlu_medical")
    by_q = {r["instruction"]: r for r in records.values()}
    deltoid = by_q["Which nerve innervates the deltoid muscle?"]  # the first line is a question, not a header
    assert (deltoid["type"], deltoid["answer"], deltoid["subject"], deltoid["source_split"]) == (
        "MCQU",
        "B",
        "anatomy",
        "test",
    )
    assert [o["text"] for o in deltoid["options"]] == ["Radial", "Axillary", "Median", "Ulnar"]
    insulin = by_q["Insulin is secreted by which cells?"]
    assert (insulin["subject"], insulin["source_split"]) == ("college medicine", "validation")
    assert_malformed(errors, {"anatomy_test.csv:3": "4 CSV fields", "anatomy_test.csv:4": "'E'"})


def test_medqa_rows():
    records, errors = read("medqa", FIXTURES / "medqa")
    by_q = {r["instruction"]: r for r in records.values()}
    ulcer = by_q["A 45-year-old man has epigastric pain relieved by meals. What is the best treatment?"]
    assert (ulcer["answer"], ulcer["options"][1]["text"], ulcer["source_split"], ulcer["subject"]) == (
        "B",
        "Triple therapy",
        "train",
        "step2&3",
    )
    assert by_q["Which nerve innervates the deltoid?"]["source_split"] == "test"
    assert_malformed(errors, {"phrases_no_exclude_train.jsonl:1": "options is not a mapping"})


def test_medmcqa_rows():
    records, errors = read("medmcqa", FIXTURES / "medmcqa")
    assert (records["mm-1"]["answer"], records["mm-1"]["type"], records["mm-1"]["source_split"]) == (
        "A",
        "MCQU",
        "train",
    )
    assert (
        records["mm-2"]["type"] == "MCQU" and records["mm-2"]["answer"] == "C"
    )  # "multi" still has one answer
    assert records["mm-1"]["subject"] == "Pharmacology / Anticoagulants"
    reasons = {loc.rsplit("/", 1)[-1]: err.reason for loc, err in errors}
    assert reasons == {"train.jsonl:2": "malformed_row", "test.jsonl:0": "no_correct_answer"}


def test_mlabonne_mcqa_fr_assumed_columns():
    records, errors = read("mlabonne_medical_mcqa_fr", FIXTURES / "mlabonne_medical_mcqa_fr")
    by_q = {r["instruction"]: r for r in records.values()}
    beta = by_q["Quels sont des bêtabloquants ?"]
    assert (beta["type"], beta["answer"], beta["subject"], beta["source_split"]) == (
        "MCQ",
        "A, C",
        "Cardiologie",
        "train",
    )
    tb = by_q["Quel germe cause la tuberculose ?"]  # options read out of the question text
    assert [o["letter"] for o in tb["options"]] == ["A", "B"] and tb["answer"] == "A"
    ion = by_q["Quel ion ?"]  # options as a list, answer "B. Sodium", split "eval" -> validation
    assert (ion["answer"], ion["source_split"]) == ("B", "validation")
    assert_malformed(errors, {"train.jsonl:2": "no options"})


def test_mlabonne_cases_fr_assumed_columns():
    records, errors = read("mlabonne_medical_cases_fr", FIXTURES / "mlabonne_medical_cases_fr")
    by_q = {r["instruction"]: r for r in records.values()}
    ecg = by_q["Quel examen faire en premier ?"]
    assert (ecg["type"], ecg["context"], ecg["answer"]) == (
        "OEQ",
        "Un homme de 60 ans présente une douleur thoracique.",
        "Un électrocardiogramme.",
    )
    numbered = by_q["Un enfant de 3 ans fébrile. Quel diagnostic évoquer ?"]  # "Question" holds a number
    assert numbered["context"] == "" and numbered["answer"] == "Une otite moyenne aiguë."
    assert by_q["Quel examen ?"]["source_split"] == "validation"
    assert_malformed(errors, {"train.jsonl:2": "no answer column"})


# ---- the real shared data -------------------------------------------------------------------------


def test_frenchmedmcqa_real_files_map_with_the_source_flag(shared_data):
    # FrenchMedMCQA itself holds one question twice under the same id: the repeat gets an id of its
    # own ("<id>#1"), so both rows are records and exact dedup later keeps one of them.
    records, errors = read("frenchmedmcqa", shared_data / "frenchmedmcqa")
    source = json.loads((shared_data / "frenchmedmcqa" / "train.json").read_text())
    source += json.loads((shared_data / "frenchmedmcqa" / "dev.json").read_text())
    assert not errors and len(source) == 2483 and len(records) == 2483
    assert [sid for sid in records if "#" in sid] == [
        f"{next(iter(Counter(i['id'] for i in source).most_common(1)))[0]}#1"
    ]
    splits = Counter(r["source_split"] for r in records.values())
    assert splits == {"train": 2171, "validation": 312}
    flag = {item["id"]: item["type"] for item in source}
    assert all(
        r["type"] == {"simple": "MCQU", "multiple": "MCQ"}[flag[r["source_id"].split("#")[0]]]
        for r in records.values()
    )


def test_pubmedqa_real_file(shared_data):
    records, errors = read("pubmedqa", shared_data / "pubmedqa", options={"format": "both"})
    assert not errors and len(records) == 2000
    oeq = [r for r in records.values() if r["type"] == "OEQ"]
    assert len(oeq) == 1000 and all(r["context"] and r["answer"] for r in oeq)
    decisions = Counter(r["answer"] for r in records.values() if r["type"] == "MCQU")
    assert set(decisions) == {"A", "B", "C"} and sum(decisions.values()) == 1000


def test_mmlu_real_files(shared_data):
    records, errors = read("mmlu_medical", shared_data / "mmlu-medical")
    assert not errors
    subjects = Counter(r["subject"] for r in records.values())
    assert set(subjects) == {"anatomy", "clinical knowledge", "college medicine"}
    files = sorted((shared_data / "mmlu-medical").glob("*.csv"))
    import csv

    rows = sum(1 for f in files for _ in csv.reader(f.open(encoding="utf-8", newline="")))
    assert len(records) == rows, "every CSV line is a question (no header row is swallowed)"
    assert {r["source_split"] for r in records.values()} == {"test"}
    assert all(r["type"] == "MCQU" and len(r["options"]) == 4 for r in records.values())


# ---- the Hub, up to the network call ----------------------------------------------------------------


def test_unreachable_hub_id_fails_fast_naming_it(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    spec = SourceSpec(adapter="mediqal", hub_id="medinjection-tests/no-such-dataset", revision="0" * 40)
    start = time.monotonic()
    with pytest.raises(SourceUnavailable, match="medinjection-tests/no-such-dataset"):
        get_adapter("mediqal")(spec).check_available()
    assert time.monotonic() - start < 10


def test_bundled_configs_load_and_pin_every_hub_source():
    full = load_build_config("full")
    assert {s.adapter for s in full.sources} <= set(ADAPTERS)
    hub = [s for s in full.sources if s.hub_id]
    assert hub and all(len(s.revision) == 40 and int(s.revision, 16) >= 0 for s in hub)
    for spec in full.sources:  # every adapter accepts its spec (provenance known, options allowed)
        get_adapter(spec.adapter)(spec, full.base_dir)
    demo = load_build_config("demo")
    for spec in demo.sources:
        get_adapter(spec.adapter)(spec, demo.base_dir).check_available()


def test_demo_samples_are_small_and_map_with_exactly_the_planned_bad_rows():
    demo = load_build_config("demo")
    samples = Path(demo.base_dir).parent / "samples"
    ours = [
        f
        for folder in ("native", "translated", "synthetic")
        for f in (samples / folder).rglob("*")
        if f.is_file()
    ]
    assert sum(f.stat().st_size for f in ours) < 200_000
    counts, bad = Counter(), []
    for spec in demo.sources:
        adapter = get_adapter(spec.adapter)(spec, demo.base_dir)
        for raw in adapter.iter_raw():
            try:
                record = adapter.map_row(raw)
                validate_record(record)
            except RecordError as err:
                bad.append(err.reason)
                continue
            counts[(record["provenance"], record["type"])] += 1
    assert bad == ["malformed_row"]  # the synthetic MCQ that lost its options; the other two are caught later
    for provenance in ("native", "translated", "synthetic"):
        assert sum(n for (p, _), n in counts.items() if p == provenance) >= 25, counts
    assert all(counts[("native", kind)] >= 30 for kind in ("MCQ", "MCQU", "OEQ")), counts


@pytest.mark.slow
def test_demo_build_loads_three_configs_with_three_splits(tmp_path):
    from datasets import load_dataset

    from medinjection.dataset_builders.build import build

    root = build(load_build_config("demo"), tmp_path / "demo", progress=False)
    for config in ("native", "translated", "synthetic"):
        loaded = load_dataset(str(root), config)
        assert set(loaded) == {"train", "validation", "test"} and all(len(split) for split in loaded.values())
    rejects = [
        json.loads(line)
        for f in sorted((root / "rejects").glob("*/*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    # the bundled sample files of this test's sources (other demo stages add their own rejects)
    planned = Counter(
        (r["step"], r["reason"]) for r in rejects if r["source"] in ("mediqal", "medinjection_release")
    )
    assert sum(planned.values()) == 3, planned
    assert planned[("read", "malformed_row")] == 1  # the synthetic MCQ without options
    assert planned[("language", "non_french")] == 1  # the English MCQU among the native samples
    assert planned[("exact_dedup", "exact_duplicate")] == 1  # the repeated translated question
