"""The quality screen: every translated and synthetic item the build keeps is graded 1-5 by an LLM and
labelled (never dropped); grades come through the generation machinery (cache, retries, resume); a
mix's ``min_quality`` decides what it uses; the card shows the grades; reviewers' verdicts measure
the screen's precision and recall at each threshold."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from medinjection.core.config import load_build_config
from medinjection.core.layout import Layout
from medinjection.core.schema import RecordError
from medinjection.dataset_builders.build import build
from medinjection.dataset_builders.mixes import build_mixes
from medinjection.dataset_builders.steps.quality_screen import parse_grade, screen_item, screen_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "generation"))
from gen_fault_server import FaultServer  # noqa: E402

DEMO = Path(load_build_config("demo").base_dir) / "demo.yaml"


def records(root: Path, provenances=None) -> list[dict]:
    return [
        {**row, "_provenance": shard.config}
        for shard in Layout(root).provenance_shards(provenances)
        for row in pq.read_table(shard.path).to_pylist()
    ]


def demo_config(tmp_path: Path, **screen) -> Path:
    """The demo config with its quality screen pointed elsewhere (its other answers still from the cache)."""
    config = yaml.safe_load(DEMO.read_text())
    config["sources"] = [
        {**s, "path": str((DEMO.parent / s["path"]).resolve())} if "path" in s else s
        for s in config["sources"]
    ]
    for task in ("translate", "synthesize"):
        section = config[task]
        for key in ("sources", "seeds"):
            for spec in section.get(key, []):
                spec["path"] = str((DEMO.parent / spec["path"]).resolve())
        section["cache_seed"] = [str((DEMO.parent / p).resolve()) for p in section["cache_seed"]]
    config["quality_screen"] = screen
    path = tmp_path / "demo-screen.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def test_a_grade_is_read_strictly():
    assert parse_grade('{"score": 4, "reason": "Clé correcte."}') == (4, "Clé correcte.")
    assert parse_grade('```json\n{"score": "2", "reason": " Traduction infidèle. "}\n```') == (
        2,
        "Traduction infidèle.",
    )
    for reply, why in (
        ('{"score": 0, "reason": "x"}', "not an integer from 1 to 5"),
        ('{"score": 6, "reason": "x"}', "not an integer from 1 to 5"),
        ('{"score": true, "reason": "x"}', "not an integer from 1 to 5"),
        ('{"score": 4.5, "reason": "x"}', "not an integer from 1 to 5"),
        ('{"score": 4}', "no reason"),
        ("Note : 4/5", "not valid JSON"),
    ):
        with pytest.raises(RecordError, match=why):
            parse_grade(reply)


def test_a_translation_is_shown_with_its_english_original():
    record = {
        "type": "MCQU",
        "instruction": "Quel organe produit l'insuline ?",
        "options": [{"letter": "A", "text": "Le foie"}, {"letter": "B", "text": "Le pancréas"}],
        "answer": "B",
        "original": {
            "instruction": "Which organ produces insulin?",
            "options": [],
            "answer": "B",
            "context": "",
        },
    }
    assert screen_item(record)["original_en"]["instruction"] == "Which organ produces insulin?"
    assert "original_en" not in screen_item({**record, "original": None})
    request = screen_request(record, "v1")
    assert (
        request.prompt_version == "quality-v1"
        and "Which organ produces insulin?" in request.messages[1]["content"]
    )
    assert screen_request(record, "v1").messages == request.messages  # the same record, the same cache key


def test_the_demo_build_is_graded_from_the_cache_and_a_mix_keeps_score_3_or_more(tmp_path):
    root = build(load_build_config("demo"), tmp_path / "demo", workers=1, progress=False)
    rows = records(root)
    for row in rows:
        if row["provenance"] in ("translated", "synthetic"):
            quality = row["quality"]
            assert quality["score"] in (1, 2, 3, 4, 5) and quality["reason"], row["id"]
            assert quality["model"] == "demo-prefilled-cache" and quality["prompt_version"] == "quality-v1"
        else:
            assert row["quality"] is None
    usage = [json.loads(p.read_text()) for p in Layout(root).usage.glob("quality_screen-*.json")]
    assert sum(u["requests"] for u in usage) == 0  # every grade came from the pre-filled cache
    assert sum(u["cache_hits"] for u in usage) == sum(r["provenance"] != "native" for r in rows)
    scores = {r["id"]: r["quality"]["score"] for r in rows if r["quality"]}
    assert min(scores.values()) < 3  # the demo's grades include items a threshold of 3 leaves out
    mix_file = tmp_path / "q.yaml"
    mix_file.write_text(
        "- {name: screened, weights: {native: 1, translated: 1, synthetic: 1}, size: 30, types: all, min_quality: 3}\n"
    )
    result = build_mixes(root, mixes=mix_file, allow_smaller=True)
    mixed = pq.read_table(next((root / "data" / "screened").glob("*.parquet"))).to_pylist()
    assert mixed and all(scores[r["id"]] >= 3 for r in mixed if r["provenance"] != "native")
    eligible_low = [i for i, s in scores.items() if s < 3]
    assert not {r["id"] for r in mixed} & set(eligible_low)
    assert result.report["mixes"]["screened"]["min_quality"] == 3
    card = (root / "README.md").read_text()
    assert "## Quality screen" in card and "`demo-prefilled-cache` (prompt quality-v1" in card
    table = [
        line for line in card.splitlines() if line.startswith("| translated |") and line.count("|") == 11
    ]
    by_score = Counter(s for r in rows if r["provenance"] == "translated" for s in [r["quality"]["score"]])
    assert sum(int(line.split("|")[3]) for line in table) == sum(by_score.values())


def test_replies_that_do_not_parse_label_the_item_and_nothing_is_dropped(tmp_path):
    """A grader that answers something else (here JSON without a score) leaves score null with the
    reason; every item is still written, and the count is in the step's stats."""
    with FaultServer() as server:
        config = demo_config(
            tmp_path,
            backend={"type": "openai", "model": "grader", "base_url": server.url, "max_retries": 0},
            cache=str(tmp_path / "screen-cache.sqlite"),
        )
        root = build(load_build_config(config), tmp_path / "out", workers=1, progress=False)
    rows = records(root)
    screened = [r for r in rows if r["provenance"] != "native"]
    assert screened and all(r["quality"]["score"] is None for r in screened)
    assert all(r["quality"]["reason"].startswith("unparseable:") for r in screened)
    assert len(rows) == len(
        records(build(load_build_config("demo"), tmp_path / "ref", workers=1, progress=False))
    )


def test_a_grader_that_fails_stops_the_build_and_a_rerun_asks_only_the_missing(tmp_path):
    failing = {"on": True}

    def plan(_key, attempt):
        return "500" if failing["on"] and attempt == 0 else "ok"

    with FaultServer(plan=plan) as server:
        config = load_build_config(
            demo_config(
                tmp_path,
                backend={"type": "openai", "model": "grader", "base_url": server.url, "max_retries": 0},
                cache=str(tmp_path / "screen-cache.sqlite"),
                max_failure_rate=1.0,
            )
        )
        with pytest.raises(Exception, match="got no grade"):
            build(config, tmp_path / "out", workers=1, progress=False)
        first = dict(server.requests)  # every first attempt failed: no grade reached the cache
        failing["on"] = False
        root = build(config, tmp_path / "out", workers=1, progress=False)
    assert first
    assert all(n == first.get(key, 0) + 1 for key, n in server.requests.items())  # asked once more, no more
    assert all(r["quality"] is not None for r in records(root, ["translated", "synthetic"]))
