"""The report renders from evaluation outputs, its numbers are the summaries' numbers, its verdicts
are the paired tests', and the same inputs give the same bytes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import report_fixture as fx
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.evaluation.judge import judge_prompt
from medinjection.evaluation.report import ReportError, build_report, read_outputs


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return fx.write_outputs(tmp_path_factory.mktemp("eval") / "eval-out")


@pytest.fixture(scope="module")
def ratings(outputs, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ratings") / "ratings.parquet"
    pq.write_table(pa.Table.from_pylist(fx.ratings_for(outputs)), path)
    return path


@pytest.fixture(scope="module")
def report(outputs, ratings, tmp_path_factory):
    return build_report(outputs, tmp_path_factory.mktemp("report"), ratings, resamples=200)


def tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Each Markdown table under its nearest heading, as rows of {column: cell}."""
    found, heading, lines = {}, None, markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in line.strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("| "):
                rows.append(
                    dict(zip(header, (c.strip() for c in lines[i].strip("|").split("|")), strict=True))
                )
                i += 1
            found[heading] = rows
            continue
        i += 1
    return found


def summary(outputs: Path, tag: str, task: str) -> dict:
    return json.loads((outputs / tag / task / "summary.json").read_text())


def fmt(entry: dict, scale: float = 100.0) -> str:
    low, high = entry["ci95"]
    return f"{scale * entry['value']:.2f} [{scale * low:.2f}, {scale * high:.2f}]"


NAMES = {"Base": "base", "NAT": "nat", "TRAD": "trad"}


def mc_row(rows: list[dict[str, str]], task: str, dataset: str) -> dict[str, str]:
    """The row of ``task`` and ``dataset`` (``all``, ``<origin> <type>`` or an aggregate's label)."""
    found = [r for r in rows if r["task"] == task and r["dataset"] == dataset]
    assert len(found) == 1, (task, dataset, rows)
    return found[0]


def test_multiple_choice_tables_match_the_summaries(report, outputs):
    """The paper's table: a row per (origin, type) of the task (its summary's groups), the task as a
    whole, then the aggregates; a column per model."""
    found = tables(report.markdown)
    for heading, metric in (
        ("Constrained exact match (%)", "em_constrained"),
        ("Greedy exact match (%)", "em_greedy"),
        ("Hamming score, constrained (%), MCQ items", "hamming_constrained"),
    ):
        rows = found[heading]
        groups = summary(outputs, "base", fx.MC)["groups"]
        expected = [f"{g['origin']} {g['type']}" for g in groups if metric in g["metrics"]]
        assert [r["dataset"] for r in rows if r["task"] == fx.MC] == [*expected, "all"], heading
        for name, tag in NAMES.items():
            doc = summary(outputs, tag, fx.MC)
            assert mc_row(rows, fx.MC, "all")[name].startswith(fmt(doc["metrics"][metric]))
            for group in doc["groups"]:
                if metric in group["metrics"]:
                    row = mc_row(rows, fx.MC, f"{group['origin']} {group['type']}")
                    assert row["n"] == str(group["n"])
                    assert row[name].startswith(fmt(group["metrics"][metric])), (heading, name, group)
    rows = found["Constrained exact match (%)"]
    for name, tag in NAMES.items():
        entry = json.loads((outputs / tag / "aggregate.json").read_text())["metrics"]["em_constrained_macro"]
        assert mc_row(rows, "aggregated (macro over tasks)", "")[name].startswith(fmt(entry))
        # the authors' later formula, by hand: 0.5 x mean over the MCQ groups + 0.5 x over the MCQU ones
        groups = summary(outputs, tag, fx.MC)["groups"]
        means = {
            kind: [g["metrics"]["em_constrained"]["value"] for g in groups if g["type"] == kind]
            for kind in ("MCQ", "MCQU")
        }
        halves = 0.5 * sum(means["MCQ"]) / len(means["MCQ"]) + 0.5 * sum(means["MCQU"]) / len(means["MCQU"])
        cell = mc_row(rows, "½ MCQ + ½ MCQU datasets (authors' later code)", "")[name]
        assert cell.startswith(f"{100 * halves:.2f} ["), (name, cell, halves)
        assert report.data["tables"]["em_constrained"][tag]["_aggregate_halves"]["value"] == pytest.approx(
            halves
        )


