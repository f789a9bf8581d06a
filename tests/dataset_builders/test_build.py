"""The build end to end: reject reasons, stats integrity, determinism, resume, splits, fail-fast."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from medinjection.core.config import load_build_config
from medinjection.dataset_builders.build import BuildError, build
from medinjection.dataset_builders.sources import SourceUnavailable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "build"


def write_config(folder: Path, sources: list[dict], **extra) -> Path:
    config = {
        "name": "test",
        "sources": sources,
        "executor": {"type": "local", "tasks": 2, "workers": 1},
        **extra,
    }
    path = folder / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(folder: Path, sources: list[dict], **extra) -> Path:
    config = load_build_config(write_config(folder, sources, **extra))
    return build(config, folder / "out", progress=False)


def rejects(root: Path) -> list[dict]:
    rows = []
    for path in sorted((root / "rejects").glob("*/*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def kept_rows(root: Path) -> list[dict]:
    rows = []
    for path in sorted((root / "data").glob("*/*.parquet")):
        split = path.name.split("-")[0]
        rows += [{**row, "_split": split} for row in pq.read_table(path).to_pylist()]
    return rows


def digest(root: Path) -> dict[str, str]:
    files = [
        *root.glob("data/*/*.parquet"),
        *root.glob("rejects/*/*.jsonl"),
        root / "stats.json",
        root / "README.md",
    ]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


@pytest.fixture(scope="module")
def bad_build(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    return run(folder, [{"adapter": "frenchmedmcqa", "path": str(FIXTURES / "bad_fmmcqa")}])


EXPECTED_REJECTS = {
    "fx101": ("read", "malformed_row"),
    "fx102": ("read", "malformed_row"),
    "fx103": ("validate", "empty_text"),
    "fx104": ("validate", "letter_not_in_options"),
    "fx105": ("read", "type_mismatch"),  # flagged `simple` with two correct answers: the adapter refuses it
    "fx106": ("validate", "too_few_options"),
    "fx107": ("validate", "no_correct_answer"),
    "fx108": ("validate", "empty_option"),
    "fx109": ("language", "non_french"),
    "fx110|fx001": ("exact_dedup", "exact_duplicate"),  # same split and provenance: the smaller id is kept
    "fx111": ("exact_dedup", "conflicting_answer"),
    "fx112": ("exact_dedup", "conflicting_answer"),
    "fx003": ("exact_dedup", "exact_duplicate"),
    "fx004#1|fx004": (
        "exact_dedup",
        "exact_duplicate",
    ),  # a second row with the id of fx004 gets an id of its own
}


def test_every_reject_reason_lands_in_rejects_with_its_step(bad_build):
    found = {}
    for row in rejects(bad_build):
        source_id = row["record"].get("source_id") or json.dumps(row.get("raw", {}))
        key = next(
            (
                k
                for k in EXPECTED_REJECTS
                if any(part == source_id or part in json.dumps(row.get("raw", {})) for part in k.split("|"))
            ),
            None,
        )
        assert key, f"unexpected reject {row}"
        found[key] = (row["step"], row["reason"])
        assert row["detail"], f"reject {key} has no detail"
    assert found == EXPECTED_REJECTS


def test_malformed_row_keeps_the_raw_row_and_names_it(bad_build):
    row = next(r for r in rejects(bad_build) if r.get("raw", {}).get("id") == "fx101")
    assert "question" in row["detail"] and "train.json" in row["detail"]
    assert row["raw"]["answers"] == {"a": "Un", "b": "Deux"}


def test_duplicates_name_the_kept_twin(bad_build):
    kept_ids = {row["id"]: row["source_id"] for row in kept_rows(bad_build)}
    dups = {r["record"]["source_id"]: r for r in rejects(bad_build) if r["reason"] == "exact_duplicate"}
    twin = "fx001" if "fx110" in dups else "fx110"
    assert kept_ids[dups[{"fx001": "fx110", "fx110": "fx001"}[twin]]["kept_id"]] == twin
    # the dev copy of a train item is kept (evaluation splits win over train) and the train copy goes
    assert "fx003" in dups and kept_ids[dups["fx003"]["kept_id"]] == "fx201"


def test_stats_balance_for_every_step_and_source(bad_build):
    stats = json.loads((bad_build / "stats.json").read_text())
    assert stats["records"] == {"in": 19, "kept": 5, "rejected": 14}
    for step in stats["steps"]:
        assert step["in"] == step["kept"] + sum(step["rejected"].values()), step
    src = stats["sources"]["frenchmedmcqa"]
    assert src["in"] == src["kept"] + sum(src["rejected"].values()) == 19
    assert Counter(reason for _, reason in EXPECTED_REJECTS.values()) == Counter(stats["rejects"])


def test_no_item_in_two_splits_and_types_follow_the_source_flag(bad_build):
    rows = kept_rows(bad_build)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    texts = Counter((row["instruction"].casefold(), row["_split"]) for row in rows)
    by_text = Counter(text for text, _ in texts)
    assert all(n == 1 for n in by_text.values()), "an item sits in two splits"
    types = {row["source_id"]: row["type"] for row in rows}
    assert types["fx202"] == "MCQU" and types["fx002"] == "MCQ"
    assert {row["_split"] for row in rows} == {"train", "validation"}


def test_frenchmedmcqa_real_files(shared_data, tmp_path):
    root = run(tmp_path, [{"adapter": "frenchmedmcqa", "path": str(shared_data / "frenchmedmcqa")}])
    source = json.loads((shared_data / "frenchmedmcqa" / "train.json").read_text())
    source += json.loads((shared_data / "frenchmedmcqa" / "dev.json").read_text())
    assert len(source) == 2483
    rows, rejected = kept_rows(root), rejects(root)
    assert len(rows) + len(rejected) == 2483
    assert all(r["reason"] and r["detail"] for r in rejected)
    kind = {item["id"]: item["type"] for item in source}
    for row in rows:
        assert row["type"] == {"simple": "MCQU", "multiple": "MCQ"}[kind[row["source_id"].split("#")[0]]]
        assert row["messages"][-1]["content"] == row["answer"]
    splits = Counter(row["_split"] for row in rows) + Counter(r["split"] for r in rejected)
    assert splits == {"train": 2171, "validation": 312}


def test_two_builds_give_identical_bytes(tmp_path):
    sources = [{"adapter": "frenchmedmcqa", "path": str(FIXTURES / "bad_fmmcqa")}]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert digest(run(tmp_path / "a", sources)) == digest(run(tmp_path / "b", sources))


def test_rerun_does_no_work_and_resume_after_interruption(tmp_path):
    sources = [{"adapter": "frenchmedmcqa", "path": str(FIXTURES / "bad_fmmcqa")}]
    root = run(tmp_path, sources)
    before = digest(root)
    completions = sorted((root / "_build" / "logs").glob("*/completions/*"))
    stamps = {p: p.stat().st_mtime_ns for p in completions}
    assert run(tmp_path, sources) == root
    assert digest(root) == before
    assert {p: p.stat().st_mtime_ns for p in completions} == stamps, "a finished task ran again"

    # An interruption: task 1 of `prepare` and everything after it never finished.
    logs = root / "_build" / "logs"
    (logs / "prepare" / "completions" / "00001").unlink()
    (root / "_build" / "prepared" / "00001.jsonl").unlink()
    for stage in logs.iterdir():
        if stage.name != "prepare":
            shutil.rmtree(stage)
    shutil.rmtree(root / "data")
    (root / "stats.json").unlink()
    task0 = (logs / "prepare" / "completions" / "00000").stat().st_mtime_ns
    run(tmp_path, sources)
    assert (logs / "prepare" / "completions" / "00000").stat().st_mtime_ns == task0, "task 0 redone"
    assert digest(root) == before


def test_a_build_of_another_config_is_not_reused(tmp_path):
    run(tmp_path, [{"adapter": "frenchmedmcqa", "path": str(FIXTURES / "bad_fmmcqa")}])
    with pytest.raises(BuildError, match="another config"):
        run(tmp_path, [{"adapter": "frenchmedmcqa", "path": str(FIXTURES / "bad_fmmcqa"), "limit": 3}])


def test_missing_source_file_fails_fast_naming_it(tmp_path):
    with pytest.raises(SourceUnavailable, match="nope"):
        run(tmp_path, [{"adapter": "frenchmedmcqa", "path": str(tmp_path / "nope")}])
    assert not (tmp_path / "out" / "data").exists()


def test_hashed_split_is_deterministic_and_disjoint():
    from medinjection.core.config import SplitConfig
    from medinjection.dataset_builders.steps.reader import hashed_split

    split = SplitConfig(validation=0.1, test=0.1)
    ids = [f"src-{i}" for i in range(5000)]
    first = [hashed_split(i, split, 0) for i in ids]
    assert first == [hashed_split(i, split, 0) for i in ids]
    counts = Counter(first)
    assert 400 < counts["test"] < 600 and 400 < counts["validation"] < 600
    assert first != [hashed_split(i, split, 1) for i in ids]


# ---- bad input files (a wrong shape, invalid UTF-8, an empty file, an over-long field) --------------


def cli_build(config_path: Path, output: Path):
    from typer.testing import CliRunner

    from medinjection.cli import app

    return CliRunner().invoke(app, ["build", str(config_path), "--output", str(output)])


QUESTIONS = [
    (
        "Quelle est la posologie usuelle du paracétamol chez l'adulte ?",
        ["Un gramme", "Dix grammes", "Cent grammes"],
    ),
    ("Quel organe produit la bile ?", ["Le foie", "Le pancréas", "La rate"]),
    (
        "Quelle vitamine est synthétisée par la peau exposée au soleil ?",
        ["La vitamine D", "La vitamine C", "La vitamine B12"],
    ),
]


def fmmcqa_rows(n: int) -> list[dict]:
    """FrenchMedMCQA-shaped rows of distinct questions (each a different item for the dedups)."""
    return [
        {
            "id": f"w{i}",
            "question": QUESTIONS[i % len(QUESTIONS)][0],
            "answers": dict(zip("abc", QUESTIONS[i % len(QUESTIONS)][1], strict=True)),
            "correct_answers": ["a"],
            "type": "simple",
            "nbr_correct_answers": 1,
        }
        for i in range(n)
    ]


def test_a_source_file_of_the_wrong_shape_stops_the_build_naming_it(tmp_path):
    from medinjection.dataset_builders.sources import SourceFormatError

    source = tmp_path / "fmm"
    source.mkdir()
    (source / "train.json").write_text(json.dumps({"data": fmmcqa_rows(20)}), encoding="utf-8")
    with pytest.raises(SourceFormatError) as err:
        run(tmp_path, [{"adapter": "frenchmedmcqa", "path": str(source)}])
    message = str(err.value)
    assert str(source / "train.json") in message and "expected a JSON list of rows" in message
    assert "'data' holds a list of 20 rows" in message
    assert not (tmp_path / "out" / "data").exists()
    result = cli_build(tmp_path / "build.yaml", tmp_path / "cli-out")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and str(source / "train.json") in result.output
    assert len([line for line in result.output.splitlines() if "error" in line.lower()]) == 1


def test_invalid_utf8_names_the_file_in_one_line(tmp_path):
    source = tmp_path / "fmm"
    source.mkdir()
    text = json.dumps(fmmcqa_rows(3), ensure_ascii=False).encode("utf-8")
    (source / "train.json").write_bytes(text.replace(b"posologie", "posolog\xe9".encode("latin-1")))
    write_config(tmp_path, [{"adapter": "frenchmedmcqa", "path": str(source)}])
    result = cli_build(tmp_path / "build.yaml", tmp_path / "out")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    line = next(line for line in result.output.splitlines() if "UTF-8" in line)
    assert str(source / "train.json") in line and "byte 0xe9" in line


@pytest.fixture(scope="module")
def origins_build(tmp_path_factory) -> Path:
    """FrBMedQA from its own adapter + the release's other native origins (tests/cards/build_fixture.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_build_fixture_origins", Path(__file__).parents[1] / "cards" / "build_fixture.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.native_origins_build(tmp_path_factory.mktemp("origins"))


