"""The review loop through the real argilla SDK against the local Argilla server (``argilla_server`` fixture).

Push a sample (twice: no duplicates), log two annotators' responses that disagree on some records,
pull, and check the report against values computed by hand.
"""

from __future__ import annotations

import json
import math

import pytest
from review_case import DESIGN, design_rows, log_design_responses, unique_name, write_dataset
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.quality.report import build_report
from medinjection.quality.review import (
    CORRECTNESS,
    ERROR_TYPES,
    find_dataset,
    pull_records,
    push_review,
    to_review_record,
)

pytestmark = pytest.mark.slow
Z = 1.959963984540054


def wilson_by_hand(k: int, n: int) -> list[float]:
    p = k / n
    centre, spread = p + Z**2 / (2 * n), Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return [(centre - spread) / (1 + Z**2 / n), (centre + spread) / (1 + Z**2 / n)]


@pytest.fixture
def annotators(argilla_server) -> list[str]:
    names = [a["username"] for a in argilla_server["annotators"]]
    assert len(names) >= 2, "the argilla_server fixture must provide two annotators"
    return names[:2]


def test_settings_carry_names_types_and_distribution(argilla_client, argilla_server):
    import argilla as rg

    name = unique_name("settings")
    push_review(argilla_client, design_rows()[:1], name, argilla_server["workspace"])
    settings = find_dataset(
        argilla_client, name, argilla_server["workspace"]
    ).settings  # read back from the server
    fields = {f.name: f for f in settings.fields}
    assert list(fields) == ["question", "options", "answer", "original"]
    assert [fields[n].required for n in fields] == [True, False, True, False]
    questions = {q.name: q for q in settings.questions}
    assert isinstance(questions["answer_correct"], rg.LabelQuestion)
    assert questions["answer_correct"].labels == list(CORRECTNESS)
    assert isinstance(questions["language_quality"], rg.RatingQuestion)
    assert questions["language_quality"].values == [1, 2, 3, 4, 5]
    assert isinstance(questions["translation_faithfulness"], rg.RatingQuestion)
    assert not questions["translation_faithfulness"].required
    assert isinstance(questions["error_types"], rg.MultiLabelQuestion)
    assert questions["error_types"].labels == list(ERROR_TYPES)
    assert (
        isinstance(questions["corrected_answer"], rg.TextQuestion)
        and not questions["corrected_answer"].required
    )
    metadata = {m.name: type(m).__name__ for m in settings.metadata}
    assert metadata == {
        "provenance": "TermsMetadataProperty",
        "source": "TermsMetadataProperty",
        "origin": "TermsMetadataProperty",
        "type": "TermsMetadataProperty",
        "split": "TermsMetadataProperty",
        "language_score": "FloatMetadataProperty",
        "length": "IntegerMetadataProperty",
        "quality_score": "IntegerMetadataProperty",  # the quality screen's grade, when the record has one
    }
    assert settings.distribution.min_submitted == 2


def test_translated_records_show_the_english_original():
    native, translated = design_rows()[0], design_rows()[3]
    assert "original" not in to_review_record(native).fields
    record = to_review_record(translated)
    assert "Which drug is indicated in case 3?" in record.fields["original"]
    assert record.fields["answer"] == "**A.** Proposition 3 a"
    assert record.id == translated["id"]
    assert record.metadata["provenance"] == "translated" and record.metadata[
        "language_score"
    ] == pytest.approx(0.99)


def test_the_whole_loop(argilla_client, argilla_server, annotators):
    name, workspace = unique_name("loop"), argilla_server["workspace"]
    rows = design_rows()
    dataset = push_review(argilla_client, rows, name, workspace)
    push_review(argilla_client, rows, name, workspace)
    assert len(dataset.records.to_list()) == len(rows), "pushing twice duplicated records"

    log_design_responses(argilla_client, dataset, rows, annotators)
    push_review(argilla_client, rows, name, workspace)  # a third push keeps the responses
    records = pull_records(argilla_client, name, workspace)
    assert [r["id"] for r in records] == sorted(r["id"] for r in rows)
    assert sum(len(r["responses"]) for r in records) == 12  # 6 records x 2, row 6 none

    report = build_report(records, name, workspace)
    by_prov = report["error_rate"]["by_provenance"]
    # native rows 0 1 2: row 0 incorrect (row 2: 1 of 2 is no majority); translated rows 3 4 5: 3 and 5
    assert (by_prov["native"]["incorrect"], by_prov["native"]["reviewed"]) == (1, 3)
    assert (by_prov["translated"]["incorrect"], by_prov["translated"]["reviewed"]) == (2, 3)
    assert by_prov["native"]["ci95"] == pytest.approx(wilson_by_hand(1, 3))
    assert by_prov["translated"]["ci95"] == pytest.approx(wilson_by_hand(2, 3))
    assert report["error_rate"]["by_source"]["src_b"]["rate"] == 0.0
    assert report["error_rate"]["overall"]["ci95"] == pytest.approx(wilson_by_hand(3, 6))
    agreement = report["agreement"]
    # pairable rows 0-4 (row 5: B is a draft): o_ii=4, o_cc=2, o_ic=o_ci=1, o_cu=o_uc=1; n_i=5, n_c=4, n_u=1,
    # n=10: alpha = 1 - 9 * 4 / (100 - 25 - 16 - 1) = 11/29
    assert agreement["krippendorff_alpha_nominal"] == pytest.approx(11 / 29)
    # A: i3 c2; B: i2 c2 u1; p_o = 3/5, p_e = (3*2 + 2*2)/25 = 0.4 -> kappa = 0.2/0.6
    assert agreement["cohen_kappa"] == [
        {"annotators": sorted(annotators), "items": 5, "kappa": pytest.approx(1 / 3)}
    ]
    assert report["excluded"] == sorted(rows[i]["id"] for i in (0, 3, 5))
    assert report["error_types"][0] == {"error_type": "bad_translation", "count": 3}
    assert len(DESIGN) == len(rows)


