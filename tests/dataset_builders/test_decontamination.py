"""Decontamination across languages: a translated item whose English original is an item of an
English evaluation set is removed, and its reject names that evaluation item."""

from __future__ import annotations

import json
from pathlib import Path

from medinjection.config import EvalSetSpec, load_build_config
from medinjection.dataset_builders.build import build

SAMPLES = Path(__file__).resolve().parents[2] / "dataset_builders" / "samples"


def test_a_translation_of_an_english_eval_item_is_contamination(tmp_path):
    demo = load_build_config("demo")
    mmlu = EvalSetSpec(
        adapter="mmlu_medical", path=str(SAMPLES / "english" / "mmlu"), splits=["train"], name="MMLU sample"
    )
    config = demo.model_copy(
        update={"decontamination": demo.decontamination.model_copy(update={"eval_sets": [mmlu]})}
    )
    root = build(config, tmp_path / "out", progress=False)

    rejects = [
        json.loads(line)
        for path in sorted((root / "rejects" / "decontamination").glob("*.jsonl"))
        for line in path.open(encoding="utf-8")
    ]
    translated_mmlu = [r for r in rejects if r["record"]["origin"].lower().startswith("mmlu")]
    assert translated_mmlu, [r["record"]["origin"] for r in rejects]
    for reject in translated_mmlu:
        assert reject["reason"] == "contamination"
        assert reject["kept_id"].startswith("mmlu_medical-")
        assert reject["record"]["original"]["instruction"]
    # nothing of the translated MMLU items is left in the data
    stats = json.loads((root / "stats.json").read_text())
    kept_mmlu = stats["sources"].get("mmlu_medical", {}).get("kept", 0)
    assert kept_mmlu == 0, stats["sources"]["mmlu_medical"]
