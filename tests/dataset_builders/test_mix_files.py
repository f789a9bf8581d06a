"""Mixes as data: any provenance ratio and size, nested sizes, origin and quality filters, declared in
a YAML mix file; the paper's seven mixes are one bundled file that gives exactly the paper's rule."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_mixes import TRAIN, read, write_folder
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.core.config import MixFileError, load_mix_file
from medinjection.core.layout import shard_schema
from medinjection.core.schema import PROVENANCES, TYPES
from medinjection.dataset_builders.mixes import MIXES, MixError, build_mixes

RATIOS = """\
- name: nat_trad_1to1
  weights: {native: 1, translated: 1}
  size: [40, 100, 200]
  types: all
- name: nat_trad_1to3
  weights: {native: 1, translated: 3}
  size: [40, 100, 200]
  types: all
  seed: 7
"""


def sha(seed: int, *parts: str) -> bytes:
    return hashlib.sha256("\x00".join((str(seed), *parts)).encode()).digest()


def paper_rule(root: Path, mix: str, provenances: tuple[str, ...], size: int, seed: int, types) -> list[str]:
    """The paper file's rule, stated again here independently of the code: equal provenance shares
    (remainder to the first provenances), type quotas by largest remainder over the provenance's train
    items of those types (ties to the first type), the items of smallest sha256(seed, id) per
    (provenance, type), rows shuffled by sha256(seed, mix, id)."""
    picked = []
    base, extra = divmod(size, len(provenances))
    for k, provenance in enumerate(p for p in PROVENANCES if p in provenances):
        share = base + (1 if k < extra else 0)
        rows = [r for r in read(root, provenance) if r["type"] in types]
        counts = Counter(r["type"] for r in rows)
        total = sum(counts.values())
        exact = {t: share * counts[t] / total for t in types}
        quota = {t: int(exact[t]) for t in types}
        for t in sorted(types, key=lambda t: (-(exact[t] - quota[t]), TYPES.index(t)))[
            : share - sum(quota.values())
        ]:
            quota[t] += 1
        for t in types:
            ranked = sorted((r["id"] for r in rows if r["type"] == t), key=lambda i: (sha(seed, i), i))
            picked += ranked[: quota[t]]
    return sorted(picked, key=lambda i: sha(seed, mix, i))


@pytest.mark.parametrize(
    ("size", "seed", "types"), [(251, 0, ("MCQ", "MCQU", "OEQ")), (90, 3, ("MCQ", "MCQU"))]
)
def test_the_paper_file_gives_exactly_the_papers_rows(tmp_path, size, seed, types):
    root = write_folder(tmp_path / "paper")
    build_mixes(root, size=size, seed=seed, types=list(types), write_card=False)
    report = json.loads((root / "mixes.json").read_text())
    assert report["mix_file"] == "paper" and list(report["mixes"]) == list(MIXES)
    for mix, provenances in MIXES.items():
        assert [r["id"] for r in read(root, mix)] == paper_rule(root, mix, provenances, size, seed, types), (
            mix
        )
        assert report["mixes"][mix]["weights"] == {p: 1 for p in provenances}


@pytest.fixture(scope="module")
def ratios(tmp_path_factory) -> Path:
    root = write_folder(tmp_path_factory.mktemp("ratios"))
    mix_file = root.parent / "ratios.yaml"
    mix_file.write_text(RATIOS)
    build_mixes(root, mixes=mix_file, write_card=False)
    return root


def test_each_size_is_a_config_and_the_shares_follow_the_weights(ratios):
    report = json.loads((ratios / "mixes.json").read_text())
    assert sorted(report["mixes"]) == sorted(
        f"{n}_{s}" for n in ("nat_trad_1to1", "nat_trad_1to3") for s in (40, 100, 200)
    )
    for name, weights in (
        ("nat_trad_1to1", {"native": 1, "translated": 1}),
        ("nat_trad_1to3", {"native": 1, "translated": 3}),
    ):
        for size in (40, 100, 200):
            rows = read(ratios, f"{name}_{size}")
            assert len(rows) == size
            shares = Counter(r["provenance"] for r in rows)
            for provenance, weight in weights.items():
                assert abs(shares[provenance] - size * weight / sum(weights.values())) < 1, (
                    name,
                    size,
                    shares,
                )
            entry = report["mixes"][f"{name}_{size}"]
            assert entry["weights"] == weights and entry["sizes"] == [200, 100, 40]
            assert entry["by_origin"] == dict(Counter(r["origin"] for r in rows))
            assert entry["by_provenance_type"] == {
                p: dict(sorted(Counter(r["type"] for r in rows if r["provenance"] == p).items()))
                for p in sorted(shares)
            }


def test_smaller_sizes_are_nested_inside_the_larger_ones(ratios):
    report = json.loads((ratios / "mixes.json").read_text())
    for name in ("nat_trad_1to1", "nat_trad_1to3"):
        small, middle, large = ({r["id"] for r in read(ratios, f"{name}_{s}")} for s in (40, 100, 200))
        assert small < middle < large
        assert report["mixes"][f"{name}_40"]["nested_in"] == f"{name}_100"
        assert report["mixes"][f"{name}_200"]["nested_in"] is None
        # types keep their proportion at every size (within one per type and provenance)
        for size in (40, 100):
            rows = read(ratios, f"{name}_{size}")
            for provenance in ("native", "translated"):
                kinds = Counter(r["type"] for r in rows if r["provenance"] == provenance)
                share = sum(kinds.values())
                total = sum(TRAIN[provenance].values())
                for t in TYPES:
                    assert abs(kinds[t] - share * TRAIN[provenance][t] / total) < 2, (
                        name,
                        size,
                        provenance,
                        kinds,
                    )


def test_the_bundled_ratio_file_builds_on_the_demo_and_every_config_loads(tmp_path):
    """The issue's case: 1:1 and 1:3 native:translated at three nested sizes, on the demo build, loaded
    by name with load_dataset (the card's configs block), the paper's seven mixes unchanged beside."""
    from datasets import load_dataset

    from medinjection.core.config import load_build_config
    from medinjection.dataset_builders.build import build

    root = build(load_build_config("demo"), tmp_path / "demo", workers=1, progress=False)
    result = build_mixes(root, mixes="ratios")
    configs = list(result.report["mixes"])
    assert len(configs) == 6 and all(c.startswith(("nat_trad_1to1_", "nat_trad_1to3_")) for c in configs)
    for config, entry in result.report["mixes"].items():
        ds = load_dataset(str(root), config, cache_dir=str(tmp_path / "cache"))
        assert ds["train"].num_rows == entry["train"] == entry["size"]
        assert dict(Counter(ds["train"]["provenance"])) == entry["by_provenance"]
        assert ds["test"].num_rows > 0
    card = (root / "README.md").read_text()
    assert "The mixes of the mix file `ratios`" in card and "| `nat_trad_1to3_" in card


def test_origins_and_min_quality_decide_what_a_mix_draws(tmp_path):
    root = write_folder(tmp_path / "q")
    for provenance in ("translated", "synthetic"):  # the quality screen's labels, as the build writes them
        path = root / "data" / provenance / "train-00000.parquet"
        rows = pq.read_table(path).to_pylist()
        for n, row in enumerate(rows):
            row["quality"] = {
                "score": n % 5 + 1,
                "reason": "grille de relecture",
                "model": "m",
                "prompt_version": "quality-v1",
            }
            row["origin"] = "A" if n % 4 else "B"
        pq.write_table(pa.Table.from_pylist(rows, schema=shard_schema("v1")), path)
    mix_file = tmp_path / "q.yaml"
    mix_file.write_text(
        "- {name: good, weights: {native: 1, translated: 1}, size: 60, types: all, min_quality: 3}\n"
        "- {name: only_b, weights: {translated: 1}, size: 30, types: all, origins: {include: [B]}}\n"
        "- {name: not_b, weights: {translated: 1}, size: 30, types: all, origins: {exclude: [B]}}\n"
    )
    build_mixes(root, mixes=mix_file, write_card=False)
    good = read(root, "good")
    scores = {
        r["id"]: r["quality"]["score"]
        for r in pq.read_table(root / "data/translated/train-00000.parquet").to_pylist()
    }
    assert all(scores[r["id"]] >= 3 for r in good if r["provenance"] == "translated")
    assert any(r["provenance"] == "native" for r in good)  # native items are not screened: kept
    assert {r["origin"] for r in read(root, "only_b")} == {"B"}
    assert "B" not in {r["origin"] for r in read(root, "not_b")}
    entry = json.loads((root / "mixes.json").read_text())["mixes"]["good"]
    assert entry["min_quality"] == 3 and entry["origins"] is None
    # a mix asking for a quality the build never screened: an error, with the numbers
    unscreened = write_folder(tmp_path / "unscreened")
    with pytest.raises(
        MixError,
        match=r"min_quality 3 but \d+ of its \d+ eligible translated train items have no quality score",
    ):
        build_mixes(unscreened, mixes=mix_file, write_card=False)


def test_impossible_requests_fail_with_the_numbers(tmp_path):
    root = write_folder(tmp_path / "bad", {**TRAIN, "synthetic": {}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {name: x, weights: {native: 1, synthetic: 1}, size: 20}\n")
    with pytest.raises(
        MixError, match="no train items of type MCQ/MCQU of provenance synthetic, yet its weight is 1"
    ):
        build_mixes(root, mixes=bad, write_card=False)
    bad.write_text("- {name: x, weights: {native: 1, translated: 3}, size: 2000, types: all}\n")
    with pytest.raises(MixError) as err:
        build_mixes(root, mixes=bad, write_card=False)
    assert "'translated' has 500 train items of type MCQ/MCQU/OEQ but needs 1500" in str(err.value)
    assert "the largest feasible size of 'x' is 667" in str(err.value)
    assert not (root / "mixes.json").exists()
    for text, message in (
        ("- {name: x, weights: {native: 1}, size: 10, ratio: 2}\n", "unknown key 'ratio'"),
        ("- {name: x, weights: {native: 0}, size: 10}\n", "weights must be positive"),
        ("- {name: x, weights: {nativ: 1}, size: 10}\n", "weights.nativ"),
        ("- {name: x, weights: {native: 1}, size: [10, 10]}\n", "a size is repeated"),
        ("- {name: native, weights: {native: 1}, size: 10}\n", "a provenance's config name"),
        (
            "- {name: x, weights: {native: 1}, size: [10, 20]}\n- {name: x_10, weights: {native: 1}, size: 5}\n",
            "config 'x_10' comes from two mixes",
        ),
        ("{name: x}\n", "a non-empty YAML list"),
    ):
        bad.write_text(text)
        with pytest.raises(MixFileError, match=message):
            load_mix_file(bad)


def test_a_new_mix_file_replaces_the_old_mixes_and_the_command_prints_them(tmp_path):
    root = write_folder(tmp_path / "cli")
    runner = CliRunner()
    assert runner.invoke(app, ["mix", str(root), "--size", "40"]).exit_code in (
        0,
        1,
    )  # no stats.json: card error
    assert (root / "data" / "nat").is_dir()
    mix_file = tmp_path / "ratios.yaml"
    mix_file.write_text(RATIOS)
    result = runner.invoke(app, ["mix", str(root), "--mixes", str(mix_file)])
    assert "nat_trad_1to3_40 40 (native 10, translated 30, inside nat_trad_1to3_100)" in result.output, (
        result.output
    )
    assert f"from {mix_file}" in result.output.replace("\n", "")
    assert not (root / "data" / "nat").exists()  # the paper's mixes are gone with the old mixes.json
    assert sorted(json.loads((root / "mixes.json").read_text())["mixes"]) == sorted(
        p.name for p in (root / "data").iterdir() if p.name not in PROVENANCES
    )
