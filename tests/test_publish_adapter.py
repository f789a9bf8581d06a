"""Publishing an adapter: only once scored (on exactly its files), behind the gate policies, with a
model card; the dry run writes exactly the release; the token is never printed or written.

The run folders come from the session's real ``medinjection demo`` run (``demo_run``), copied.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.core.hub import PublishError
from medinjection.core.runs import RunLayout
from medinjection.publish.adapter import prepare_release, publish_release

runner = CliRunner()
FAKE_TOKEN = "hf_medinjectionTestTokenNeverPrinted0123"


@pytest.fixture
def run(demo_run, tmp_path) -> Path:
    demo_run.check()
    copy = tmp_path / "runs" / "nat"
    shutil.copytree(demo_run.cwd / "runs" / "nat", copy)
    return copy


def publish(*args: str, env: dict | None = None):
    return runner.invoke(app, ["publish", *args], env=env)


def test_an_adapter_without_evaluation_summary_is_refused(run, tmp_path):
    shutil.rmtree(RunLayout(run).eval_dir)
    result = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(tmp_path / "out"))
    assert result.exit_code != 0
    assert "no evaluation summary" in result.output and "medinjection evaluate" in result.output
    assert not (tmp_path / "out").exists()


def test_a_summary_of_other_adapter_files_is_refused(run, tmp_path):
    from safetensors.torch import load_file, save_file

    path = run / "adapter_model.safetensors"
    weights = load_file(path)
    name = sorted(weights)[0]
    weights[name] = weights[name] + 1.0  # the adapter changed after it was scored
    save_file(weights, path)
    result = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(tmp_path / "out"))
    assert result.exit_code != 0
    assert "other adapter files" in result.output and RunLayout(run).adapter_sha256() in result.output
    assert not (tmp_path / "out").exists()


def test_gate_refuses_an_adapter_significantly_worse_than_base(run, tmp_path):
    layout = RunLayout(run)
    path = layout.summary_path("native-test")
    summary = json.loads(path.read_text())
    summary["vs_base"]["em_constrained"] |= {
        "diff": -0.2,
        "ci95": [-0.3, -0.1],
        "p_adjusted": 0.001,
        "significant": True,
        "verdict": "worse",
    }
    path.write_text(json.dumps(summary))
    out = tmp_path / "out"
    gate = ["--require-not-worse-than-base", "em_constrained"]
    result = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(out), *gate)
    assert result.exit_code != 0
    assert "em_constrained on native-test: significantly worse" in result.output and "-20.00" in result.output
    unknown = publish(
        "adapter",
        str(run),
        "--repo",
        "org/x",
        "--dry-run",
        str(out),
        "--require-not-worse-than-base",
        "nosuch",
    )
    assert unknown.exit_code != 0 and "nosuch: not scored on any task" in unknown.output
    # without the gate the same adapter is published (the gate is a policy, not a default)
    assert publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(out)).exit_code == 0


def test_gate_lets_through_an_adapter_not_worse_than_base(run, tmp_path):
    result = publish(
        "adapter", str(run), "--repo", "org/x", "--dry-run", str(tmp_path / "out"),
        "--require-not-worse-than-base", "em_constrained",
        "--require-not-worse-than-base", "hamming_constrained",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_dry_run_writes_exactly_the_release_and_never_the_token(run, tmp_path):
    out = tmp_path / "out"
    env = {"HF_TOKEN": FAKE_TOKEN}
    first = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(out), env=env)
    assert first.exit_code == 0, first.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "README.md" in files and "manifest.json" in files and "adapter_model.safetensors" in files
    assert not [f for f in files if f.startswith("checkpoint-") or f.startswith("tokenizer")]
    (out / "stale.txt").write_text("left by an earlier dry run")
    again = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(out), env=env)
    assert again.exit_code == 0 and not (out / "stale.txt").exists()
    assert FAKE_TOKEN not in first.output + again.output
    assert not [p for p in out.rglob("*") if p.is_file() and FAKE_TOKEN.encode() in p.read_bytes()]


def test_dry_run_refuses_a_folder_that_is_not_a_release(run, tmp_path):
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(other))
    assert result.exit_code != 0 and (other / "notes.txt").is_file()


def test_adapters_are_all_checked_before_any_is_written(demo_run, tmp_path):
    runs = tmp_path / "runs"
    for mix in ("nat", "trad"):
        shutil.copytree(demo_run.cwd / "runs" / mix, runs / mix)
    shutil.rmtree(RunLayout(runs / "trad").eval_dir)
    out = tmp_path / "preview"
    result = publish("adapters", str(runs), "--namespace", "org", "--dry-run", str(out))
    assert result.exit_code != 0 and "trad" in result.output
    assert not out.exists()


def test_a_tiny_model_adapter_is_never_pushed_for_real(run):
    result = publish("adapter", str(run), "--repo", "org/x", env={"HF_TOKEN": FAKE_TOKEN})
    assert result.exit_code != 0 and "made on the fly" in result.output


def test_up_to_the_network_call_the_token_stays_hidden(run, monkeypatch):
    """A base model that is on the Hub (the manifest says so), a token, an unreachable endpoint: the
    live path stops at the listing with a clear message, and the token is in no message."""
    layout = RunLayout(run)
    manifest = layout.manifest()
    manifest["base_model"]["made_on_the_fly"] = False
    layout.manifest_path.write_text(json.dumps(manifest))
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    release = prepare_release(run, "org/x", license="mit", live=True)
    with pytest.raises(PublishError) as caught:
        publish_release(release, endpoint="http://127.0.0.1:9", echo=lambda text: None)
    assert "cannot reach the Hub" in str(caught.value) and FAKE_TOKEN not in str(caught.value)
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(run.parent / "no-token-here"))
    with pytest.raises(PublishError, match="no Hugging Face token"):
        publish_release(release, echo=lambda text: None)


@pytest.mark.live
def test_live_publish_is_one_commit_and_idempotent(run, require_live):
    """Opt-in: HF_TOKEN and MEDINJECTION_TEST_MODEL_REPO (a scratch model repo you own)."""
    from huggingface_hub import HfApi

    env = require_live(["HF_TOKEN", "MEDINJECTION_TEST_MODEL_REPO"], "push an adapter to a scratch Hub repo")
    repo = env["MEDINJECTION_TEST_MODEL_REPO"]
    release = prepare_release(run, repo, live=False)  # the tiny base: allowed here, into a scratch repo
    first = publish_release(release, echo=print)
    assert first.commit_url or first.plan.empty
    remote = {f for f in HfApi().list_repo_files(repo) if f != ".gitattributes"}
    assert remote == set(release.files)
    second = publish_release(release, echo=print)
    assert second.plan.empty and second.commit_url is None
    assert os.environ["HF_TOKEN"] not in json.dumps(sorted(remote))


def test_a_summary_of_a_subset_is_refused(run, tmp_path):
    path = RunLayout(run).summary_path("native-test")
    summary = json.loads(path.read_text())
    summary["subsample"] = True  # what `evaluate --limit N` writes
    path.write_text(json.dumps(summary))
    result = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(tmp_path / "out"))
    assert result.exit_code != 0 and "native-test scored on a subset" in result.output


def test_gate_refuses_a_benchmark_without_comparison(run, tmp_path):
    path = RunLayout(run).summary_path("synthetic-test")
    summary = json.loads(path.read_text())
    del summary["vs_base"]["em_constrained"]
    path.write_text(json.dumps(summary))
    gate = ["--require-not-worse-than-base", "em_constrained"]
    result = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(tmp_path / "out"), *gate)
    assert (
        result.exit_code != 0
        and "no paired comparison with the base model on synthetic-test" in result.output
    )


def test_card_shows_each_metric_on_its_own_scale(run, tmp_path):
    from huggingface_hub import ModelCard

    path = RunLayout(run).summary_path("native-test")
    summary = json.loads(path.read_text())
    summary["metrics"]["judge_graded"] = {"value": 4.0, "ci95": [3.5, 4.5], "n": 4}  # a grade on 1-5
    path.write_text(json.dumps(summary))
    out = tmp_path / "out"
    assert publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(out)).exit_code == 0
    results = {
        (r.dataset_name, r.metric_type): r.metric_value
        for r in ModelCard.load(out / "README.md").data.eval_results
    }
    assert results[("native-test", "judge_graded")] == 4.0  # as is, not 400
    assert results[("native-test", "bleu")] == round(summary["metrics"]["bleu"]["value"], 2)  # 0-100 already
    assert results[("native-test", "em_constrained")] == round(
        100 * summary["metrics"]["em_constrained"]["value"], 2
    )


def test_runs_are_found_at_any_depth_and_names_must_not_clash(demo_run, tmp_path):
    from medinjection.core.runs import RunError, find_runs

    runs = tmp_path / "runs"
    shutil.copytree(demo_run.cwd / "runs" / "nat", runs / "qwen3-4b-instruct-2507" / "nat")
    shutil.copytree(demo_run.cwd / "runs" / "trad", runs / "qwen3-4b-instruct-2507" / "trad")
    assert [r.name for r in find_runs(runs)] == ["nat", "trad"]  # checkpoint-N folders are not runs
    shutil.copytree(demo_run.cwd / "runs" / "nat", runs / "tiny" / "nat")
    with pytest.raises(RunError, match="share a name"):
        find_runs(runs)
    assert [r.name for r in find_runs(runs / "tiny")] == ["nat"]


def test_scores_made_on_another_base_model_are_refused(run, tmp_path):
    path = RunLayout(run).summary_path("native-test")
    summary = json.loads(path.read_text())
    assert summary["model_hub_id"] == "medinjection/tiny-random-qwen3"  # the marker of the folder scored
    summary["model_hub_id"] = "Qwen/Qwen3-4B-Instruct-2507"
    path.write_text(json.dumps(summary))
    result = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(tmp_path / "out"))
    assert result.exit_code != 0 and "another base model" in result.output
    assert "native-test: scored on Qwen/Qwen3-4B-Instruct-2507" in result.output


def test_dry_run_never_replaces_a_run_folder_or_another_adapter(run, tmp_path):
    """A preview only replaces a folder a preview wrote: not the run itself, not another run's folder."""
    other = tmp_path / "runs" / "trad"
    shutil.copytree(run, other)

    def snapshot(folder):
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    before, own = snapshot(other), snapshot(run)
    assert any(name.startswith("checkpoint-") for name in before)
    for target in (other, run, run.parent, run / "preview"):
        result = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(target))
        assert result.exit_code != 0, target
        assert str(target) in result.output.replace("\n", "")
    assert snapshot(other) == before and snapshot(run) == own
    # every run previewed into the runs folder itself: refused before anything is written
    result = publish("adapters", str(run.parent), "--namespace", "org", "--dry-run", str(run.parent))
    assert result.exit_code != 0
    assert snapshot(other) == before and snapshot(run) == own
    # a folder an earlier preview wrote is replaced, as before
    out = tmp_path / "preview"
    assert publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(out)).exit_code == 0
    assert publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(out)).exit_code == 0


def test_an_adapter_its_manifest_does_not_describe_is_refused(run, tmp_path, demo_run):
    """Another mix's adapter copied over this run, and scored again: the manifest (mix, data, losses)
    no longer describes the weights, so no card is made from it."""
    import json as _json

    from medinjection.core.runs import RunLayout

    trad = demo_run.cwd / "runs" / "trad"
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(trad / name, run / name)
    layout = RunLayout(run)
    for path in layout.eval_dir.glob("*/summary.json"):  # as if evaluated again on the copied files
        summary = _json.loads(path.read_text())
        summary["adapter_sha256"] = layout.adapter_sha256()
        path.write_text(_json.dumps(summary))
    out = tmp_path / "out"
    result = publish("adapter", str(run), "--repo", "org/x", "--dry-run", str(out))
    assert result.exit_code != 0
    assert "not the ones its manifest.json describes" in result.output.replace("\n", " ")
    assert layout.manifest()["adapter"]["sha256"] in result.output.replace("\n", "")
    assert not out.exists()
