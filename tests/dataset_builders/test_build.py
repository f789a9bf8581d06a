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