def test_verdicts_are_the_paired_tests(report, outputs):
    comparisons = json.loads((outputs / "comparisons.json").read_text())["families"]["vs_base"]
    verdicts = {(r["model"], r["metric"]): r["verdict"] for r in comparisons}
    assert (
        verdicts[("nat", "em_constrained")] == "better"
        and verdicts[("trad", "em_constrained")] == "no difference"
    )
    rows = mc_row(tables(report.markdown)["Constrained exact match (%)"], fx.MC, "all")
    assert rows["NAT"].endswith(" ▲") and rows["TRAD"].endswith(" =")
    assert not rows["Base"].endswith(("▲", "▼", "="))  # the base is not compared with itself
    # a metric the evaluation did not compare is compared by the report (marked ᵣ), with the same tests
    computed = {(r["model"], r["metric"]): r for r in report.data["comparisons_computed"] if "group" not in r}
    assert computed[("nat", "em_constrained_perm")]["verdict"] == "better"
    assert computed[("nat", "em_constrained_perm")]["test"] == "paired_permutation"  # a mean of K copies
    assert computed[("nat", "em_constrained_robust")]["test"] == "mcnemar"  # 0/1
    assert computed[("trad", "rouge2")]["test"] == "paired_permutation"
    assert computed[("nat", "bleu")]["test"] == "paired_approximate_randomization_corpus_bleu"
    oeq = {r["model"]: r for r in tables(report.markdown)[fx.OEQ]}
    assert oeq["NAT"]["ROUGE-2"].endswith("▲ᵣ") and oeq["NAT"]["Judge 1-5"].endswith("▲ᵣ")
    # a group's verdict: McNemar on the group's items alone
    group = [r for r in report.data["comparisons_computed"] if r.get("group") == ["FrenchMedMCQA", "MCQU"]]
    nat = next(r for r in group if r["model"] == "nat" and r["metric"] == "em_constrained")
    rows = {m: fx.mc_rows(m) for m in ("nat", "base")}
    pick = {
        m: {r["id"]: r["em_constrained"] for r in rows[m] if r["permutation"] == 0 and r["type"] == "MCQU"
            and r["origin"] == "FrenchMedMCQA"}
        for m in rows
    }  # fmt: skip
    from medinjection.evaluation import stats

    ids = sorted(pick["nat"])
    assert nat["test"] == "mcnemar" and nat["n"] == len(ids)
    assert nat["p_value"] == pytest.approx(
        stats.mcnemar([pick["nat"][i] for i in ids], [pick["base"][i] for i in ids])
    )


def test_position_bias_and_open_ended_tables(report, outputs):
    found = tables(report.markdown)
    for row in found["Position bias"]:
        metrics = summary(outputs, NAMES[row["model"]], fx.MC)["metrics"]
        assert row["K"] == "2"
        assert row["original"].startswith(fmt(metrics["em_constrained"]))
        assert row["permuted"].startswith(fmt(metrics["em_constrained_perm"]))
        assert row["drop"] == fmt(metrics["em_constrained_perm_drop"])
        assert row["robust"].startswith(fmt(metrics["em_constrained_robust"]))
    for row in found[fx.OEQ]:
        metrics = summary(outputs, NAMES[row["model"]], fx.OEQ)["metrics"]
        assert row["BLEU"].startswith(fmt(metrics["bleu"], 1.0))
        assert row["ROUGE-2"].startswith(fmt(metrics["rouge2"]))
        assert row["METEOR"].startswith(fmt(metrics["meteor"]))
        assert row["Judge 0/1"].startswith(fmt(metrics["judge_binary"]))
        assert row["Judge 1-5"].startswith(fmt(metrics["judge_graded"], 1.0))
        assert row["BERTScore-F1"] == "missing"  # no model: missing with its reason, never 0
    # one note per reason, with every model and benchmark it applies to (not one line per cell)
    notes = report.markdown.split("## Notes")[1]
    assert (
        "- no BERTScore model given (bertscore_model; the paper recipe names bert-base-multilingual-cased): "
        "bertscore_f1 of Base, NAT, TRAD on mediqal-oeq" in notes
    )
    assert notes.count("no BERTScore model given") == 1
    # outputs written before prompts were hashed (as the fixture's) stay readable: the binary prompt
    # under its former name is shown with its name now and the hash of its texts
    strict = judge_prompt("binary-strict-v1")
    assert (
        "Base, judge_graded: judge `judge-model`, prompt `judge-graded-v1` (sha256 not recorded): "
        "23 verdicts of 24 answers (0 unparseable, 1 failed)" in report.markdown
    )
    assert (
        f"NAT, judge_binary: judge `judge-model`, prompt `judge-binary-v1` (now `judge-binary-strict-v1`, the "
        f"same texts, sha256 {strict.sha256[:12]}): 23 verdicts of 24 answers" in report.markdown
    )


