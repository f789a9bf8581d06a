"""Evaluation tasks are data files (medinjection/evaluation/tasks/): the bundled ones parse, unknown names
fail with the list, items load through the source adapters (real shared data) and from a built dataset folder."""

from __future__ import annotations

import json

import pytest
import yaml

from medinjection.evaluation.items import ItemError, load_items
from medinjection.evaluation.tasks import TaskError, dataset_task, known_tasks, load_task

EXPECTED = {
    "frenchmedmcqa",
    "frenchmedmcqa-validation",
    "mediqal",
    "mmlu-medical",
    "medqa",
    "medmcqa",
    "pubmedqa",
    "native-test",
    "translated-test",
    "synthetic-test",
}


def test_bundled_tasks_parse():
    assert set(known_tasks()) == EXPECTED
    for name in known_tasks():
        spec = load_task(name)
        assert spec.name == name
        if spec.source is not None and spec.source.hub_id:
            assert spec.source.revision and len(spec.source.revision) == 40  # pinned to a commit


def test_unknown_name_fails_with_the_list():
    with pytest.raises(TaskError) as err:
        load_task("frenchmedqa")
    message = str(err.value)
    assert "unknown task 'frenchmedqa'" in message
    for name in EXPECTED:
        assert repr(name) in message


def test_a_bad_key_names_it(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "mine", "source": {"adapter": "frenchmedmcqa", "path": "x"}, "splits": ["test"]}
        )
    )
    with pytest.raises(TaskError, match=r"mine.yaml: splits: Extra inputs are not permitted"):
        load_task(str(path))
    path.write_text(
        yaml.safe_dump({"name": "mine", "source": {"adapter": "mediqal", "hub_id": "ANR-MALADES/MediQAl"}})
    )
    with pytest.raises(TaskError, match="pinned revision"):
        load_task(str(path))


def test_user_file_paths_resolve_against_its_folder(tmp_path, shared_data):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "fmm").symlink_to(shared_data / "frenchmedmcqa")
    path = folder / "fmm-dev.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "fmm-dev",
                "source": {"adapter": "frenchmedmcqa", "path": "fmm"},
                "split": "validation",
                "limit": 5,
            }
        )
    )
    spec = load_task(str(path))
    assert spec.source.path == str((folder / "fmm").resolve())
    assert len(load_items(spec).items) == 5


def test_real_tasks_through_the_adapters(shared_data):
    fmm = load_items(load_task("frenchmedmcqa-validation", shared_data))
    assert fmm.counts() == {"MCQ": 148, "MCQU": 164} and not fmm.rejected
    first = fmm.items[0]
    assert first.messages[0]["role"] == "system" and "Question :" in first.messages[1]["content"]
    assert set(first.gold) <= set(first.letters)
    mmlu = load_items(load_task("mmlu-medical", shared_data))
    assert mmlu.counts() == {"MCQU": 573}
    pubmedqa = load_items(load_task("pubmedqa", shared_data))
    assert pubmedqa.counts() == {"MCQU": 1000}
    assert {item.letters for item in pubmedqa.items} == {("A", "B", "C")}


def test_a_split_the_source_lacks_is_an_error(shared_data):
    # the shared FrenchMedMCQA copy has train and dev only
    with pytest.raises(ItemError, match=r"no row of split 'test'.*rows by split"):
        load_items(load_task("frenchmedmcqa", shared_data))


def fmm_rows(n: int) -> list[dict]:
    drugs = ["l'aspirine", "le paracétamol", "l'ibuprofène", "la morphine", "la codéine"]
    rows = []
    for i in range(n):
        correct = ["b"] if i % 3 else ["a", "c"]
        rows.append(
            {
                "id": f"q{i}",
                "question": f"Question {i} : parmi ces médicaments, lequel est un antalgique de palier {1 + i % 3} ?",
                "answers": dict(zip("abcde", drugs, strict=True)),
                "correct_answers": correct,
                "subject_name": "pharmacologie",
                "type": "simple" if len(correct) == 1 else "multiple",
                "nbr_correct_answers": len(correct),
            }
        )
    return rows


def test_bad_rows_fail_or_are_kept_aside(tmp_path):
    rows = fmm_rows(6)
    rows[2]["answers"] = "pas un dictionnaire"
    (tmp_path / "dev.json").write_text(json.dumps(rows, ensure_ascii=False))
    path = tmp_path / "mine.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "mine", "source": {"adapter": "frenchmedmcqa", "path": "."}, "split": "validation"}
        )
    )
    spec = load_task(str(path))
    with pytest.raises(ItemError, match=r"1 row\(s\) cannot be scored .*dev.json:2: malformed_row"):
        load_items(spec)
    kept = load_items(spec, skip_bad_rows=True)
    assert (
        len(kept.items) == 5
        and len(kept.rejected) == 1
        and kept.rejected[0]["location"].endswith("dev.json:2")
    )


def write_built_folder(root, records_by_split):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medinjection.core.chat import to_messages

    for split, records in records_by_split.items():
        folder = root / "data" / "native"
        folder.mkdir(parents=True, exist_ok=True)
        for record in records:
            record["messages"] = to_messages(record)
        pq.write_table(pa.Table.from_pylist(records), folder / f"{split}-00000.parquet")
    (root / "mixes.json").write_text(
        json.dumps({"chat_version": "v1", "types": ["MCQ", "MCQU", "OEQ"], "mixes": {}})
    )


def built_records(n_mc: int = 6, n_oeq: int = 2) -> list[dict]:
    from medinjection.core.schema import format_letters, new_record

    records = []
    for i in range(n_mc):
        correct = ["B"] if i % 2 else ["A", "D"]
        records.append(
            new_record(
                provenance="native",
                source="mediqal",
                source_id=f"m{i}",
                type="MCQU" if len(correct) == 1 else "MCQ",
                instruction=f"Cas {i} : quel examen demander en premier devant une douleur thoracique ?",
                options=[
                    {"letter": x, "text": t}
                    for x, t in zip("ABCD", ["ECG", "scanner", "IRM", "troponine"], strict=True)
                ],
                correct_letters=correct,
                answer=format_letters(correct),
            )
        )
    for i in range(n_oeq):
        records.append(
            new_record(
                provenance="native",
                source="mediqal",
                source_id=f"o{i}",
                type="OEQ",
                instruction=f"Cas {i} : quelle est la conduite à tenir devant une hypoglycémie ?",
                answer="Resucrage oral si le patient est conscient, glucagon sinon.",
            )
        )
    return records


def test_dataset_task_reads_a_built_folder(tmp_path):
    write_built_folder(tmp_path / "medinjection-fr", {"test": built_records(), "train": built_records(3, 0)})
    spec = dataset_task(str(tmp_path / "medinjection-fr"), "native", "test")
    assert spec.name == "native-test"
    item_set = load_items(spec)
    assert item_set.counts() == {"MCQ": 3, "MCQU": 3, "OEQ": 2}
    oeq = next(i for i in item_set.items if i.type == "OEQ")
    assert oeq.reference.startswith("Resucrage") and oeq.messages[-1]["role"] == "user"
    with pytest.raises(ItemError, match=r"no config 'nat'.*configs: \['native'\]"):
        load_items(dataset_task(str(tmp_path / "medinjection-fr"), "nat", "test"))
    with pytest.raises(
        ItemError, match=r"config 'native' has no validation split \(splits: \['test', 'train'\]\)"
    ):
        load_items(dataset_task(str(tmp_path / "medinjection-fr"), "native", "validation"))
