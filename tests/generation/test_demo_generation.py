"""The demo build runs the real translate and synthesize steps offline from its pre-filled cache."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from medinjection.core.config import load_build_config
from medinjection.core.layout import Layout
from medinjection.dataset_builders.build import build
from medinjection.dataset_builders.generate import dry_run


def test_demo_generation_offline(tmp_path):
    config = load_build_config("demo")
    for task in ("translate", "synthesize"):  # every request of the demo is answered by the cache
        plan = dry_run(config, task, Layout(tmp_path / "plan"))
        assert plan.requests == 0 and plan.cached == plan.items > 0
    root = build(config, tmp_path / "demo", progress=False)
    usage = [json.loads(p.read_text()) for p in (root / "_build" / "usage").glob("*.json")]
    generation = [u for u in usage if u["step"] in ("translate", "synthesize")]
    assert sum(u["requests"] for u in usage) == 0 and sum(u["cache_hits"] for u in generation) == 15
    rows = [r for p in (root / "data").glob("*/*.parquet") for r in pq.read_table(p).to_pylist()]
    screened = sum(u["cache_hits"] for u in usage if u["step"] == "quality_screen")
    assert screened == sum(r["provenance"] != "native" for r in rows)  # every grade from the cache too
    generated = [r for r in rows if r["generation"] and r["generation"]["model"] == "demo-prefilled-cache"]
    translated = [r for r in generated if r["provenance"] == "translated"]
    synthetic = [r for r in generated if r["provenance"] == "synthetic"]
    assert len(translated) == 8 and all(r["original"]["language"] == "en" for r in translated)
    assert sorted(r["type"] for r in synthetic) == ["MCQ", "MCQ", "MCQU", "MCQU", "OEQ", "OEQ"]
    assert {r["generation"]["prompt_version"] for r in synthetic} == {"synthesize-v1"}
    rejects = [
        json.loads(line)
        for p in (root / "rejects" / "translate").glob("*.jsonl")
        for line in p.read_text().splitlines()
    ]
    assert [(r["reason"], r["source"]) for r in rejects] == [("answer_key_changed", "mmlu_medical")]
    stats = json.loads((root / "stats.json").read_text())
    assert stats["sources"]["seed_texts"] == {"in": 6, "kept": 6, "rejected": {}}
