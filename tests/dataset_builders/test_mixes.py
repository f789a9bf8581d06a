"""The seven training mixes: equal sizes, equal provenance shares, type proportions, train-only
sourcing, identical bytes for a seed, clear errors when a provenance is short, the task types
(``--types``: the paper's multiple-choice-only preset by default) and the chat format version in
the manifest, and loading with ``load_dataset(folder, name)`` from a real build."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.core.chat import to_messages
from medinjection.core.layout import shard_chat_version, shard_schema
from medinjection.core.schema import FEATURES, PROVENANCES, TYPES, new_record
from medinjection.dataset_builders.mixes import (
    MIXES,
    MixError,
    build_mixes,
    largest_remainder,
    parse_types,
    provenance_shares,
)

SIZE = 251  # odd and not a multiple of 3: exercises the remainder rules
# train items by provenance and type (unequal proportions, OEQ included)
TRAIN = {
    "native": {"MCQ": 150, "MCQU": 101, "OEQ": 49},
    "translated": {"MCQ": 37, "MCQU": 400, "OEQ": 63},
    "synthetic": {"MCQ": 60, "MCQU": 60, "OEQ": 140},
}
EVAL = {"validation": 20, "test": 30}


def make_row(provenance: str, split: str, kind: str, n: int) -> dict:
    text = f"Question {n} de {provenance} ({split}) sur la prise en charge de l'hypertension artérielle ?"
    fields = {"instruction": text, "answer": "Réponse libre."}
    if kind != "OEQ":
        correct = ["A", "C"] if kind == "MCQ" else ["B"]
        fields = {
            "instruction": text,
            "options": [{"letter": letter, "text": f"Option {letter} {n}"} for letter in "ABCD"],
            "correct_letters": correct,
            "answer": ", ".join(correct),
        }
    generation = (
        None if provenance == "native" else {"model": "gpt-4o", "prompt_version": "v1", "seed_id": str(n)}
    )
    record = new_record(
        provenance=provenance,
        source=f"src_{provenance}",
        source_id=f"{split}-{kind}-{n}",
        source_split=split,
        origin="Fixture",
        type=kind,
        language="fr",
        language_score=0.99,
        generation=generation,
        **fields,
    )
    record["messages"] = to_messages(record)
    return record


def write_folder(root: Path, train: dict = TRAIN, shards: int = 1, chat_version: str | None = "v1") -> Path:
    """A dataset folder with schema-shaped Parquet files, as the build writes them (their footers
    record the chat format version, unless ``chat_version`` is None)."""
    schema = shard_schema(chat_version) if chat_version else FEATURES.arrow_schema
    rng = random.Random(1)
    for provenance in PROVENANCES:
        folder = root / "data" / provenance
        folder.mkdir(parents=True)
        rows = [
            make_row(provenance, "train", t, n) for t in TYPES for n in range(train[provenance].get(t, 0))
        ]
        rng.shuffle(rows)
        for shard in range(shards):
            part = rows[shard::shards]
            pq.write_table(
                pa.Table.from_pylist(part, schema=schema),
                folder / f"train-{shard:05d}.parquet",
            )
        for split, n in EVAL.items():
            rows = [make_row(provenance, split, TYPES[i % 3], i) for i in range(n)]
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / f"{split}-00000.parquet")
    return root


def read(root: Path, folder: str, split: str = "train") -> list[dict]:
    rows = []
    for path in sorted((root / "data" / folder).glob(f"{split}-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def file_digests(root: Path) -> dict[str, str]:
    paths = [p for mix in MIXES for p in sorted((root / "data" / mix).glob("*.parquet"))] + [
        root / "mixes.json"
    ]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """Mixes of all three task types (``--types all``): the quota rules over MCQ, MCQU and OEQ."""
    root = write_folder(tmp_path_factory.mktemp("mixed"))
    build_mixes(root, size=SIZE, seed=0, write_card=False, types="all")
    return root


def test_shares_and_quotas_rules():
    assert provenance_shares(33_493, MIXES["all"]) == {
        "native": 11_165,
        "translated": 11_164,
        "synthetic": 11_164,
    }
    assert provenance_shares(33_493, MIXES["nat_trad"]) == {"native": 16_747, "translated": 16_746}
    assert provenance_shares(33_493, MIXES["trad_syn"]) == {"translated": 16_747, "synthetic": 16_746}
    quotas = largest_remainder(10, {"MCQ": 10, "MCQU": 10, "OEQ": 10})
    assert quotas == {"MCQ": 4, "MCQU": 3, "OEQ": 3}  # the tie goes to the first type
    for total in range(0, 301, 7):
        quotas = largest_remainder(total, TRAIN["native"])
        assert sum(quotas.values()) == total
        assert all(abs(quotas[t] - total * n / 300) < 1 for t, n in TRAIN["native"].items())


def test_every_mix_has_the_same_size_and_equal_provenance_shares(mixed):
    for mix, provenances in MIXES.items():
        rows = read(mixed, mix)
        assert len(rows) == SIZE, mix
        shares = Counter(row["provenance"] for row in rows)
        assert set(shares) == set(provenances), mix
        assert max(shares.values()) - min(shares.values()) <= 1, (mix, shares)
        assert dict(shares) == provenance_shares(SIZE, provenances)


def test_types_keep_their_proportion_within_one_example(mixed):
    for mix in MIXES:
        rows = read(mixed, mix)
        for provenance, share in Counter(row["provenance"] for row in rows).items():
            types = Counter(row["type"] for row in rows if row["provenance"] == provenance)
            available = TRAIN[provenance]
            total = sum(available.values())
            for t in TYPES:
                assert abs(types.get(t, 0) - share * available[t] / total) < 1, (mix, provenance, t, types)


def test_mixes_come_only_from_train_and_keep_every_column(mixed):
    by_id = {row["id"]: row for p in PROVENANCES for row in read(mixed, p, "train")}
    eval_ids = {row["id"] for p in PROVENANCES for split in EVAL for row in read(mixed, p, split)}
    for mix in MIXES:
        rows = read(mixed, mix)
        assert len({row["id"] for row in rows}) == len(rows), f"{mix}: an item appears twice"
        for row in rows:
            assert row["id"] not in eval_ids
            assert row == by_id[row["id"]], f"{mix}: row {row['id']} differs from its train row"
        assert pq.read_schema(next((mixed / "data" / mix).glob("*.parquet"))).metadata[b"huggingface"]


def test_mixes_json_counts_equal_the_files(mixed):
    report = json.loads((mixed / "mixes.json").read_text())
    assert report["size"] == report["requested_size"] == SIZE and report["seed"] == 0
    assert report["types"] == ["MCQ", "MCQU", "OEQ"] and report["types_preset"] == "all"
    assert report["chat_version"] == "v1"
    assert report["available_train"] == {p: {t: TRAIN[p].get(t, 0) for t in TYPES} for p in PROVENANCES}
    for mix, info in report["mixes"].items():
        rows = read(mixed, mix)
        assert info["train"] == len(rows)
        assert info["by_provenance"] == dict(Counter(r["provenance"] for r in rows))
        assert info["by_type"] == dict(Counter(r["type"] for r in rows))
        assert info["by_source"] == dict(Counter(r["source"] for r in rows))
        for path, digest in info["files"].items():
            assert hashlib.sha256((mixed / path).read_bytes()).hexdigest() == digest


def test_same_seed_same_bytes_whatever_the_sharding_and_another_seed_differs(mixed, tmp_path):
    again = write_folder(tmp_path / "again", shards=3)  # the same rows, sharded differently
    build_mixes(again, size=SIZE, seed=0, write_card=False, types="MCQU,OEQ,MCQ")
    assert file_digests(again) == file_digests(mixed)
    other = write_folder(tmp_path / "other")
    build_mixes(other, size=SIZE, seed=1, write_card=False, types="all")
    assert {r["id"] for r in read(other, "all")} != {r["id"] for r in read(mixed, "all")}


def test_a_short_provenance_stops_with_numbers_unless_allowed(tmp_path):
    train = {**TRAIN, "synthetic": {"MCQ": 20, "MCQU": 10, "OEQ": 10}}
    root = write_folder(tmp_path / "short", train)
    with pytest.raises(MixError) as err:
        build_mixes(root, size=SIZE, write_card=False, types="all")
    message = str(err.value)
    assert "'synthetic' has 40 train items of type MCQ/MCQU/OEQ but needs 251" in message
    assert "--allow-smaller" in message and "native" not in message.split("largest")[0]
    assert not (root / "mixes.json").exists() and not (root / "data" / "all").exists()
    result = build_mixes(root, size=SIZE, allow_smaller=True, write_card=False, types="all")
    assert result.size == 40 and result.requested_size == SIZE
    assert all(len(read(root, mix)) == 40 for mix in MIXES)


def test_mix_command_reports_the_short_provenance_and_the_smaller_size(tmp_path):
    root = write_folder(tmp_path / "cli", {**TRAIN, "translated": {"MCQU": 30}})
    runner = CliRunner()
    result = runner.invoke(app, ["mix", str(root), "--size", "100"])
    assert result.exit_code == 1
    assert "'translated' has 30 train items of type MCQ/MCQU but needs 100" in result.output
    result = runner.invoke(app, ["mix", str(root), "--size", "100", "--allow-smaller"])
    assert "note: mixes of 30 train examples, not 100" in result.output
    assert all(len(read(root, mix)) == 30 for mix in MIXES)
    # this folder has no stats.json (not a real build): the mixes are written, the card error is reported
    assert result.exit_code == 1 and "cards are not" in result.output and "stats.json" in result.output


def test_a_missing_provenance_is_named(tmp_path):
    root = write_folder(tmp_path / "none", {**TRAIN, "translated": {}})
    with pytest.raises(MixError, match="no train items of type MCQ/MCQU of provenance translated"):
        build_mixes(root, size=10, allow_smaller=True, write_card=False)


# ---- task types and chat format version -------------------------------------------------------------


def test_default_is_the_papers_preset_multiple_choice_only(tmp_path):
    root = write_folder(tmp_path / "paper")
    multiple_choice = {p: TRAIN[p]["MCQ"] + TRAIN[p]["MCQU"] for p in PROVENANCES}  # synthetic: 120
    with pytest.raises(MixError, match="'synthetic' has 120 train items of type MCQ/MCQU but needs 251"):
        build_mixes(root, size=SIZE, write_card=False)
    result = build_mixes(root, size=SIZE, allow_smaller=True, write_card=False)
    assert result.size == min(multiple_choice.values()) == 120  # like the paper's 33,493 = SYN's MCQ + MCQU
    report = json.loads((root / "mixes.json").read_text())
    assert report["types"] == ["MCQ", "MCQU"] and report["types_preset"] == "paper"
    for mix in MIXES:
        rows = read(root, mix)
        assert len(rows) == 120 and {r["type"] for r in rows} <= {"MCQ", "MCQU"}, mix
        assert report["mixes"][mix]["by_type"].get("OEQ", 0) == 0
        for provenance, share in Counter(r["provenance"] for r in rows).items():
            kinds = Counter(r["type"] for r in rows if r["provenance"] == provenance)
            for t in ("MCQ", "MCQU"):  # proportions among the multiple-choice items only
                exact = share * TRAIN[provenance][t] / multiple_choice[provenance]
                assert abs(kinds.get(t, 0) - exact) < 1, (mix, provenance, t, kinds)


def test_types_option_presets_and_lists(tmp_path):
    assert parse_types("paper") == parse_types("MCQU,MCQ") == ("MCQ", "MCQU")
    assert parse_types("all") == parse_types(" oeq, MCQ ,MCQU") == TYPES
    with pytest.raises(MixError, match="unknown type.*'QCM'.*paper"):
        parse_types("MCQ,QCM")
    runner = CliRunner()
    by_list, by_preset = write_folder(tmp_path / "list"), write_folder(tmp_path / "preset")
    result = runner.invoke(app, ["mix", str(by_list), "--size", "200", "--types", "MCQ,MCQU,OEQ"])
    assert "MCQ+MCQU+OEQ" in result.output, result.output
    runner.invoke(app, ["mix", str(by_preset), "--size", "200", "--types", "all"])
    assert file_digests(by_list) == file_digests(by_preset)
    assert any(r["type"] == "OEQ" for r in read(by_list, "syn"))
    result = runner.invoke(app, ["mix", str(by_list), "--types", "open"])
    assert result.exit_code == 1 and "unknown type" in result.output


def test_the_chat_format_version_travels_from_the_shards_to_the_manifest_and_mix_files(mixed, tmp_path):
    assert json.loads((mixed / "mixes.json").read_text())["chat_version"] == "v1"
    for mix in MIXES:
        assert all(shard_chat_version(p) == "v1" for p in (mixed / "data" / mix).glob("*.parquet"))
    old = write_folder(tmp_path / "old", chat_version=None)  # shards that record no version
    with pytest.raises(MixError, match="no chat format version"):
        build_mixes(old, size=10, write_card=False)


# ---- from a real build --------------------------------------------------------------------------


def helpers():
    import importlib.util

    loaded = {}
    for name, path in (("build_fixture", "cards/build_fixture.py"), ("conftest", "conftest.py")):
        spec = importlib.util.spec_from_file_location(
            f"_mixes_{name}", Path(__file__).resolve().parents[1] / path
        )
        loaded[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(loaded[name])
    return loaded["build_fixture"].fixture_build, loaded["conftest"].require


def test_the_seven_mixes_of_a_real_build_load_with_load_dataset(tmp_path):
    from datasets import load_dataset

    fixture_build, _ = helpers()
    root = fixture_build(tmp_path)
    result = build_mixes(root, size=10_000, allow_smaller=True)
    shutil.rmtree(root / "_build")  # the mixes and the card need nothing from the build's work files
    size = result.size
    available = {p: sum(n.values()) for p, n in result.report["available_train"].items()}
    assert size == min(available.values()) > 10
    evaluation = {
        split: Counter(r["provenance"] for p in PROVENANCES for r in read(root, p, split))
        for split in ("validation", "test")
    }
    for mix, provenances in MIXES.items():
        ds = load_dataset(str(root), mix, cache_dir=str(tmp_path / "cache"))
        assert ds["train"].num_rows == size
        assert dict(Counter(ds["train"]["provenance"])) == provenance_shares(size, provenances)
        for split, counts in evaluation.items():
            assert Counter(ds[split]["provenance"]) == counts, (mix, split)
        assert ds["train"].features == FEATURES
        assert ds["train"][0]["messages"][0]["role"] == "system"


def test_demo_mixes_load(tmp_path):
    """The README's main command builds the demo data; its seven mixes must load by name."""
    from datasets import load_dataset

    from medinjection.core.config import bundled_configs, load_build_config
    from medinjection.dataset_builders.build import build

    _, require = helpers()
    require(
        "demo" in bundled_configs(),
        "the bundled demo config (dataset_builders/configs/demo.yaml) is not there yet",
    )
    root = build(load_build_config("demo"), tmp_path / "demo", workers=1, progress=False)
    result = build_mixes(root, allow_smaller=True)
    for mix in MIXES:
        ds = load_dataset(str(root), mix, cache_dir=str(tmp_path / "cache"))
        assert ds["train"].num_rows == result.size