def test_calibration_sections(report):
    """The report's ratings section is ``calibration.calibrate``'s result (the figures of
    ``medinjection calibrate``), rendered by the same tables."""
    found = tables(report.markdown)
    result = report.data["calibration"]
    rating = {r["score"]: r for r in found["Agreement with the human rating (1-5)"]}
    assert set(rating) == {"judge_binary", "judge_graded", "bleu_sentence", "rouge2", "meteor"}
    entry = next(e for e in result["judges"] if e["name"] == "judge_graded" and e["label"] == "human_rating")
    pearson = entry["pearson"]
    assert (
        rating["judge_graded"]["Pearson r"]
        == f"{pearson['value']:.2f} [{pearson['ci95'][0]:.2f}, {pearson['ci95'][1]:.2f}]"
    )
    assert rating["judge_graded"]["n"] == "71"  # 72 rated answers, one graded verdict failed
    assert entry["verdicts"] == {"ok": 71, "unparseable": 0, "failed": 1}
    # the entry names the prompt the predictions recorded (no hash in these older outputs)
    assert entry["prompt"] == "judge-graded-v1" and "prompt_sha256" not in entry
    # ranked: best Pearson r first
    values = [float(r["Pearson r"].split()[0]) for r in found["Agreement with the human rating (1-5)"]]
    assert values == sorted(values, reverse=True)
    equivalent = {r["score"]: r for r in found["Agreement with the human 'equivalent' (share of annotators)"]}
    binary = next(
        e for e in result["judges"] if e["name"] == "judge_binary" and e["label"] == "human_equivalent"
    )
    assert equivalent["judge_binary"]["accuracy"].startswith(f"{binary['accuracy']['value']:.2f} [")
    assert {"Verbosity bias", "Agreement per generator", "Judges' verdicts"} <= set(found)
    controlled = {(r["judge"], r["model"]): r for r in found["Length-controlled judge scores"]}
    # TRAD's long answers lose more than NAT's and Base's short ones once length is controlled
    lc = result["length_controlled"]["judge_graded"]["models"]
    assert lc["trad"]["value"] < lc["trad"]["raw"] and lc["base"]["value"] > lc["base"]["raw"]
    assert controlled[("judge_graded", "TRAD")]["raw"] == f"{lc['trad']['raw']:.2f}"


def test_same_inputs_same_bytes(outputs, ratings, report, tmp_path):
    again = build_report(outputs, tmp_path / "again", ratings, resamples=200)
    first = Path(next(iter(report.figures.values()))).parent
    assert again.markdown == report.markdown
    for name in ["report.md", "report.json", *(p.name for p in report.figures.values())]:
        assert (tmp_path / "again" / name).read_bytes() == (first / name).read_bytes(), name
    assert sorted(p.name for p in report.figures.values()) == [
        "agreement_by_generator_human_equivalent.png",
        "agreement_by_generator_human_rating.png",
        "em_by_mix.png",
        "judge_vs_length.png",
        "position_bias.png",
        "score_vs_human_equivalent.png",
        "score_vs_human_rating.png",
    ]
    png = (first / "em_by_mix.png").read_bytes()
    assert png.startswith(b"\x89PNG") and b"Matplotlib" not in png
    for path in report.figures.values():
        assert f"]({path.name})" in report.markdown


