"""Near-duplicates across provenances and splits, and decontamination, on real FrenchMedMCQA items with
planted twins; the MinHash bucket stage against datatrove's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig

from medinjection.core.config import load_build_config
from medinjection.core.schema import make_id
from medinjection.dataset_builders.build import build
from medinjection.dataset_builders.steps.minhash_buckets import MinhashBuckets
from medinjection.dataset_builders.steps.minhash_text import (
    WORD_TOKENIZER,
    MinhashSignature,
    correct_options,
    near_dedup_text,
    signature_config,
    simplify,
)
from medinjection.dataset_builders.steps.near_dedup import same_answer, shingle_jaccard, shingles

PARAPHRASE = [
    ("Parmi les propositions suivantes", "Parmi les affirmations suivantes"),
    ("indiquer", "cocher"),
    ("laquelle", "celle qui"),
    ("exacte", "juste"),
]

# Distinct questions on the same topic, written for this test: they share a stem and most options.
SAME_TOPIC = [
    {
        "id": "st1",
        "question": "Parmi les propositions suivantes concernant le paracétamol, laquelle est exacte ?",
        "answers": {
            "a": "Il est anti-inflammatoire",
            "b": "Sa toxicité est hépatique",
            "c": "Il est contre-indiqué chez l'enfant",
            "d": "Il inhibe l'agrégation plaquettaire",
        },
        "correct_answers": ["b"],
        "type": "simple",
    },
    {
        "id": "st2",
        "question": "Parmi les propositions suivantes concernant le paracétamol, laquelle est fausse ?",
        "answers": {
            "a": "Il est anti-inflammatoire",
            "b": "Sa toxicité est hépatique",
            "c": "Il est antipyrétique",
            "d": "Son antidote est la N-acétylcystéine",
        },
        "correct_answers": ["a"],
        "type": "simple",
    },
    {
        "id": "st3",
        "question": "Quelle est la dose maximale journalière de paracétamol chez l'adulte sain ?",
        "answers": {"a": "1 g", "b": "2 g", "c": "4 g", "d": "8 g"},
        "correct_answers": ["c"],
        "type": "simple",
    },
    {
        "id": "st4",
        "question": "Quelle est la dose maximale journalière d'ibuprofène chez l'adulte sain en automédication ?",
        "answers": {"a": "400 mg", "b": "1200 mg", "c": "3 g", "d": "6 g"},
        "correct_answers": ["b"],
        "type": "simple",
    },
]
THRESHOLD = 0.6  # the config default the build runs with


def paraphrase(text: str) -> str:
    """A stand-in for a second translation: fixed rewordings and two neighbouring words swapped."""
    for a, b in PARAPHRASE:
        text = text.replace(a, b)
    words = text.split()
    middle = len(words) // 2
    words[middle - 1], words[middle] = words[middle], words[middle - 1]
    return " ".join(words)


def write(folder: Path, name: str, items: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")


def fmm_id(item: dict) -> str:
    return make_id("frenchmedmcqa", item["id"])


def kept_rows(root: Path) -> list[dict]:
    """Every kept row, with the output split it was written to (from its shard's name)."""
    return [
        {**row, "split": path.name.split("-", 1)[0]}
        for path in sorted(root.glob("data/*/*.parquet"))
        for row in pq.read_table(path).to_pylist()
    ]


def read_rejects(root: Path) -> dict[str, dict]:
    return {
        row["id"]: row
        for path in sorted((root / "rejects").glob("*/*.jsonl"))
        for row in map(json.loads, path.open())
    }


@pytest.fixture(scope="module")
def planted(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("near")
    train = json.loads((shared_data / "frenchmedmcqa" / "train.json").read_text(encoding="utf-8"))
    dev = json.loads((shared_data / "frenchmedmcqa" / "dev.json").read_text(encoding="utf-8"))
    native = [item for item in train[:400] if len(item["question"].split()) >= 8][:150]
    twins = {}
    translated_train, synthetic_train, translated_test, native_test = [], [], [], []
    for k, item in enumerate(native[:40]):
        kind = ("reordered", "reworded", "retranslated", "synthetic")[k % 4]
        copy = dict(item, id=f"twin-{k}-{kind}")
        if kind == "reordered":
            letters = sorted(item["answers"])
            texts = [item["answers"][x] for x in letters][::-1]
            copy["answers"] = dict(zip(letters, texts, strict=True))
            copy["correct_answers"] = [
                letters[len(letters) - 1 - letters.index(x)] for x in item["correct_answers"]
            ]
        elif kind == "reworded":
            words = item["question"].split()
            words[len(words) // 2] = "notamment"
            copy["question"] = " ".join(words)
        else:  # "retranslated" (translated) and "synthetic": the same item worded again
            copy["question"] = paraphrase(item["question"])
            copy["answers"] = {x: paraphrase(t) for x, t in item["answers"].items()}
        (synthetic_train if kind == "synthetic" else translated_train).append(copy)
        twins[fmm_id(copy)] = (kind, fmm_id(item))
    # across splits, same provenance: a native test item reworded in native train -> the test copy is kept
    native_test.append(dict(native[60], id="native-test-twin", question=paraphrase(native[60]["question"])))
    # across splits and provenances: the provenance decides first -> the native train copy is kept and the
    # translated test copies go (a near twin and an exact copy), and the kept train copy is not then
    # removed as "contaminated" by the test copies that were dropped in its favour
    translated_test.append(
        dict(native[50], id="translated-test-twin", question=paraphrase(native[50]["question"]))
    )
    translated_test.append(dict(native[51], id="translated-test-copy"))
    # a test item of the build that leaks, inside a longer question, into synthetic train data
    own_test = native[70]
    leaked_own = dict(
        own_test,
        id="leaked-own-test",
        question="Dans un cas clinique d'officine, un patient de soixante ans, diabétique et "
        "hypertendu, traité depuis dix ans, demande conseil au pharmacien sur son traitement "
        "habituel, sur ses analyses biologiques récentes et sur les effets indésirables qu'il "
        "redoute avant une intervention chirurgicale programmée le mois prochain. " + own_test["question"],
    )
    synthetic_train.append(leaked_own)
    # an item of FrenchMedMCQA's dev set (the external evaluation set below) leaks into training data
    leaked = dict(dev[7], id="leaked-dev-7")
    translated_train.append(leaked)
    native_train = [item for k, item in enumerate(native) if k != 70] + SAME_TOPIC
    write(folder / "native", "train", native_train)
    write(folder / "native", "test", native_test + [own_test])
    write(folder / "translated", "train", translated_train)
    write(folder / "translated", "test", translated_test)
    write(folder / "synthetic", "train", synthetic_train)
    config = {
        "name": "near",
        "sources": [
            {"adapter": "frenchmedmcqa", "path": p, "provenance": p}
            for p in ("native", "translated", "synthetic")
        ],
        "executor": {"type": "local", "tasks": 2, "workers": 2},
        "decontamination": {
            "eval_sets": [
                {
                    "adapter": "frenchmedmcqa",
                    "name": "FrenchMedMCQA dev",
                    "path": str(shared_data / "frenchmedmcqa" / "dev.json"),
                    "splits": ["validation"],
                }
            ]
        },
    }
    (folder / "build.yaml").write_text(yaml.safe_dump(config))
    root = build(load_build_config(folder / "build.yaml"), folder / "out", progress=False)
    return {
        "root": root,
        "rejects": read_rejects(root),
        "twins": twins,
        "native": native,
        "dev": dev,
        "own_test": own_test,
        "leaked_own": leaked_own,
        "leaked": leaked,
    }


def test_planted_twins_are_found_and_the_native_copy_is_kept(planted):
    rejects = planted["rejects"]
    for twin_id, (kind, original) in planted["twins"].items():
        assert twin_id in rejects, f"planted {kind} twin {twin_id} not removed"
        row = rejects[twin_id]
        assert (row["reason"], row["kept_id"]) == ("near_duplicate", original), (kind, row)
        assert row["step"] == "near_dedup" and row["record"]["instruction"], row
        # (one native item of this sample is itself removed, as contamination: FrenchMedMCQA train
        # ee87f2b2... repeats dev item c24e6c63...; it is still the kept twin of the near-dedup step)
        assert rejects.get(original, {}).get("step") != "near_dedup", (
            f"the native original of a {kind} twin was removed"
        )


def test_split_decides_within_a_provenance_and_provenance_across(planted):
    rejects, native = planted["rejects"], planted["native"]
    # native train vs native test: the test copy is kept
    row = rejects[fmm_id(native[60])]
    assert (row["reason"], row["kept_id"]) == ("near_duplicate", make_id("frenchmedmcqa", "native-test-twin"))
    assert make_id("frenchmedmcqa", "native-test-twin") not in rejects
    # native train vs translated test: the native copy is kept, the test copies go
    for test_id, original, reason in (
        ("translated-test-twin", native[50], "near_duplicate"),
        ("translated-test-copy", native[51], "exact_duplicate"),
    ):
        row = rejects[make_id("frenchmedmcqa", test_id)]
        assert (row["reason"], row["kept_id"]) == (reason, fmm_id(original)), row
        assert fmm_id(original) not in rejects, rejects.get(fmm_id(original))


def test_no_kept_test_item_has_a_near_twin_in_train_or_validation(planted):
    """Checked over every pair of kept records (not only those LSH proposed)."""
    rows = kept_rows(planted["root"])
    keyed = []
    for row in rows:
        keyed.append(
            {
                "id": row["id"],
                "split": row["split"],
                "type": row["type"],
                "correct": correct_options(row),
                "grams": shingles(simplify(near_dedup_text(row)), 1),
            }
        )
    test = [r for r in keyed if r["split"] == "test"]
    others = [r for r in keyed if r["split"] != "test"]
    assert test and others
    twins = [
        (a["id"], b["id"])
        for a in test
        for b in others
        if shingle_jaccard(a["grams"], b["grams"]) >= THRESHOLD and same_answer(a, b)
    ]
    assert not twins, twins


def test_distinct_questions_on_the_same_topic_are_kept(planted):
    for item in SAME_TOPIC:
        assert fmm_id(item) not in planted["rejects"], planted["rejects"].get(fmm_id(item))
    near = {row["id"] for row in planted["rejects"].values() if row["reason"] == "near_duplicate"}
    # nothing but the planted pairs is merged in this sample of real questions
    native = planted["native"]
    expected = set(planted["twins"]) | {fmm_id(native[60]), make_id("frenchmedmcqa", "translated-test-twin")}
    assert near == expected, (near - expected, expected - near)


def test_leaked_evaluation_items_are_removed_and_reported_with_their_twin(planted):
    rejects = planted["rejects"]
    row = rejects[fmm_id(planted["leaked"])]
    assert row["reason"] == "contamination" and row["step"] == "decontamination"
    assert row["kept_id"] == fmm_id(planted["dev"][7])
    assert "FrenchMedMCQA dev" in row["detail"]
    # the build's own test split is an evaluation set too
    row = rejects[fmm_id(planted["leaked_own"])]
    assert (row["reason"], row["kept_id"]) == ("contamination", fmm_id(planted["own_test"])), row
    assert "test split" in row["detail"]
    stats = json.loads((planted["root"] / "stats.json").read_text())
    assert stats["contamination"]["by_eval_set"]["FrenchMedMCQA dev"] >= 1
    assert stats["contamination"]["by_eval_set"]["the build's test splits"] == 1
    listed = {row["id"]: row["eval_id"] for row in stats["contamination"]["examples"]}
    assert listed[fmm_id(planted["leaked"])] == fmm_id(planted["dev"][7])
    report = (planted["root"] / "dedup_report.md").read_text()
    assert (
        f"| `{fmm_id(planted['leaked_own'])}` | synthetic | frenchmedmcqa | train | `{fmm_id(planted['own_test'])}` | the build's test splits |"
        in report
    )


def test_stats_and_report_count_removals_per_provenance_and_source(planted):
    stats = json.loads((planted["root"] / "stats.json").read_text())
    near = stats["removed"]["near_dedup"]
    assert near["by_provenance"] == {
        "native": {"near_duplicate": 1},
        "synthetic": {"near_duplicate": 10},
        "translated": {"near_duplicate": 31},
    }
    assert near["by_provenance_source"]["translated"] == {"frenchmedmcqa": {"near_duplicate": 31}}
    assert stats["removed"]["exact_dedup"]["by_provenance"] == {"translated": {"exact_duplicate": 1}}
    for prov, entry in stats["provenances"].items():
        assert entry["in"] == entry["kept"] + sum(entry["rejected"].values()), prov
    report = (planted["root"] / "dedup_report.md").read_text()
    synthetic = stats["provenances"]["synthetic"]
    contaminated = sum(stats["removed"]["decontamination"]["by_provenance"]["synthetic"].values())
    assert (
        f"| synthetic | frenchmedmcqa | {synthetic['in']} | {synthetic['kept']} | 0 | 10 | {contaminated} |"
        in report
    ), report
    assert "| FrenchMedMCQA dev |" in report


# ---- a small build in the release layout: configurable priority, contexts ----------------------------

CASE_1 = (
    "Un homme de 58 ans, fumeur, consulte pour une douleur thoracique brutale et une dyspnée après un long "
    "voyage en avion. Le mollet gauche est douloureux et augmenté de volume."
)
CASE_1_AGAIN = (
    "Un patient de 58 ans, fumeur, consulte pour une douleur thoracique brutale avec dyspnée au retour "
    "d'un long voyage en avion. Son mollet gauche est douloureux et augmenté de volume."
)
CASE_2 = (
    "Une femme de 34 ans consulte pour une fièvre à 39 °C, une toux productive et une douleur basithoracique "
    "droite depuis trois jours. La radiographie montre une opacité alvéolaire du lobe inférieur droit."
)
DIAGNOSIS = (
    "Quel est le diagnostic le plus probable chez ce patient ?\nA. Embolie pulmonaire\n"
    "B. Pneumopathie franche lobaire aiguë\nC. Infarctus du myocarde\nD. Pneumothorax spontané"
)
ITEM = (
    "Parmi les propositions suivantes concernant l'insuffisance rénale chronique, laquelle est exacte ?\n"
    "A. L'anémie est normocytaire arégénérative\nB. La kaliémie est toujours basse\n"
    "C. La calcémie est habituellement élevée\nD. Le débit de filtration glomérulaire est augmenté"
)
ITEM_REWORDED = (
    "Parmi les affirmations suivantes à propos de l'insuffisance rénale chronique, laquelle est juste ?\n"
    "A. La calcémie est habituellement élevée\nB. La kaliémie est toujours basse\n"
    "C. L'anémie est normocytaire arégénérative\nD. Le débit de filtration glomérulaire est augmenté"
)


def release_row(instruction: str, answer: str, context: str = "") -> dict:
    return {
        "instruction": instruction,
        "context": context,
        "answer": answer,
        "type": "MCQU",
        "origin": "test",
    }


@pytest.fixture(scope="module")
def reversed_priority(tmp_path_factory):
    folder = tmp_path_factory.mktemp("priority")
    files = {
        "native": [
            release_row(ITEM, "A"),
            release_row(DIAGNOSIS, "A", CASE_1),
            release_row(DIAGNOSIS, "B", CASE_2),
        ],
        "translated": [release_row(ITEM_REWORDED, "C"), release_row(DIAGNOSIS, "A", CASE_1_AGAIN)],
        "synthetic": [release_row(ITEM_REWORDED.replace("laquelle est juste", "laquelle est exacte"), "C")],
    }
    for prov, rows in files.items():
        write(folder / prov, "train", rows)
    config = {
        "name": "priority",
        "provenance_priority": ["synthetic", "translated", "native"],
        "sources": [{"adapter": "medinjection_release", "path": p, "provenance": p} for p in files],
        "executor": {"type": "local", "tasks": 1},
    }
    (folder / "build.yaml").write_text(yaml.safe_dump(config))
    root = build(load_build_config(folder / "build.yaml"), folder / "out", progress=False)
    return kept_rows(root), read_rejects(root)


def test_the_provenance_priority_is_configurable(reversed_priority):
    kept, rejects = reversed_priority
    rows = [*kept, *({"id": i, **r["record"]} for i, r in rejects.items())]
    item = {row["provenance"]: row["id"] for row in rows if "insuffisance" in row["instruction"]}
    assert item.keys() == {"native", "translated", "synthetic"}
    for prov in ("native", "translated"):  # synthetic first in this build's priority
        assert (rejects[item[prov]]["reason"], rejects[item[prov]]["kept_id"]) == (
            "near_duplicate",
            item["synthetic"],
        )
    assert item["synthetic"] not in rejects


def test_the_same_question_on_another_case_is_another_item(reversed_priority):
    kept, rejects = reversed_priority
    diagnosis = {
        (row["provenance"], row["context"][:20]): row["id"]
        for row in kept
        if "diagnostic" in row["instruction"]
    }
    # the question and options of CASE_2 equal CASE_1's: kept, its context differs
    assert ("native", CASE_2[:20]) in diagnosis
    # CASE_1 told again in other words (translated, first in this priority): the native copy goes
    removed = rejects[next(i for i, r in rejects.items() if r["record"]["context"] == CASE_1)]
    assert (removed["reason"], removed["kept_id"]) == (
        "near_duplicate",
        diagnosis[("translated", CASE_1_AGAIN[:20])],
    )


# ---- the vectorised bucket stage writes what datatrove's writes ---------------------------------------


def root(parent: dict, x):
    while parent.get(x, x) != x:
        x = parent[x]
    return x


def test_bucket_stage_finds_the_pairs_datatrove_finds(shared_data, tmp_path):
    train = json.loads((shared_data / "frenchmedmcqa" / "train.json").read_text(encoding="utf-8"))
    config = MinhashConfig(
        n_grams=1, num_buckets=6, hashes_per_bucket=3, seed=1, hash_config=HashConfig(precision=32)
    )
    signature = MinhashSignature(
        str(tmp_path / "sigs"), config=signature_config(config), language=WORD_TOKENIZER
    )
    for rank in range(2):  # two tasks, as in a build; pairs across both files are needed
        part = train[rank::2]
        docs = [
            Document(
                text=simplify(" ".join([row["question"], *sorted(row["answers"].values())]).casefold()),
                id=str(k),
            )
            for k, row in enumerate(part)
        ]
        signature.run(iter(docs), rank=rank, world_size=2)
    pairs = {}
    for name, step, world in (
        ("ours", MinhashBuckets, 4),
        ("datatrove", MinhashDedupBuckets, config.num_buckets),
    ):
        out = tmp_path / name
        for rank in range(world):
            list(step(str(tmp_path / "sigs"), str(out), config=config).run(rank=rank, world_size=world) or ())
        pairs[name] = {
            path.name: {tuple(row) for row in np.fromfile(path, dtype="<u4").reshape(-1, 4).tolist()}
            for path in sorted(out.glob("*.dups"))
        }
    assert pairs["ours"].keys() == {f"{bucket:05d}_00.dups" for bucket in range(config.num_buckets)}
    # datatrove pairs each record with the previous one of equal signature; ours also pair it with
    # earlier ones of that signature: every datatrove pair is ours, every extra pair of ours joins two
    # records datatrove's pairs put in one cluster
    for name, theirs in pairs["datatrove"].items():
        assert theirs <= pairs["ours"][name], name
        parent: dict = {}
        for a, i, b, j in theirs:
            parent[root(parent, (a, i))] = root(parent, (b, j))
        extra = pairs["ours"][name] - theirs
        assert all(root(parent, (a, i)) == root(parent, (b, j)) for a, i, b, j in extra), name
    assert sum(map(len, pairs["ours"].values())) > 10  # FrenchMedMCQA repeats some of its questions
    assert any(
        a != b for found in pairs["ours"].values() for a, _, b, _ in found
    )  # pairs across the two tasks


def test_batched_signatures_write_the_files_datatrove_writes(shared_data, tmp_path):
    """Same bytes in every bucket file as datatrove's MinhashDedupSignature, empty texts included."""
    items = json.loads((shared_data / "frenchmedmcqa" / "train.json").read_text(encoding="utf-8"))

    def docs():
        return [
            Document(text=simplify(item["question"].casefold()) if k % 50 else "", id=str(k))
            for k, item in enumerate(items)
        ]

    config = MinhashConfig(
        n_grams=1, num_buckets=20, hashes_per_bucket=4, seed=1, hash_config=HashConfig(precision=32)
    )
    written = {}
    for name, step in (("ours", MinhashSignature), ("datatrove", MinhashDedupSignature)):
        folder = tmp_path / name
        step(str(folder), config=signature_config(config), language=WORD_TOKENIZER).run(iter(docs()), 0, 1)
        written[name] = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.sig"))
        }
    assert len(written["ours"]) == 20
    assert written["ours"] == written["datatrove"]