def test_an_empty_file_is_a_warning_in_the_build_summary(origins_build, capsys):
    from medinjection.cli import report_build
    from medinjection.core.config import load_build_config
    from medinjection.core.console import Console

    stats = json.loads((origins_build / "stats.json").read_text())
    empty = [w for w in stats["warnings"] if "mcq_val.json holds no row" in w]
    assert len(empty) == 1 and "Validation/mcq/mcq_val.json" in empty[0]
    # a name of the origins option that no release row carries is one too
    assert any("['Bogus Origin'], which no row carries" in w for w in stats["warnings"])
    report_build(Console(), origins_build, load_build_config(origins_build.parent / "build.yaml"), 1.0, None)
    out = capsys.readouterr().out
    assert "warning" in out and "mcq_val.json holds no row" in out and "Bogus Origin" in out


def test_a_field_over_the_limit_is_rejected_with_its_reason_and_counted(origins_build):
    from medinjection.core.schema import REJECT_REASONS

    stats = json.loads((origins_build / "stats.json").read_text())
    assert stats["build"]["filters"]["max_field_chars"] == 1000
    assert stats["rejects"]["field_too_long"] == 1 and "field_too_long" in REJECT_REASONS
    assert stats["sources"]["medinjection_release"]["rejected"]["field_too_long"] == 1
    (row,) = [r for r in rejects(origins_build) if r["reason"] == "field_too_long"]
    assert row["step"] == "read" and "field 'answer' has 2,250 characters" in row["detail"]
    assert "max_field_chars: 1,000" in row["detail"] and "oeq_train.json" in row["detail"]
    # the rejected row is kept, its long field cut
    assert row["raw"]["answer"].endswith("[1,250 characters cut]") and len(row["raw"]["answer"]) < 1100
    assert not any(
        r["instruction"].startswith("Quels sont les signes cliniques") for r in kept_rows(origins_build)
    )