def test_cli_push_and_pull_write_the_report_into_the_dataset(
    argilla_server, annotators, tmp_path, monkeypatch, argilla_client
):
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server["url"])
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server["owner_api_key"])
    folder = write_dataset(tmp_path / "medinjection-fr", design_rows())
    name, workspace = unique_name("cli"), argilla_server["workspace"]
    runner = CliRunner()
    args = [
        "quality",
        "review",
        "push",
        str(folder),
        "--provenance",
        "translated",
        "--size",
        "3",
        "--name",
        name,
        "--workspace",
        workspace,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "pushed 3 records" in result.output
    pushed = find_dataset(argilla_client, name, workspace).records.to_list(flatten=True)
    assert {r["provenance"] for r in pushed} == {"translated"} and len(pushed) == 3

    result = runner.invoke(
        app,
        [
            "quality",
            "review",
            "pull",
            name,
            "--workspace",
            workspace,
            "--output",
            str(tmp_path / "rev"),
            "--dataset",
            str(folder),
        ],
    )
    assert result.exit_code == 0, result.output
    for where in (tmp_path / "rev", folder / "quality"):
        report = json.loads((where / "review_report.json").read_text())
        assert (
            report["dataset"] == name
            and report["records"]["total"] == 3
            and report["records"]["reviewed"] == 0
        )
        assert (where / "review_report.md").read_text().startswith(f"# Review report: {name}")
        assert (where / "review_report.png").is_file()

    result = runner.invoke(app, ["quality", "review", "pull", "no-such-dataset", "--workspace", workspace])
    assert result.exit_code == 1 and "no Argilla dataset 'no-such-dataset'" in result.output


def test_cli_names_missing_server_settings(monkeypatch, tmp_path):
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    folder = write_dataset(tmp_path / "ds", design_rows())
    result = CliRunner().invoke(app, ["quality", "review", "push", str(folder), "--size", "2"])
    assert result.exit_code == 1 and "ARGILLA_API_URL" in result.output


def test_the_readmes_push_command_works_on_the_demo_folder_with_its_mixes(
    argilla_server, argilla_client, demo_run, monkeypatch
):
    """After `medinjection demo` (a build, its seven mixes and cards, and the rest of the loop), the
    README's push command samples the build's records once each: the mixes hold copies of train rows,
    never sampled twice."""
    import pyarrow.parquet as pq

    from medinjection.core.layout import Layout

    demo_run.check()
    folder = demo_run.cwd / "medinjection-fr"
    runner = CliRunner()
    layout = Layout(folder)
    assert layout.mixes_present() == ["all", "nat", "nat_syn", "nat_trad", "syn", "trad", "trad_syn"]
    records = {
        row["id"]: shard.config
        for shard in layout.provenance_shards()
        for row in pq.read_table(shard.path, columns=["id"]).to_pylist()
    }
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server["url"])
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server["owner_api_key"])
    name, workspace = unique_name("demo"), argilla_server["workspace"]
    args = ["quality", "review", "push", str(folder), "--size", "40", "--seed", "0"]
    result = runner.invoke(app, [*args, "--name", name, "--workspace", workspace])
    assert result.exit_code == 0, result.output
    assert "pushed 40 records" in result.output
    pushed = find_dataset(argilla_client, name, workspace).records.to_list(flatten=True)
    assert len(pushed) == 40 and len({r["id"] for r in pushed}) == 40
    assert all(records[r["id"]] == r["provenance"] for r in pushed)  # build records, by provenance
    assert {r["provenance"] for r in pushed} == {"native", "translated", "synthetic"}
