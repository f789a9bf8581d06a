"""Verdicts back into the data: ids on an exclusion list leave the next build and land in rejects/review."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from review_case import unique_name, user_ids

from medinjection.core.config import ConfigError, load_build_config
from medinjection.core.schema import REJECT_REASONS
from medinjection.dataset_builders.build import build

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "build" / "bad_fmmcqa"


def run_build(folder: Path, review: list[str] | None = None) -> Path:
    config = {
        "name": "review-test",
        "sources": [{"adapter": "frenchmedmcqa", "path": str(FIXTURE)}],
        "executor": {"type": "local", "tasks": 1, "workers": 1},
    }
    if review is not None:
        config["filters"] = {"review": review}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "build.yaml"
    path.write_text(yaml.safe_dump(config))
    return build(load_build_config(path), folder / "out", progress=False)


def kept_ids(root: Path) -> set[str]:
    return {
        row["id"]
        for path in root.glob("data/*/*.parquet")
        for row in pq.read_table(path, columns=["id"]).to_pylist()
    }


def review_rejects(root: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((root / "rejects" / "review").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


@pytest.fixture(scope="module")
def first_build(tmp_path_factory) -> Path:
    return run_build(tmp_path_factory.mktemp("first"))


def check_excluded(root: Path, before: set[str], excluded: set[str], list_name: str) -> None:
    assert kept_ids(root) == before - excluded
    rejected = review_rejects(root)
    assert {row["id"] for row in rejected} == excluded
    assert all(
        row["reason"] == "review" and row["step"] == "review" and list_name in row["detail"]
        for row in rejected
    )
    stats = json.loads((root / "stats.json").read_text())
    assert stats["rejects"]["review"] == len(excluded)
    step = next(s for s in stats["steps"] if s["step"] == "review")
    assert step["rejected"] == {"review": len(excluded)} and step["in"] == step["kept"] + len(excluded)


def test_review_is_a_known_reject_reason():
    assert "review" in REJECT_REASONS


def test_exclusion_list_file_removes_ids(first_build, tmp_path):
    before = kept_ids(first_build)
    # The kept copy of an exact duplicate: excluding it must not let its twin back in (the filter runs after dedup).
    twin_kept = next(
        json.loads(line)["kept_id"]
        for path in (first_build / "rejects" / "exact_dedup").glob("*.jsonl")
        for line in path.read_text().splitlines()
        if json.loads(line)["reason"] == "exact_duplicate"
    )
    excluded = {twin_kept, sorted(before - {twin_kept})[0]}
    listing = tmp_path / "excluded_ids.txt"
    listing.write_text(
        "# judged incorrect\n" + "".join(f"{rid}\n" for rid in excluded) + "\nnot-in-this-build-0000\n"
    )
    check_excluded(
        run_build(tmp_path, [listing.name]), before, excluded, "excluded_ids.txt"
    )  # relative to the config


def test_review_report_json_is_read_too(first_build, tmp_path):
    before = kept_ids(first_build)
    excluded = {sorted(before)[-1]}
    (tmp_path / "review_report.json").write_text(json.dumps({"excluded": sorted(excluded)}))
    check_excluded(
        run_build(tmp_path, [str(tmp_path / "review_report.json")]), before, excluded, "review_report.json"
    )


def test_no_list_no_review_step(first_build):
    stats = json.loads((first_build / "stats.json").read_text())
    assert "review" not in [s["step"] for s in stats["steps"]]


def test_missing_or_bad_list_fails_before_building(tmp_path):
    with pytest.raises(ConfigError, match="nope.txt"):
        run_build(tmp_path / "a", ["nope.txt"])
    (tmp_path / "bad.json").write_text('{"something": 1}')
    with pytest.raises(ConfigError, match="excluded"):
        run_build(tmp_path / "b", [str(tmp_path / "bad.json")])
    assert not (tmp_path / "a" / "out" / "data").exists()


@pytest.mark.slow
def test_verdicts_from_argilla_leave_the_next_build(first_build, argilla_client, argilla_server, tmp_path):
    """Build, push every kept record, two annotators judge, pull, rebuild with the exclusion list."""
    import argilla as rg

    from medinjection.quality.report import build_report, write_report
    from medinjection.quality.review import pull_records, push_review, to_review_record
    from medinjection.quality.sampling import read_dataset, stratified_sample

    rows = stratified_sample(read_dataset(first_build), 100)
    assert len(rows) == len(kept_ids(first_build)) >= 4
    name, workspace = unique_name("excl"), argilla_server["workspace"]
    dataset = push_review(argilla_client, rows, name, workspace)
    alice, bob = user_ids(argilla_client, [a["username"] for a in argilla_server["annotators"][:2]])
    # rows 0 and 1: both say incorrect; row 2: they disagree (not excluded); the rest correct
    labels = [("incorrect", "incorrect"), ("incorrect", "incorrect"), ("incorrect", "correct")]
    records = []
    for i, row in enumerate(rows):
        record = to_review_record(row)
        for user, label in zip((alice, bob), labels[i] if i < 3 else ("correct", "correct"), strict=True):
            record.responses.add(rg.Response("answer_correct", label, user, "submitted"))
            record.responses.add(rg.Response("language_quality", 5, user, "submitted"))
        records.append(record)
    dataset.records.log(records)

    report = build_report(pull_records(argilla_client, name, workspace), name, workspace)
    assert report["excluded"] == sorted(row["id"] for row in rows[:2])
    paths = write_report(report, tmp_path / "review")
    root = run_build(tmp_path, [str(paths["excluded"])])
    check_excluded(root, kept_ids(first_build), {row["id"] for row in rows[:2]}, "excluded_ids.txt")


def test_a_new_exclusion_list_is_not_ignored_by_a_rerun(first_build, tmp_path):
    from medinjection.dataset_builders.build import BuildError

    before = sorted(kept_ids(first_build))
    listing = tmp_path / "excluded_ids.txt"
    listing.write_text(before[0] + "\n")
    run_build(tmp_path, [listing.name])
    listing.write_text(before[0] + "\n" + before[1] + "\n")  # a later pull, same path
    with pytest.raises(BuildError, match="another config"):
        run_build(tmp_path, [listing.name])
