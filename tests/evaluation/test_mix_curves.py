"""EM against mix size and native share: points from mix entries and figures, learning curves, and a
byte-stable plot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medinjection.evaluation.mix_curves import curves, mix_points, native_share, plot, table
from medinjection.evaluation.report import build_report

REPO = Path(__file__).resolve().parents[2]

MIXES = {
    "r11_8": {"mix": "r11", "weights": {"native": 1, "translated": 1}, "size": 8},
    "r11_16": {"mix": "r11", "weights": {"native": 1, "translated": 1}, "size": 16},
    "r13_16": {"mix": "r13", "weights": {"native": 1, "translated": 3}, "size": 16},
    "nat": {"mix": "nat", "weights": {"native": 1}, "size": 16},
    "old": {"provenances": ["native"]},  # a manifest of a mix without weights: no point
}
FIGURES = {
    "r11_8": {"value": 0.30, "ci95": [0.2, 0.4]},
    "r11_16": {"value": 0.35, "ci95": [0.25, 0.45]},
    "r13_16": {"value": 0.33, "ci95": [None, None]},
    "nat": {"value": None, "ci95": [None, None]},  # not scored: no point, never a 0
    "old": {"value": 0.5, "ci95": [0.4, 0.6]},
}


def test_points_curves_and_the_native_share():
    assert native_share({"native": 1, "translated": 3}) == 0.25 and native_share({"synthetic": 2}) == 0.0
    points = mix_points(MIXES, FIGURES)
    assert [(p.tag, p.size, p.native_share) for p in points] == [
        ("r11_8", 8, 0.5),
        ("r11_16", 16, 0.5),
        ("r13_16", 16, 0.25),
    ]
    assert list(curves(points)) == ["r11"] and [p.size for p in curves(points)["r11"]] == [8, 16]
    assert table(points)[0] == {
        "model": "r11_8",
        "mix": "r11",
        "size": 8,
        "native_share": 0.5,
        "value": 0.3,
        "ci95": [0.2, 0.4],
    }


def test_the_plot_is_byte_stable_and_absent_without_points(tmp_path):
    points = mix_points(MIXES, FIGURES)
    first = plot(points, tmp_path / "a.png").read_bytes()
    assert plot(points, tmp_path / "b.png").read_bytes() == first and first.startswith(b"\x89PNG")
    assert plot([], tmp_path / "c.png") is None and not (tmp_path / "c.png").exists()


def test_the_plot_ticks_the_sizes_and_labels_each_place_once(tmp_path, monkeypatch):
    from medinjection.evaluation import mix_curves

    drawn = []
    monkeypatch.setattr(mix_curves, "save", lambda fig, path: drawn.append(fig) or path)
    figures = {**FIGURES, "r13_16": {"value": 0.30, "ci95": [0.2, 0.4]}}
    mixes = {**MIXES, "r13_16": {**MIXES["r13_16"], "weights": {"native": 1, "translated": 1}}}
    plot(mix_points(mixes, figures), tmp_path / "a.png")
    by_size, by_share = drawn[0].axes
    assert list(by_size.get_xticks()) == [8, 16] and [t.get_text() for t in by_size.get_xticklabels()] == [
        "8",
        "16",
    ]
    # r11_8 and r13_16 (now also 1:1) fall on the same place: one label naming both
    assert sorted(t.get_text() for t in by_share.texts) == ["r11_16", "r11_8, r13_16"]


@pytest.mark.parametrize("missing", ["weights", "size"])
def test_an_entry_without_weights_or_size_gives_no_point(missing):
    entry = {k: v for k, v in MIXES["r11_8"].items() if k != missing}
    assert mix_points({"x": entry}, {"x": {"value": 0.3, "ci95": [0.2, 0.4]}}) == []


# --- the report: a section and em_by_size.png for adapters whose summaries carry a mix file's mix ----


@pytest.fixture(scope="module")
def fixture_outputs(tmp_path_factory) -> Path:
    import report_fixture as fx

    return fx.write_outputs(tmp_path_factory.mktemp("eval") / "eval-out")


def with_mixes(outputs: Path, target: Path, entries: dict[str, dict]) -> Path:
    """A copy of the outputs whose adapters' summaries carry a run manifest's ``mix`` with these entries."""
    shutil.copytree(outputs, target)
    for tag, entry in entries.items():
        for path in sorted((target / tag).glob("*/summary.json")):
            doc = json.loads(path.read_text())
            doc["mix"] = {"name": tag, "size": entry["size"], "entry": entry}
            path.write_text(json.dumps(doc))
    return target


def mix_rows(markdown: str) -> list[dict[str, str]]:
    from test_eval_report import tables

    return tables(markdown).get("Mix size and native share", [])


def test_the_report_plots_em_against_mix_size(fixture_outputs, tmp_path):
    entries = {
        "nat": {"mix": "r11", "weights": {"native": 1, "translated": 1}, "size": 8},
        "trad": {"mix": "r11", "weights": {"native": 1, "translated": 1}, "size": 16},
    }
    root = with_mixes(fixture_outputs, tmp_path / "eval-out", entries)
    report = build_report(root, tmp_path / "report", resamples=50)
    macro = {
        t: json.loads((root / t / "aggregate.json").read_text())["metrics"]["em_constrained_macro"]
        for t in entries
    }
    rows = mix_rows(report.markdown)
    assert [(r["model"], r["mix"], r["size"], r["native share"]) for r in rows] == [
        ("NAT", "r11", "8", "0.50"),
        ("TRAD", "r11", "16", "0.50"),
    ]  # the base has no mix: not a point
    for row in rows:
        low, high = macro[row["model"].lower()]["ci95"]
        value = macro[row["model"].lower()]["value"]
        assert row["constrained EM (macro)"].startswith(
            f"{100 * value:.2f} [{100 * low:.2f}, {100 * high:.2f}]"
        )
    assert [(p["model"], p["size"], p["value"]) for p in report.data["mix_curves"]] == [
        ("nat", 8, macro["nat"]["value"]),
        ("trad", 16, macro["trad"]["value"]),
    ]
    # the plot is the one of these points, computed here from the entries and the aggregates
    png = tmp_path / "report" / "em_by_size.png"
    assert "![Constrained EM against mix size and native share](em_by_size.png)" in report.markdown
    expected = plot(mix_points(entries, macro), tmp_path / "expected.png").read_bytes()
    assert png.read_bytes() == expected


@pytest.mark.parametrize("case", ["no mix", "one size", "manifest without entry"])
def test_nothing_changes_without_mixes_of_several_sizes(fixture_outputs, tmp_path, case):
    """No summary with a mix (outputs of older runs, the base), mixes all of one size (the paper's seven),
    or a manifest whose mix has no mixes.json entry: no section, no plot, the same report."""
    plain = build_report(fixture_outputs, tmp_path / "plain", resamples=50)
    same = {"weights": {"native": 1}, "size": 24}
    entries = {
        "no mix": {},
        "one size": {
            "nat": {"mix": "nat", **same},
            "trad": {"mix": "trad", **same, "weights": {"translated": 1}},
        },
        "manifest without entry": {},
    }[case]
    root = with_mixes(fixture_outputs, tmp_path / "eval-out", entries)
    if case == "manifest without entry":
        for path in root.glob("nat/*/summary.json"):
            path.write_text(
                json.dumps({**json.loads(path.read_text()), "mix": "nat"})
            )  # an old manifest's string
    report = build_report(root, tmp_path / "report", resamples=50)
    assert mix_rows(report.markdown) == [] and "mix_curves" not in report.data
    assert not (tmp_path / "report" / "em_by_size.png").exists()
    assert report.markdown.replace(root.name, "x") == plain.markdown.replace(fixture_outputs.name, "x")


# --- end to end on the demo: ratios mixes -> two tiny adapters -> evaluate -> report ------------------


@pytest.fixture(scope="module")
def ratio_runs(tiny_path, tmp_path_factory):
    """The demo built and mixed with the bundled ratios file, two tiny adapters trained (tiny recipe,
    one epoch) on the 1:1 mix at sizes 8 and 16, the base and both evaluated on native-test."""
    from typer.testing import CliRunner

    from medinjection.cli import app
    from medinjection.core.config import load_build_config
    from medinjection.dataset_builders.build import build
    from medinjection.dataset_builders.mixes import build_mixes
    from medinjection.evaluation.runner import evaluate
    from medinjection.evaluation.settings import EvalArguments

    root = tmp_path_factory.mktemp("ratios")
    data = root / "medinjection-fr"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_CACHE", str(root / "hf-datasets"))
        import datasets

        mp.setattr(datasets.config, "HF_DATASETS_CACHE", root / "hf-datasets")
        build(load_build_config("demo"), data, progress=False)
        build_mixes(data, mixes="ratios")
        for size in (8, 16):
            mix = f"nat_trad_1to1_{size}"
            result = CliRunner().invoke(
                app,
                [
                    "train",
                    "--config", str(REPO / "trl_configs" / "tiny" / "nat.yaml"),
                    "--dataset_name", str(data),
                    "--dataset_config", mix,
                    "--model_name_or_path", str(tiny_path),
                    "--output_dir", str(root / "runs" / mix),
                    "--num_train_epochs", "1",
                ],
            )  # fmt: skip
            assert result.exit_code == 0, result.output
        args = EvalArguments(
            model_name_or_path=str(tiny_path),
            adapters=[str(root / "runs")],
            tasks=["native-test"],
            data_dir=str(root),
            output_dir=str(root / "eval"),
            permutations=0,
            oeq_max_new_tokens=4,
            bootstrap_resamples=50,
        )
        evaluate(args, log=lambda _: None)
    return root, args


@pytest.mark.slow
def test_em_against_mix_size_end_to_end(ratio_runs, tmp_path):
    from medinjection.core.runs import RunLayout
    from medinjection.evaluation.runner import evaluate

    ratio_runs, args = ratio_runs
    runs = {size: RunLayout(ratio_runs / "runs" / f"nat_trad_1to1_{size}") for size in (8, 16)}
    out = ratio_runs / "eval"
    for size, layout in runs.items():
        manifest_mix = layout.manifest()["mix"]
        assert manifest_mix["entry"]["weights"] == {"native": 1, "translated": 1}
        assert manifest_mix["entry"]["size"] == size and manifest_mix["entry"]["mix"] == "nat_trad_1to1"
        summary = json.loads((out / layout.name / "native-test" / "summary.json").read_text())
        assert summary["mix"] == manifest_mix  # the summary records the mix as the manifest says it
    assert json.loads((out / "base" / "native-test" / "summary.json").read_text())["mix"] is None
    # a summary written before summaries recorded the mix gets it when the scoring is reused
    older = out / "nat_trad_1to1_8" / "native-test" / "summary.json"
    doc = json.loads(older.read_text())
    del doc["mix"]
    older.write_text(json.dumps(doc))
    logs: list[str] = []
    evaluate(args, log=logs.append)
    assert sum("reused" in line for line in logs) == 3, logs
    assert json.loads(older.read_text())["mix"] == runs[8].manifest()["mix"]

    # the report works from the output folder alone: the run folders moved away
    alone = tmp_path / "eval"
    shutil.copytree(out, alone)
    report = build_report(alone, tmp_path / "report", resamples=50)
    macro = {
        name: json.loads((alone / name / "aggregate.json").read_text())["metrics"]["em_constrained_macro"]
        for name in ("nat_trad_1to1_8", "nat_trad_1to1_16")
    }
    rows = mix_rows(report.markdown)
    assert [(r["model"], r["mix"], r["size"], r["native share"]) for r in rows] == [
        ("nat_trad_1to1_8", "nat_trad_1to1", "8", "0.50"),
        ("nat_trad_1to1_16", "nat_trad_1to1", "16", "0.50"),
    ]
    for row in rows:
        entry = macro[row["model"]]
        assert row["constrained EM (macro)"].startswith(f"{100 * entry['value']:.2f} [")
    entries = {layout.name: layout.manifest()["mix"]["entry"] for layout in runs.values()}
    expected = plot(mix_points(entries, macro), tmp_path / "expected.png").read_bytes()
    assert (tmp_path / "report" / "em_by_size.png").read_bytes() == expected
