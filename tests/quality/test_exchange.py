"""Export a review dataset and import the annotated copy with the SDK's formats (to_disk/from_disk, Hub layout)."""

from __future__ import annotations

import pytest
from review_case import design_rows, log_design_responses, unique_name
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.quality.exchange import (
    ExchangeError,
    export_to_disk,
    export_to_hub,
    import_from_disk,
    import_from_hub,
    import_from_hub_folder,
)
from medinjection.quality.report import build_report
from medinjection.quality.review import pull_records, push_review

pytestmark = pytest.mark.slow


def answers(records: list[dict]) -> dict:
    return {
        r["id"]: [(x["user"], x["status"], x["values"].get("answer_correct")) for x in r["responses"]]
        for r in records
    }


@pytest.fixture
def annotated(argilla_client, argilla_server) -> str:
    name, workspace = unique_name("exch"), argilla_server["workspace"]
    rows = design_rows()
    dataset = push_review(argilla_client, rows, name, workspace)
    log_design_responses(
        argilla_client, dataset, rows, [a["username"] for a in argilla_server["annotators"][:2]]
    )
    return name


def test_disk_round_trip_keeps_records_and_responses(argilla_client, argilla_server, annotated, tmp_path):
    workspace = argilla_server["workspace"]
    folder = export_to_disk(argilla_client, annotated, tmp_path / "export" / "sample", workspace)
    assert (folder / ".argilla" / "settings.json").is_file() and (folder / "records.json").is_file()
    with pytest.raises(ExchangeError, match="not empty"):
        export_to_disk(argilla_client, annotated, folder, workspace)

    copy = unique_name("imported")
    import_from_disk(argilla_client, folder, name=copy, workspace=workspace)
    before, after = (
        pull_records(argilla_client, annotated, workspace),
        pull_records(argilla_client, copy, workspace),
    )
    assert answers(after) == answers(before)
    assert [r["metadata"] for r in after] == [r["metadata"] for r in before]
    assert build_report(after)["excluded"] == build_report(before)["excluded"]


def test_hub_layout_dry_run_and_import(argilla_client, argilla_server, annotated, tmp_path):
    workspace = argilla_server["workspace"]
    folder = export_to_hub(argilla_client, annotated, "someone/review", workspace, dry_run=tmp_path / "hub")
    assert (folder / "data" / "train-00000-of-00001.parquet").is_file()
    assert (folder / ".argilla" / "settings.json").is_file()

    copy = unique_name("from-hub")
    import_from_hub_folder(argilla_client, folder, name=copy, workspace=workspace)
    before, after = (
        pull_records(argilla_client, annotated, workspace),
        pull_records(argilla_client, copy, workspace),
    )
    assert answers(after) == answers(before)
    assert build_report(after)["agreement"] == build_report(before)["agreement"]


def test_cli_export_import(argilla_server, annotated, tmp_path, monkeypatch, argilla_client):
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server["url"])
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server["owner_api_key"])
    workspace, runner = argilla_server["workspace"], CliRunner()
    result = runner.invoke(
        app,
        ["quality", "review", "export", annotated, "--output", str(tmp_path / "x"), "--workspace", workspace],
    )
    assert result.exit_code == 0, result.output
    copy = unique_name("cli-import")
    result = runner.invoke(
        app, ["quality", "review", "import", str(tmp_path / "x"), "--name", copy, "--workspace", workspace]
    )
    assert result.exit_code == 0, result.output
    assert answers(pull_records(argilla_client, copy, workspace)) == answers(
        pull_records(argilla_client, annotated, workspace)
    )
    result = runner.invoke(app, ["quality", "review", "import", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "dataset.json" in result.output


def test_to_hub_and_from_hub_run_up_to_the_network_call(
    argilla_client, argilla_server, annotated, monkeypatch, tmp_path
):
    """With the Hub client offline, the SDK's to_hub / from_hub stop exactly at their first Hub request."""
    import huggingface_hub.constants
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    workspace = argilla_server["workspace"]
    with pytest.raises(OfflineModeIsEnabled, match="someone/review-sample"):
        export_to_hub(argilla_client, annotated, "someone/review-sample", workspace, token="hf_test")
    with pytest.raises(LocalEntryNotFoundError):
        import_from_hub(
            argilla_client, "someone/review-sample", unique_name("nohub"), workspace, token="hf_test"
        )


@pytest.mark.live
def test_live_hub_round_trip(argilla_client, argilla_server, annotated, require_live):
    """Opt-in: MEDINJECTION_HUB_TEST_REPO=user/repo and HF_TOKEN (a write token); pushes a private repo."""
    env = require_live(["MEDINJECTION_HUB_TEST_REPO", "HF_TOKEN"], "a real Hub round trip")
    repo, token = env["MEDINJECTION_HUB_TEST_REPO"], env["HF_TOKEN"]
    workspace = argilla_server["workspace"]
    export_to_hub(argilla_client, annotated, repo, workspace, token=token)
    copy = unique_name("live-hub")
    import_from_hub(argilla_client, repo, name=copy, workspace=workspace, token=token)
    assert answers(pull_records(argilla_client, copy, workspace)) == answers(
        pull_records(argilla_client, annotated, workspace)
    )