def test_report_command(outputs, tmp_path):
    result = CliRunner().invoke(
        app, ["report", str(outputs), "--output", str(tmp_path / "r"), "--resamples", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "report.md" in result.output
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "No ratings given" in markdown and not (tmp_path / "r" / "score_vs_human_rating.png").exists()
    assert (tmp_path / "r" / "judge_vs_length.png").is_file()  # needs no ratings
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere"), "--output", str(tmp_path / "r2")])
    assert bad.exit_code == 1 and "no such folder" in bad.output


def test_bad_outputs_are_named(tmp_path):
    (tmp_path / "base" / "x").mkdir(parents=True)
    with pytest.raises(ReportError, match="no <model_tag>/<task>/summary.json with its predictions.parquet"):
        read_outputs(tmp_path)
    (tmp_path / "base" / "x" / "predictions.parquet").write_bytes(b"")
    (tmp_path / "base" / "x" / "summary.json").write_text("{not json")
    with pytest.raises(
        ReportError, match=re.escape(f"{tmp_path / 'base' / 'x' / 'summary.json'}: not valid JSON")
    ):
        read_outputs(tmp_path)
    (tmp_path / "base" / "x" / "summary.json").write_text('{"model": "m", "benchmark": "x"}')
    with pytest.raises(ReportError, match="summary.json: an evaluation summary of schema_version None"):
        read_outputs(tmp_path)  # a summary of another schema (its keys mean something else)
    (tmp_path / "base" / "x" / "summary.json").write_text('{"schema_version": 2, "model": "m"}')
    with pytest.raises(ReportError, match="no 'task' \\(not an evaluation summary\\)"):
        read_outputs(tmp_path)


def test_a_missing_interval_reads_n_a(outputs, tmp_path):
    """A metric over fewer than two items has ``ci95: [None, None]``: the tables say so, nothing crashes."""
    import shutil

    from medinjection.evaluation import stats
    from medinjection.evaluation.report import cell

    one_item = stats.metric([1.0])
    assert one_item["ci95"] == [None, None]
    assert cell(one_item, "em_constrained", "▲") == "100.00 [n/a] ▲"
    assert cell({"value": 0.5, "ci95": None, "n": 1}, "em_constrained") == "50.00 [n/a]"
    root = tmp_path / "eval-out"
    shutil.copytree(outputs, root)
    path = root / "nat" / fx.MC / "summary.json"
    doc = json.loads(path.read_text())
    doc["metrics"]["em_constrained"] = {**doc["metrics"]["em_constrained"], "ci95": [None, None]}
    path.write_text(json.dumps(doc))
    built = build_report(root, tmp_path / "report", resamples=50)
    row = mc_row(tables(built.markdown)["Constrained exact match (%)"], fx.MC, "all")["NAT"]
    assert row.startswith(f"{100 * doc['metrics']['em_constrained']['value']:.2f} [n/a]"), row
    assert (tmp_path / "report" / "em_by_mix.png").is_file()


def test_a_missing_summary_is_said_and_left_out_of_the_aggregates(outputs, tmp_path):
    """17.5: with one summary.json gone, the model's cells for that task read n/a, its aggregates are
    recomputed from the tasks present (not read from a stale aggregate.json), and the notes say so."""
    import shutil

    from medinjection.evaluation import stats

    root = tmp_path / "eval-out"
    shutil.copytree(outputs, root)
    second = "frenchmedmcqa-b"  # a second multiple-choice task: trad's answers under every name
    for tag in fx.TAGS:
        fx.write_task(root, tag, second, [{**r, "task": second} for r in fx.mc_rows("trad")])
    stale = json.loads((root / "nat" / "aggregate.json").read_text())["metrics"]["em_constrained_macro"]
    (root / "nat" / fx.MC / "summary.json").unlink()
    built = build_report(root, tmp_path / "report", resamples=50)
    rows = tables(built.markdown)["Constrained exact match (%)"]
    assert mc_row(rows, fx.MC, "all")["NAT"] == "n/a"
    nat_macro = mc_row(rows, "aggregated (macro over tasks)", "")["NAT"]
    only_b = [r["em_constrained"] for r in fx.mc_rows("trad") if r["permutation"] == 0]
    assert nat_macro.startswith(f"{100 * stats.macro_mean([only_b]):.2f} [")
    assert not nat_macro.startswith(fmt(stale))
    base_macro = mc_row(rows, "aggregated (macro over tasks)", "")["Base"]
    both = [[r["em_constrained"] for r in fx.mc_rows(t) if r["permutation"] == 0] for t in ("base", "trad")]
    assert base_macro.startswith(f"{100 * stats.macro_mean(both):.2f} [")  # over both tasks
    notes = built.markdown.split("## Notes")[1]
    assert (
        f"- NAT on {fx.MC}: summary.json missing in nat/{fx.MC}/: its cells read n/a; NAT's aggregates are over "
        f"{second} only" in notes
    )
    assert "nat/aggregate.json was computed over other predictions" in notes


@pytest.mark.parametrize("comparisons", [None, "", "{}"])
def test_without_comparisons_every_verdict_is_computed_and_said(outputs, tmp_path, comparisons):
    """17.5: a missing or empty comparisons.json: the verdicts (the aggregates' too) are computed by the
    report from the predictions, and the notes say why."""
    import shutil

    root = tmp_path / "eval-out"
    shutil.copytree(outputs, root)
    path = root / "comparisons.json"
    if comparisons is None:
        path.unlink()
    else:
        path.write_text(comparisons)
    built = build_report(root, tmp_path / "report", resamples=50)
    rows = tables(built.markdown)["Constrained exact match (%)"]
    assert len(rows) == 5 + 1 + 3  # five groups, the task, three aggregates
    for row in rows:
        for name in ("NAT", "TRAD"):
            assert row[name].endswith(("▲ᵣ", "▼ᵣ", "=ᵣ")), (row, name)
    assert mc_row(rows, "aggregated (macro over tasks)", "")["NAT"].endswith("▲ᵣ")
    why = "missing" if comparisons is None else "empty" if not comparisons else None
    notes = built.markdown.split("## Notes")[1]
    if why:
        assert f"- comparisons.json is {why}: every verdict not in the summaries' vs_base rows" in notes
    else:
        assert "- comparisons.json holds no comparison against the base" in notes
    computed = {(r["model"], r["task"], r["metric"]) for r in built.data["comparisons_computed"]}
    assert ("nat", "_aggregate_halves", "em_constrained") in computed


def test_corrupt_report_inputs_are_named(outputs, tmp_path):
    import shutil

    root = tmp_path / "eval-out"
    shutil.copytree(outputs, root)
    (root / "comparisons.json").write_text('{"families": ')
    with pytest.raises(ReportError, match=re.escape(f"{root / 'comparisons.json'}: not valid JSON")):
        build_report(root, tmp_path / "report", resamples=50)
    ratings = tmp_path / "ratings.jsonl"
    ratings.write_text('{"id": "a"}\n{oops\n')
    from medinjection.evaluation.report import read_ratings

    with pytest.raises(ReportError, match=re.escape(f"{ratings}, line 2: not valid JSON")):
        read_ratings(ratings)


def test_ratings_are_checked_and_their_spellings_read(outputs, ratings, tmp_path):
    """Issue 17.7: yes/no spelled in words reads as the booleans do; ratings off the 1-5 scale stop the
    report with the file, line and field."""
    from medinjection.evaluation.calibration import CalibrationError

    rows = fx.ratings_for(outputs)
    spelled = tmp_path / "spelled.jsonl"
    words = {True: ["yes", "oui", "true", 1], False: ["no", "non", "false", 0]}
    spelled.write_text(
        "".join(
            json.dumps({**r, "equivalent": words[r["equivalent"]][i % 4]}) + "\n" for i, r in enumerate(rows)
        )
    )
    from_words = build_report(outputs, tmp_path / "words", spelled, resamples=50)
    from_bools = build_report(outputs, tmp_path / "bools", ratings, resamples=50)
    assert from_words.data["calibration"]["judges"] == from_bools.data["calibration"]["judges"]
    assert from_words.data["calibration"]["labels"]["human_equivalent"]["equivalent"] == 24  # nat's answers
    for field, value, expected in (
        ("rating", 9, "field 'rating': 9 is not a rating from 1 to 5"),
        ("rating", -1, "field 'rating': -1 is not a rating from 1 to 5"),
        ("equivalent", "peut-être", "field 'equivalent': 'peut-être' is not a yes/no label"),
    ):
        bad = tmp_path / f"bad-{field}.jsonl"
        changed = [dict(r) for r in rows]
        changed[2][field] = value
        bad.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in changed))
        with pytest.raises(CalibrationError, match=re.escape(f"{bad}, line 3: {expected}")):
            build_report(outputs, tmp_path / "never", bad, resamples=50)
    result = CliRunner().invoke(
        app, ["report", str(outputs), "-o", str(tmp_path / "cli"), "--ratings", str(bad)]
    )
    assert result.exit_code == 1 and f"{bad}, line 3: field 'equivalent'" in result.output
    parquet = tmp_path / "bad.parquet"
    changed = [dict(r) for r in rows]
    changed[4]["rating"] = 6
    pq.write_table(pa.Table.from_pylist(changed), parquet)
    with pytest.raises(CalibrationError, match=re.escape(f"{parquet}, row 5: field 'rating': 6 is not")):
        build_report(outputs, tmp_path / "never", parquet, resamples=50)


def test_each_missing_reason_is_said_once():
    from medinjection.evaluation.report import missing_notes

    missing = {
        "no parseable verdict (3 unparseable, 0 failed)": {("base", "a-oeq", "judge_binary")},
        "no parseable verdict (2 unparseable, 1 failed)": {
            ("nat", "a-oeq", "judge_binary"),
            ("nat", "b-oeq", "x"),
        },
        "no BERTScore model given": {
            (tag, task, "bertscore_f1") for tag in ("base", "nat", "trad") for task in ("a-oeq", "b-oeq")
        },
        "no parseable verdict (1 unparseable, 0 failed)": {("trad", "b-oeq", "judge_graded")},
    }
    assert missing_notes(missing, ["base", "nat", "trad"]) == [
        "no BERTScore model given: bertscore_f1 of Base, NAT, TRAD on a-oeq, b-oeq",
        "no parseable verdict (8 unparseable, 2 failed in all): Base, a-oeq, judge_binary; NAT, a-oeq, "
        "judge_binary; NAT, b-oeq, x; TRAD, b-oeq, judge_graded",
    ]
