"""The shared MMLU (medical) and PubMedQA files translated through the whole build, with a cache
pre-filled by the test (no LLM): the rows keep the English letters and answer keys, every item is
kept or rejected with a reason, and the build's integrity checks hold."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from gen_fault_server import translate_item

from medinjection.core.config import load_build_config
from medinjection.core.layout import Layout
from medinjection.dataset_builders.build import build
from medinjection.dataset_builders.generate import make_step
from medinjection.dataset_builders.generation.backends import request_params
from medinjection.dataset_builders.generation.cache import ResponseCache, input_hash

PUBMEDQA_LIMIT = 150  # x2 items (open-ended and yes/no): enough to cover every decision


@pytest.fixture(scope="module")
def translated_build(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shared")
    config = {
        "name": "shared-translation",
        "sources": [],
        "executor": {"type": "local", "tasks": 2, "workers": 1},
        # the test's stand-in translations are French filler of the English lengths: near-duplicates
        # of each other by design, so only exact deduplication runs here
        "dedup": {"enabled": False},
        "decontamination": {"enabled": False},
        "translate": {
            "sources": [
                {"adapter": "mmlu_medical", "path": str(shared_data / "mmlu-medical")},
                {
                    "adapter": "pubmedqa",
                    "path": str(shared_data / "pubmedqa" / "ori_pqal.json"),
                    "limit": PUBMEDQA_LIMIT,
                    "options": {"format": "both"},
                },
            ],
            # nothing listens there: every answer must come from the pre-filled cache
            "backend": {
                "type": "openai",
                "model": "prefilled",
                "base_url": "http://127.0.0.1:9/v1",
                "max_retries": 0,
                "timeout_s": 1,
            },
            "cache": str(folder / "cache.sqlite"),
        },
    }
    (folder / "build.yaml").write_text(yaml.safe_dump(config))
    cfg = load_build_config(folder / "build.yaml")
    step = make_step(cfg, "translate", Layout(folder / "out"))
    params = request_params(cfg.translate.backend)
    english = {}
    entries = []
    for job in step.iter_jobs():
        english[job.record["id"]] = job.record
        item = json.loads(
            job.request.messages[1]["content"].split("Item (JSON) :\n", 1)[1].rsplit("\n\nRéponds", 1)[0]
        )
        h = input_hash(job.request.messages)
        entries.append(
            {
                "model": "prefilled",
                "prompt_version": job.request.prompt_version,
                "params": params,
                "input_hash": h,
                "response": json.dumps(translate_item(item, tag=job.record["id"][-6:]), ensure_ascii=False),
            }
        )
    ResponseCache(folder / "cache.sqlite").put_many(entries)
    root = build(cfg, folder / "out", progress=False)
    return root, english


def test_letters_and_keys_match_the_english(translated_build):
    root, english = translated_build
    rows = [
        r for p in sorted((root / "data").glob("translated/*.parquet")) for r in pq.read_table(p).to_pylist()
    ]
    assert {r["source"] for r in rows} == {"mmlu_medical", "pubmedqa"}
    assert len(rows) > 0.8 * len(english)  # the rest: later steps (exact duplicates, language filter)
    for row in rows:
        en = english[row["generation"]["seed_id"]]
        assert row["id"] == en["id"] and row["type"] == en["type"] and row["provenance"] == "translated"
        assert [o["letter"] for o in row["options"]] == [o["letter"] for o in en["options"]]
        assert row["correct_letters"] == sorted(en["correct_letters"])
        assert (
            row["original"]["options"] == en["options"]
            and row["original"]["instruction"] == en["instruction"]
        )
        if row["type"] != "OEQ":
            assert row["answer"] == en["answer"]
        assert row["language"] == "fr" and row["generation"]["prompt_version"] == "translate-v1"


def test_every_item_accounted_for(translated_build):
    root, english = translated_build
    stats = json.loads((root / "stats.json").read_text())
    for source in ("mmlu_medical", "pubmedqa"):
        entry = stats["sources"][source]
        assert entry["in"] == sum(1 for r in english.values() if r["source"] == source)
        assert entry["in"] == entry["kept"] + sum(entry["rejected"].values())
    translate = next(s for s in stats["steps"] if s["step"] == "translate")
    assert translate["in"] == translate["kept"] == len(english)
