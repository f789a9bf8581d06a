"""The README's main command runs the whole loop from an empty folder (issue: the whole loop in the demo).

One real ``medinjection demo`` process per session (``demo_run`` in conftest.py): data, mixes,
training of the tiny recipe on every mix, evaluation of the base model and the adapters, the
report and a publish dry run of each adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medinjection.core.runs import RunLayout
from medinjection.dataset_builders.mixes import MIXES
from medinjection.evaluation.settings import parse_args

TASKS = parse_args(["--config", "tiny"]).tasks  # the demo evaluates through the tiny recipe

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(demo_run) -> Path:
    demo_run.check()
    return demo_run.cwd


def test_every_output_of_the_loop_is_there(root):
    assert (root / "medinjection-fr" / "mixes.json").is_file()
    mixes = json.loads((root / "medinjection-fr" / "mixes.json").read_text())
    assert mixes["types"] == ["MCQ", "MCQU"]  # the paper's preset: multiple choice only
    for mix in MIXES:
        run = RunLayout(root / "runs" / mix)
        assert run.is_run(), mix
        manifest = run.manifest()
        assert manifest["mix"]["name"] == mix and manifest["adapter"]["use_dora"]
        assert manifest["adapter"]["sha256"] == run.adapter_sha256()
        for task in TASKS:
            summary = json.loads(run.summary_path(task).read_text())
            assert summary["adapter_sha256"] == run.adapter_sha256()
            assert "em_constrained" in summary["vs_base"]
    for tag in ("base", *MIXES):
        for task in TASKS:
            folder = root / "eval" / tag / task
            summary = json.loads((folder / "summary.json").read_text())
            table = pq.read_table(folder / "predictions.parquet")
            assert summary["n_items"] == len(set(table.column("id").to_pylist()))
            rows = table.select(["type", "permutation"]).to_pylist()
            assert {r["permutation"] for r in rows if r["type"] in ("MCQ", "MCQU")} == {0, 1}
            assert {r["permutation"] for r in rows if r["type"] == "OEQ"} <= {0}
    assert (root / "eval" / "comparisons.json").is_file()
    assert (root / "report" / "report.md").is_file()
    assert len(list((root / "report").glob("*.png"))) >= 2
    assert sorted(p.name for p in (root / "publish-preview").iterdir()) == sorted(MIXES)


def test_evaluation_has_permutations_and_open_ended_metrics(root):
    summary = json.loads((root / "eval" / "nat" / "native-test" / "summary.json").read_text())
    metrics = summary["metrics"]
    assert summary["n_by_type"].get("OEQ", 0) > 0
    for name in (
        "em_constrained",
        "em_constrained_perm",
        "em_constrained_robust",
        "bleu",
        "rouge2",
        "meteor",
    ):
        assert metrics[name]["value"] is not None, name
    assert metrics["bertscore_f1"]["value"] is None and metrics["bertscore_f1"]["missing"]  # no model offline
    rows = pq.read_table(root / "eval" / "nat" / "native-test" / "predictions.parquet").to_pylist()
    assert all(r["answer_tokens"] <= 48 for r in rows if r["scorer"] == "oeq")  # the tiny recipe's cap
    judge = metrics["judge_binary"]  # the tiny model as the judge: its verdicts are counted, never 0
    assert judge["n_judged"] == judge["n_unparseable"] + judge["n_failed"] + judge["n"]


def test_publish_preview_is_a_loadable_model_repo(root):
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    preview = root / "publish-preview" / "nat_trad"
    card = ModelCard.load(preview / "README.md")
    assert card.data.base_model == "medinjection/tiny-random-qwen3"
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-generation"
    assert card.data.language == ["fr"] and card.data.license
    assert card.data.eval_results and card.data.model_name
    summary = json.loads((preview / "eval" / "native-test" / "summary.json").read_text())
    headline = next(
        r
        for r in card.data.eval_results
        if r.dataset_name == "native-test" and r.metric_type == "em_constrained"
    )
    assert headline.metric_value == pytest.approx(
        round(100 * summary["metrics"]["em_constrained"]["value"], 2)
    )
    assert "Not for clinical use" in card.text
    config = json.loads((preview / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "medinjection/tiny-random-qwen3"
    from medinjection.publish.adapter import PREVIEW_MARKER

    # the preview folder holds the release and the marker that lets a later preview replace it
    assert json.loads((preview / PREVIEW_MARKER).read_text())["run"] == "nat_trad"
    files = sorted(
        p.relative_to(preview).as_posix()
        for p in preview.rglob("*")
        if p.is_file() and p.name != PREVIEW_MARKER
    )
    assert files == sorted(
        ["README.md", "adapter_config.json", "adapter_model.safetensors", "manifest.json"]
        + [f"eval/{t}/summary.json" for t in TASKS]
    )
    assert RunLayout(preview).adapter_sha256() == summary["adapter_sha256"]  # what was scored is what goes up
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "tiny-qwen3"), preview)
    assert model.peft_config["default"].use_dora
    assert sorted(model.peft_config["default"].target_modules) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


def test_published_files_carry_no_local_path(root):
    """What goes to the Hub names no folder of the machine that trained and scored it."""
    for preview in (root / "publish-preview").iterdir():
        for path in preview.rglob("*"):
            if path.is_file() and path.suffix in (".json", ".md", ".yaml"):
                text = path.read_text(encoding="utf-8")
                assert str(root) not in text and str(Path.cwd()) not in text, path
    manifest = (root / "publish-preview" / "nat" / "manifest.json").read_text(encoding="utf-8")
    assert "<local>/tiny-qwen3" in manifest and "trl_configs/tiny/nat.yaml" in manifest