def test_the_default_field_limit_keeps_real_items_and_rejects_a_huge_field(tmp_path):
    from medinjection.core.config import BuildConfig

    assert BuildConfig(name="x", sources=[]).filters.max_field_chars == 100_000
    source = tmp_path / "fmm"
    source.mkdir()
    rows = fmmcqa_rows(3)
    rows[1]["answers"]["b"] = "Le pancréas. " * 10_000  # 130,000 characters in one option
    (source / "train.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    root = run(tmp_path, [{"adapter": "frenchmedmcqa", "path": str(source)}])
    (row,) = rejects(root)
    assert (row["reason"], row["raw"]["id"]) == ("field_too_long", "w1")
    assert "field 'answers.b' has 130,000 characters" in row["detail"]
    assert len(kept_rows(root)) == 2


def test_release_rows_are_taken_by_origin_and_our_own_copy_is_kept(origins_build):
    from medinjection.core.schema import make_id

    rows = kept_rows(origins_build)
    assert Counter((r["origin"], r["source"]) for r in rows) == {
        ("FrBMedQA", "frbmedqa"): 4,
        ("S-Editions", "medinjection_release"): 1,
        ("QCM Santé Publique", "medinjection_release"): 2,
    }
    # the release's copy of an own FrBMedQA train item sits in the release's test split: the own copy is
    # kept all the same (a republication loses to the item's own source), the test copy goes
    (dup,) = [r for r in rejects(origins_build) if r["reason"] == "exact_duplicate"]
    assert dup["source"] == "medinjection_release" and dup["split"] == "test"
    own = next(r for r in rows if "cyclo-oxygénase" in r["instruction"])
    assert own["source"] == "frbmedqa" and own["_split"] == "train" and dup["kept_id"] == own["id"]
    assert own["id"] == make_id("frbmedqa", own["source_id"])
    reading = json.loads((origins_build / "stats.json").read_text())["reading"]
    (release,) = [r for r in reading if r["source"] == "medinjection_release"]
    assert release["origins"]["left_out"] == {"FrBMedQA": 1, "MediQAl": 1}
    assert release["origins"]["taken"] == {"FrBMedQA-cloze": 1, "QCM Santé Publique": 2, "S-Editions": 2}


def test_own_copies_come_before_republished_ones_in_both_dedups(tmp_path):
    from medinjection.dataset_builders.steps.exact_dedup import keep_priority
    from medinjection.dataset_builders.steps.near_dedup import NearDedupResolve

    second_hand = frozenset({"medinjection_release"})
    release_test = keep_priority(0, "medinjection_release", "test", "a", second_hand)
    own_train = keep_priority(0, "frbmedqa", "train", "z", second_hand)
    other_provenance = keep_priority(1, "mediqal", "test", "a", second_hand)
    assert sorted([other_provenance, release_test, own_train]) == [own_train, release_test, other_provenance]
    resolve = NearDedupResolve(
        *(str(tmp_path / d) for d in ("p", "k", "e", "o")),
        ["native", "translated", "synthetic"],
        1,
        0.6,
        second_hand_sources=["medinjection_release"],
    )
    rows = [
        {"provenance": "native", "source": "medinjection_release", "split": "test", "id": "a"},
        {"provenance": "native", "source": "frbmedqa", "split": "train", "id": "z"},
    ]
    assert min(rows, key=resolve.priority)["source"] == "frbmedqa"
