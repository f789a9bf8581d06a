"""Decontamination: what it indexed is what the report says.

A translated item whose English original is an item of an English evaluation set is removed; every
evaluation set is checked before any work (missing, unreachable, empty: the build stops naming it);
a split-less set gets the build's hashed split; unreadable rows are counted; FrenchMedMCQA's test
split (no ``type`` field) stays ``test`` in a build and, named as an evaluation set, removes its
items planted (lightly reworded) in a training file; the dedup report and the card give per set the
items indexed, the rows unreadable and the training items removed."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from medinjection.core.config import EvalSetSpec, SplitConfig, load_build_config
from medinjection.core.schema import make_id
from medinjection.dataset_builders.build import build
from medinjection.dataset_builders.steps.decontaminate import EvalSetError, read_eval_set
from medinjection.dataset_builders.steps.reader import hashed_split

SAMPLES = Path(__file__).resolve().parents[2] / "dataset_builders" / "samples"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


def write_config(folder: Path, sources: list[dict], eval_sets: list[dict], **extra) -> Path:
    config = {
        "name": "decont-test",
        "sources": sources,
        "decontamination": {"eval_sets": eval_sets},
        "executor": {"type": "local", "tasks": 1, "workers": 1},
        **extra,
    }
    path = folder / "build.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def run(folder: Path, sources: list[dict], eval_sets: list[dict], **extra) -> Path:
    return build(
        load_build_config(write_config(folder, sources, eval_sets, **extra)), folder / "out", progress=False
    )


def rejects(root: Path, step: str) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((root / "rejects" / step).glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]


def kept(root: Path, split: str) -> list[dict]:
    return [
        row
        for path in sorted(root.glob(f"data/*/{split}-*.parquet"))
        for row in pq.read_table(path).to_pylist()
    ]


def test_a_translation_of_an_english_eval_item_is_contamination(tmp_path):
    demo = load_build_config("demo")
    mmlu = EvalSetSpec(
        adapter="mmlu_medical", path=str(SAMPLES / "english" / "mmlu"), splits=["train"], name="MMLU sample"
    )
    config = demo.model_copy(
        update={"decontamination": demo.decontamination.model_copy(update={"eval_sets": [mmlu]})}
    )
    root = build(config, tmp_path / "out", progress=False)

    found = rejects(root, "decontamination")
    translated_mmlu = [r for r in found if r["record"]["origin"].lower().startswith("mmlu")]
    assert translated_mmlu, [r["record"]["origin"] for r in found]
    for reject in translated_mmlu:
        assert reject["reason"] == "contamination"
        assert reject["kept_id"].startswith("mmlu_medical-")
        assert reject["record"]["original"]["instruction"]
    # nothing of the translated MMLU items is left in the data
    stats = json.loads((root / "stats.json").read_text())
    kept_mmlu = stats["sources"].get("mmlu_medical", {}).get("kept", 0)
    assert kept_mmlu == 0, stats["sources"]["mmlu_medical"]
    sets = {entry["name"]: entry for entry in stats["contamination"]["eval_sets"]}
    assert sets["MMLU sample"]["removed"] == len(translated_mmlu)


# ---- every evaluation set checked before any work -------------------------------------------------

SOURCE = [{"adapter": "frenchmedmcqa", "path": str(FIXTURES / "frenchmedmcqa" / "train.json")}]


def test_a_missing_evaluation_set_stops_the_build_naming_it(tmp_path):
    with pytest.raises(EvalSetError, match="evaluation set 'FrenchMedMCQA test'.*no file or folder"):
        run(
            tmp_path,
            SOURCE,
            [{"adapter": "frenchmedmcqa", "path": "nope/test.json", "name": "FrenchMedMCQA test"}],
        )
    assert not (tmp_path / "out").exists(), "work started before the evaluation sets were checked"


def test_an_unreachable_hub_evaluation_set_stops_the_build_naming_it(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(EvalSetError, match="evaluation set 'MediQAl test'.*medinjection-tests/no-such"):
        run(
            tmp_path,
            SOURCE,
            [
                {
                    "adapter": "mediqal",
                    "hub_id": "medinjection-tests/no-such-dataset",
                    "revision": "0" * 40,
                    "name": "MediQAl test",
                }
            ],
        )
    assert time.monotonic() - start < 20 and not (tmp_path / "out").exists()


def test_a_set_without_items_in_its_splits_stops_the_build(tmp_path, shared_data):
    # MMLU's shared files are test questions: asking for their train split indexes nothing
    mmlu = {"adapter": "mmlu_medical", "path": str(shared_data / "mmlu-medical"), "splits": ["train"]}
    with pytest.raises(EvalSetError) as err:
        run(tmp_path, SOURCE, [mmlu])
    assert "evaluation set 'mmlu_medical'" in str(err.value) and "no item in split(s) train" in str(err.value)
    assert "573 rows read; rows by split: test 573" in str(err.value)  # says which splits the set has
    assert not (tmp_path / "out").exists()


def test_two_sets_under_one_name_are_refused(tmp_path):
    from medinjection.core.config import ConfigError

    same = {"adapter": "frenchmedmcqa", "path": str(FIXTURES / "frenchmedmcqa")}
    with pytest.raises(ConfigError, match="share the name"):
        load_build_config(write_config(tmp_path, SOURCE, [same, same]))


def test_a_split_less_set_gets_the_builds_hashed_split(shared_data):
    split, seed = SplitConfig(validation=0.05, test=0.05), 0
    every = read_eval_set(
        EvalSetSpec(
            adapter="pubmedqa", path=str(shared_data / "pubmedqa"), splits=["train", "validation", "test"]
        ),
        ".",
        split,
        seed,
    )
    assert len(every.items) == every.rows == 1000  # today's bug: 0 items (no row had a split)
    everything = read_eval_set(
        EvalSetSpec(adapter="pubmedqa", path=str(shared_data / "pubmedqa"), splits="all"), ".", split, seed
    )
    assert [i[0] for i in everything.items] == [i[0] for i in every.items]
    test_only = read_eval_set(
        EvalSetSpec(adapter="pubmedqa", path=str(shared_data / "pubmedqa"), splits=["test"]), ".", split, seed
    )
    expected = {item[0] for item in every.items if hashed_split(item[0], split, seed) == "test"}
    assert {item[0] for item in test_only.items} == expected and 20 < len(expected) < 100
    assert sum(test_only.other_splits.values()) == 1000 - len(expected)


# ---- FrenchMedMCQA's test split, in a build and as an evaluation set --------------------------------


def test_a_frenchmedmcqa_build_with_its_test_split_keeps_the_test_items_in_test(tmp_path):
    root = run(tmp_path, [{"adapter": "frenchmedmcqa", "path": str(FIXTURES / "frenchmedmcqa")}], [])
    test = kept(root, "test")
    published = json.loads((FIXTURES / "frenchmedmcqa" / "test.json").read_text())
    readable = [row for row in published if row["nbr_correct_answers"] == len(row["correct_answers"])]
    assert sorted(r["source_id"] for r in test) == sorted(row["id"] for row in readable)
    assert Counter(r["type"] for r in test) == {"MCQU": 1, "MCQ": 2}
    assert {r["source_split"] for r in test} == {"test"}


def reword(item: dict) -> dict:
    """A light rewording, as when an exam question is copied into another collection: one word of
    the question dropped, the options in reverse order (letters re-assigned), one option extended."""
    words = item["question"].split()
    del words[len(words) // 2]
    letters = sorted(item["answers"])
    texts = [item["answers"][letter] for letter in reversed(letters)]
    texts[0] = texts[0] + " uniquement"
    moved = {old: new for old, new in zip(reversed(letters), letters, strict=True)}
    correct = sorted(moved[letter] for letter in item["correct_answers"])
    return {
        "id": hashlib.sha256(f"planted:{item['id']}".encode()).hexdigest(),
        "question": " ".join(words),
        "answers": dict(zip(letters, texts, strict=True)),
        "correct_answers": correct,
        "subject_name": item["subject_name"],
        "type": "multiple" if len(correct) > 1 else "simple",
        "nbr_correct_answers": len(correct),
    }


def test_planted_test_items_are_removed_and_the_report_counts_each_set(tmp_path, shared_data):
    train = json.loads((shared_data / "frenchmedmcqa" / "train.json").read_text())[:150]
    dev = json.loads((shared_data / "frenchmedmcqa" / "dev.json").read_text())
    # the published test split's shape: FrenchMedMCQA's own rows without `type`
    test = [{k: v for k, v in item.items() if k != "type"} for item in dev[:60]]
    broken = {**test[0], "id": "f" * 64, "nbr_correct_answers": 9}  # an unreadable row of the set
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "test.json").write_text(json.dumps([*test, broken], ensure_ascii=False))
    planted = [reword(item) for item in dev[:40]]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.json").write_text(json.dumps(train + planted, ensure_ascii=False))

    root = run(
        tmp_path,
        [{"adapter": "frenchmedmcqa", "path": "src"}],
        [
            {"adapter": "frenchmedmcqa", "path": "eval", "splits": ["test"], "name": "FrenchMedMCQA test"},
            {
                "adapter": "pubmedqa",
                "path": str(shared_data / "pubmedqa"),
                "splits": ["train", "validation", "test"],
                "name": "PubMedQA-L",
            },
        ],
    )
    removed = {r["record"]["source_id"]: r for r in rejects(root, "decontamination")}
    planted_ids = {row["id"] for row in planted}
    assert not planted_ids & {r["source_id"] for r in kept(root, "train")}, "a planted item is still in train"
    # a planted copy of a test item that FrenchMedMCQA also repeats in train may instead go as the
    # near twin of that train copy, which is then removed itself: follow the twin to its removal
    twins = {r["id"]: r for step in ("exact_dedup", "near_dedup") for r in rejects(root, step)}
    by_id = {r["id"]: r for r in removed.values()}
    test_id = {item["id"]: make_id("frenchmedmcqa", item["id"]) for item in dev[:60]}
    for item, copy in zip(dev[:40], planted, strict=True):
        reject = removed.get(copy["id"])
        if reject is None:
            twin = next(r for r in twins.values() if r["record"]["source_id"] == copy["id"])
            reject = by_id[twin["kept_id"]]  # its twin was removed as contamination
        assert reject["kept_id"] == test_id[item["id"]], "each names the test item it copies"
        assert "FrenchMedMCQA test" in reject["detail"]
    # what else was removed is a train item that repeats a test question (FrenchMedMCQA repeats
    # exam questions across years), never a distinct one
    test_text = {test_id[i["id"]]: f"{i['question']} {' '.join(i['answers'].values())}" for i in dev[:60]}
    for source_id, reject in removed.items():
        if source_id in planted_ids:
            continue
        record = reject["record"]
        mine = set(
            f"{record['instruction']} {' '.join(o['text'] for o in record['options'])}".lower().split()
        )
        theirs = set(test_text[reject["kept_id"]].lower().split())
        assert len(mine & theirs) / len(mine | theirs) >= 0.5, (
            record["instruction"],
            test_text[reject["kept_id"]],
        )
    assert len(removed) - len(planted_ids & set(removed)) <= 3

    stats = json.loads((root / "stats.json").read_text())
    sets = {entry["name"]: entry for entry in stats["contamination"]["eval_sets"]}
    assert list(sets) == ["the build's test splits", "FrenchMedMCQA test", "PubMedQA-L"]
    fmm = sets["FrenchMedMCQA test"]
    assert (fmm["rows"], fmm["items"], fmm["unreadable"], fmm["removed"]) == (61, 60, 1, len(removed))
    assert fmm["indexed"] + fmm["too_short"] == 60 and fmm["unreadable_by_reason"] == {"malformed_row": 1}
    assert "nbr_correct_answers is 9" in fmm["unreadable_examples"][0]
    assert str(tmp_path) not in fmm["unreadable_examples"][0], "the published report names no local path"
    pubmed = sets["PubMedQA-L"]
    assert (pubmed["rows"], pubmed["items"], pubmed["indexed"], pubmed["unreadable"], pubmed["removed"]) == (
        1000,
        1000,
        1000,
        0,
        0,
    )
    own = sets["the build's test splits"]
    assert own["items"] == 0 and own["removed"] == 0  # this build has no test split of its own

    cells = [
        "FrenchMedMCQA test",
        "frenchmedmcqa",
        "test",
        "61",
        fmm["indexed"],
        fmm["too_short"],
        "1",
        len(removed),
    ]
    row = "| " + " | ".join(str(cell) for cell in cells) + " |"
    report = (root / "dedup_report.md").read_text()
    assert (
        row in report
        and "| PubMedQA-L | pubmedqa | train, validation, test | 1,000 | 1,000 | 0 | 0 | 0 |" in report
    )
    assert row in (root / "README.md").read_text(), "the card gives the per-set counts too"
