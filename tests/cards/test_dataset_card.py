"""The dataset cards: metadata that round-trips through huggingface_hub, configs that resolve to files,
every number of the body recomputed from the Parquet files and the rejects, the licence computed
from the sources, the mixes' task types and the chat format version."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from build_fixture import fixture_build, mixed_license_build, native_origins_build
from huggingface_hub import DatasetCard, DatasetCardData

from medinjection.cards import dataset_card
from medinjection.cards.dataset_card import (
    CardError,
    check_cards,
    generation_counts,
    render_card,
    write_cards,
)
from medinjection.core.schema import FEATURES, PROVENANCES, SPLITS, TYPES, new_record
from medinjection.dataset_builders.mixes import MIXES


@pytest.fixture(scope="module")
def carded_build(tmp_path_factory) -> Path:
    """A real build of the fixture sources → mixes of 15 → cards; tests that change it copy it first."""
    from medinjection.dataset_builders.mixes import build_mixes

    root = fixture_build(tmp_path_factory.mktemp("carded"))
    build_mixes(root, size=15, seed=0)
    return root


def rows(root: Path, folder: str, split: str | None = None) -> list[dict]:
    out = []
    for path in sorted((root / "data" / folder).glob(f"{split or '*'}-*.parquet")):
        part = pq.read_table(path, columns=["id", "provenance", "source", "type", "origin"]).to_pylist()
        out += [{**r, "split": path.name.split("-")[0]} for r in part]
    return out


def tables(text: str) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    """Markdown tables of a card body: header cells → rows of cells (backticks stripped)."""
    found, current, header = {}, None, None
    for line in text.splitlines():
        if not line.startswith("|"):
            current = header = None
            continue
        cells = tuple(c.strip().strip("`") for c in line.strip().strip("|").split("|"))
        if header is None:
            header = cells
            current = found.setdefault(header, [])
        elif not set("".join(cells)) <= set("-:"):
            current.append(cells)
    return found


def split_counts(items: list[dict], key) -> dict[tuple, tuple[int, ...]]:
    counts = Counter((*key(r), r["split"]) for r in items)
    keys = sorted({k[:-1] for k in counts})
    out = {}
    for k in keys:
        values = [counts.get((*k, s), 0) for s in SPLITS]
        out[k] = (*values, sum(values))
    return out


def as_ints(table_rows, width: int) -> dict[tuple, tuple[int, ...]]:
    return {r[:width]: tuple(int(x) for x in r[width:]) for r in table_rows}


def expected_for(root: Path, subset: str | None):
    provenances = [subset] if subset else list(PROVENANCES)
    items = [r for p in provenances for r in rows(root, p)]
    rejects = Counter()
    rejects_src = Counter()
    for path in sorted((root / "rejects").glob("*/*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if subset and row["provenance"] != subset:
                continue
            rejects[(row["step"], row["reason"])] += 1
            rejects_src[(row["source"], row["provenance"], row["reason"])] += 1
    return items, rejects, rejects_src


@pytest.mark.parametrize("subset", [None, *PROVENANCES])
def test_every_number_in_the_card_equals_the_data(carded_build, subset):
    root = carded_build
    path = root / ("README.md" if subset is None else f"cards/{subset}.md")
    card = DatasetCard.load(path)
    found = tables(card.text)
    items, rejects, rejects_src = expected_for(root, subset)

    assert f"\n{len(items)} records. By provenance and split:" in card.text
    by_prov = as_ints(found[("provenance", "train", "validation", "test", "total")], 1)
    assert by_prov == {(p,): v for (p,), v in split_counts(items, lambda r: (r["provenance"],)).items()}
    by_src = found[("source", "origin", "provenance", "licence", "train", "validation", "test", "total")]
    assert {(r[0], r[2]): tuple(map(int, r[4:])) for r in by_src} == split_counts(
        items, lambda r: (r["source"], r["provenance"])
    )
    by_type = as_ints(found[("provenance", "type", "train", "validation", "test", "total")], 2)
    assert by_type == split_counts(items, lambda r: (r["provenance"], r["type"]))

    configs = as_ints(found[("config", "kind", "train", "validation", "test")], 2)
    evaluation = {s: sum(len(rows(root, p, s)) for p in PROVENANCES) for s in ("validation", "test")}
    expected_configs = {}
    for p in [subset] if subset else PROVENANCES:
        expected_configs[(p, "provenance subset")] = tuple(len(rows(root, p, s)) for s in SPLITS)
    if subset is None:
        for mix in MIXES:
            expected_configs[(mix, "training mix")] = (
                len(rows(root, mix)),
                evaluation["validation"],
                evaluation["test"],
            )
        header = (
            "mix",
            "weights",
            "native",
            "translated",
            "synthetic",
            "MCQ",
            "MCQU",
            "OEQ",
            "origins",
            "filters",
            "train",
        )
        mixes = {r[0]: r for r in found[header]}
        for mix, provenances in MIXES.items():
            mix_rows = rows(root, mix)
            prov, types = Counter(r["provenance"] for r in mix_rows), Counter(r["type"] for r in mix_rows)
            origins = Counter(r["origin"] for r in mix_rows)
            row = mixes[mix]
            assert row[1] == " : ".join(f"{p} 1" for p in provenances)
            assert tuple(map(int, row[2:8] + row[10:])) == (
                *(prov[p] for p in PROVENANCES),
                *(types[t] for t in TYPES),
                len(mix_rows),
            )
            assert row[8] == ", ".join(f"{o} {n}" for o, n in sorted(origins.items())) and row[9] == "-"
    else:
        assert "## Training mixes" not in card.text
    assert configs == expected_configs

    removed = found[("step", "reason", "what it means", "records")]
    assert {(r[0], r[1]): int(r[3]) for r in removed} == dict(rejects)
    assert sum(rejects.values()) > 0, "the fixture build should reject something"
    by_source = found[("source", "provenance", "reason", "records")]
    assert {(r[0], r[1], r[2]): int(r[3]) for r in by_source} == dict(rejects_src)

    steps = found[("stage", "step", "in", "kept", "rejected")]
    assert int(steps[-1][3]) == sum(len(rows(root, p)) for p in PROVENANCES)
    assert all(int(r[2]) == int(r[3]) + int(r[4]) for r in steps)


def test_metadata_round_trips_and_configs_resolve(carded_build):
    root = carded_build
    for path in [root / "README.md", *sorted((root / "cards").glob("*.md"))]:
        card = DatasetCard.load(path)
        meta = card.data.to_dict()
        again = DatasetCardData(**meta)
        assert again.to_dict() == meta
        assert DatasetCard(f"---\n{again.to_yaml()}\n---\n{card.text}").data.to_dict() == meta
        # every source is FrenchMedMCQA-shaped (frenchmedmcqa adapter): its licence is the card's
        assert meta["license"] == "apache-2.0" and meta["language"] == ["fr"] and meta["pretty_name"]
        assert meta["task_categories"] and meta["size_categories"] == ["n<1K"] and "medical" in meta["tags"]
        assert "extended|qanastek/frenchmedmcqa" in meta["source_datasets"]
        listed = meta["dataset_info"] if isinstance(meta["dataset_info"], list) else [meta["dataset_info"]]
        infos = {info["config_name"]: info for info in listed}
        for config in meta["configs"]:
            name = config["config_name"]
            assert [f["name"] for f in infos[name]["features"]] == list(FEATURES)
            for entry in config["data_files"]:
                patterns = entry["path"] if isinstance(entry["path"], list) else [entry["path"]]
                files = [f for pattern in patterns for f in root.glob(pattern + ".parquet")]
                assert files, f"{path.name}: config {name} split {entry['split']} resolves to no file"
                n = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
                split_info = next(s for s in infos[name]["splits"] if s["name"] == entry["split"])
                assert split_info["num_examples"] == n
    whole = DatasetCard.load(root / "README.md").data.to_dict()
    assert [c["config_name"] for c in whole["configs"]] == [*PROVENANCES, *MIXES]
    native = DatasetCard.load(root / "cards" / "native.md").data.to_dict()
    assert [c["config_name"] for c in native["configs"]] == ["native"]
    assert check_cards(root) == []


def test_the_card_says_what_it_must(carded_build):
    text = (carded_build / "README.md").read_text()
    for needle in (
        "Medical-use warning",
        "not medical\n> advice",
        "## Limitations",
        "## Intended use",
        "2603.06905",
        "threshold 0.5",
        "| frenchmedmcqa | apache-2.0 |",
        "same licence, **apache-2.0**",
        "No human review",
        "chat format version `v1`",
        "Task types in the mixes: **MCQ, MCQU** (preset `paper`): multiple choice only",
        "the OEQ items are not in any mix",
        "Chat format of the rows' `messages`: `v1`.",
    ):
        assert needle in text, needle
    assert "Unknown licence" not in text and "license: other" not in text


@pytest.fixture(scope="module")
def licences_build(tmp_path_factory) -> Path:
    return mixed_license_build(tmp_path_factory.mktemp("licences"))


def test_sources_of_different_licences_make_the_card_other_and_list_each(licences_build):
    root = licences_build
    stats = json.loads((root / "stats.json").read_text())
    kept = {name for name, source in stats["sources"].items() if source["kept"]}
    assert kept == {"frenchmedmcqa", "mediqal", "mlabonne_medical_mcqa_fr"}, stats["sources"]
    card = DatasetCard.load(root / "README.md")
    assert card.data.to_dict()["license"] == "other"
    text = card.text
    assert "(frenchmedmcqa (apache-2.0), mediqal (cc-by-4.0), mlabonne_medical_mcqa_fr (unknown))" in text
    licences = tables(text)[("source", "licence", "homepage")]
    assert {(r[0], r[1]) for r in licences} == {
        ("frenchmedmcqa", "apache-2.0"),
        ("mediqal", "cc-by-4.0"),
        ("mlabonne_medical_mcqa_fr", "unknown"),
    }
    assert "**Unknown licence:** the publishers of mlabonne_medical_mcqa_fr state no licence" in text
    # a subset card takes the licences of its own sources: all three are native here
    assert DatasetCard.load(root / "cards" / "native.md").data.to_dict()["license"] == "other"
    assert check_cards(root) == []
    # the licence is checked like the rest: a card that claims another one is caught
    readme = root / "README.md"
    original = readme.read_text()
    readme.write_text(original.replace("license: other", "license: mit", 1))
    try:
        assert any("license is 'mit', expected 'other'" in p for p in check_cards(root))
    finally:
        readme.write_text(original)


def test_an_unfilled_placeholder_is_an_error(carded_build, tmp_path, monkeypatch):
    template = tmp_path / "t.md"
    template.write_text(dataset_card.template_path().read_text() + "\n{{ reviewer_name }}\n")
    monkeypatch.setattr(dataset_card, "template_path", lambda: template)
    with pytest.raises(CardError, match="reviewer_name"):
        render_card(carded_build)


def test_review_and_dedup_reports_are_quoted_when_present(carded_build, tmp_path):
    from medinjection.quality.report import build_report, write_report

    root = tmp_path / "copy"
    shutil.copytree(carded_build, root)
    ids = [r["id"] for r in rows(root, "native")[:3]] + [r["id"] for r in rows(root, "synthetic")[:2]]

    def record(rid, provenance, verdicts):
        return {
            "id": rid,
            "metadata": {"provenance": provenance, "source": "frenchmedmcqa"},
            "responses": [
                {"user": user, "status": "submitted", "values": {"answer_correct": v}}
                for user, v in zip(("alice", "bob"), verdicts, strict=False)
            ],
        }

    records = [
        record(ids[0], "native", ["correct", "correct"]),
        record(ids[1], "native", ["incorrect", "incorrect"]),
        record(ids[2], "native", ["correct"]),
        record(ids[3], "synthetic", ["incorrect", "correct"]),
        record(ids[4], "synthetic", ["incorrect"]),
    ]
    report = build_report(records, dataset="fixture")
    write_report(report, root / "quality")
    (root / "dedup_report.md").write_text("Near-duplicates: 4 pairs removed (MinHash, Jaccard >= 0.8).\n")
    write_cards(root)
    text = (root / "README.md").read_text()
    assert "Near-duplicates: 4 pairs removed" in text
    assert "5 of\n5 sampled records reviewed" in text or "5 of 5 sampled records reviewed" in text.replace(
        "\n", " "
    )
    review = tables(text)[("group", "reviewed", "incorrect", "error rate", "95% CI")]
    assert ("all", "5", "2", "40.0%") == review[0][:4]
    assert ("provenance: native", "3", "1", "33.3%") in [r[:4] for r in review]
    native_text = (root / "cards" / "native.md").read_text()
    assert "provenance: synthetic" not in native_text and "provenance: native" in native_text
    assert check_cards(root) == []


def test_a_stale_or_edited_card_is_caught(carded_build, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(carded_build, root)
    readme = root / "README.md"
    readme.write_text(readme.read_text().replace("| native | ", "| native | 9", 1))
    (root / "cards" / "synthetic.md").unlink()
    problems = check_cards(root)
    assert any("README.md" in p and "does not match the data" in p for p in problems)
    assert any("cards/synthetic.md: missing" in p for p in problems)


def test_stale_mixes_json_is_an_error_for_cards(carded_build, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(carded_build, root)
    shutil.rmtree(root / "data" / "nat_syn")
    with pytest.raises(CardError, match="nat_syn"):
        render_card(root)


def test_a_rebuild_drops_the_stale_mixes_json_and_publish_notices_orphans(carded_build, tmp_path):
    from medinjection.cards.dataset_card import write_dataset_readme
    from medinjection.publish.dataset import check_folder

    root = tmp_path / "copy"
    shutil.copytree(carded_build, root)
    shutil.rmtree(root / "data" / "nat")  # as if data/ had been rebuilt without the mixes
    write_dataset_readme(root, json.loads((root / "stats.json").read_text()))
    assert not (root / "mixes.json").exists()
    names = [c["config_name"] for c in DatasetCard.load(root / "README.md").data.to_dict()["configs"]]
    assert names == list(PROVENANCES)
    assert any("no mixes.json" in p for p in check_folder(root))


def test_generation_models_and_prompt_versions_are_counted_from_the_rows(tmp_path):
    folder = tmp_path / "data" / "synthetic"
    folder.mkdir(parents=True)
    made = []
    for i, (model, version) in enumerate(
        [("gpt-4o", "synth-v1")] * 3 + [("gemini-2.0-flash", "synth-v2")] * 2
    ):
        made.append(
            new_record(
                provenance="synthetic",
                source="synth",
                source_id=str(i),
                type="OEQ",
                instruction=f"Question {i} ?",
                answer="Oui.",
                generation={"model": model, "prompt_version": version, "seed_id": str(i)},
            )
        )
    made.append(
        new_record(
            provenance="synthetic",
            source="synth",
            source_id="x",
            type="OEQ",
            instruction="Q ?",
            answer="Non.",
        )
    )
    pq.write_table(pa.Table.from_pylist(made, schema=FEATURES.arrow_schema), folder / "train-00000.parquet")
    assert generation_counts(tmp_path, ["synthetic"]) == {
        ("synthetic", "synth", "gpt-4o", "synth-v1"): 3,
        ("synthetic", "synth", "gemini-2.0-flash", "synth-v2"): 2,
    }


def test_a_copied_or_renamed_build_has_the_same_valid_cards(carded_build, tmp_path):
    """The card never names its folder: a copy of a build is the same build (cards and publish checks pass)."""
    from medinjection.publish.dataset import check_folder

    copy = tmp_path / "a-copy with another name"
    shutil.copytree(carded_build, copy)
    assert check_cards(copy) == [] and check_folder(copy) == []
    renamed = tmp_path / "renamed"
    shutil.move(str(copy), renamed)
    assert check_cards(renamed) == [] and check_folder(renamed) == []
    for path in [renamed / "README.md", *sorted((renamed / "cards").glob("*.md"))]:
        assert f'load_dataset("{carded_build.name}"' not in path.read_text()
    assert (renamed / "README.md").read_text() == (carded_build / "README.md").read_text()
    # published, the loading example names the repo
    assert 'load_dataset("org/name", "nat_trad")' in render_card(renamed, repo_id="org/name").text


@pytest.fixture(scope="module")
def origins_build(tmp_path_factory) -> Path:
    return native_origins_build(tmp_path_factory.mktemp("origins"))


def test_the_card_gives_items_provenance_source_and_licence_per_origin(origins_build):
    root = origins_build
    card = DatasetCard.load(root / "README.md")
    table = tables(card.text)[
        ("origin", "provenance", "from", "licence", "train", "validation", "test", "total")
    ]
    found = {r[:4]: tuple(int(x) for x in r[4:]) for r in table}
    counts = Counter()
    for path in sorted((root / "data").glob("*/*.parquet")):
        for row in pq.read_table(path, columns=["origin", "source", "provenance"]).to_pylist():
            counts[(row["origin"], row["provenance"], row["source"], path.name.split("-")[0])] += 1
    expected = {}
    for origin, provenance, source, _ in counts:
        via = (
            f"the MedInjection-FR release (`{source}`)"
            if source == "medinjection_release"
            else f"own adapter (`{source}`)"
        )
        licence = {"FrBMedQA": "cc-by-4.0", "S-Editions": "unknown"}.get(origin, "mit")
        expected[(origin, provenance, via, licence)] = tuple(
            counts.get((origin, provenance, source, s), 0) for s in SPLITS
        )
    expected = {k: (*v, sum(v)) for k, v in expected.items()}
    assert found == expected
    assert {k[0] for k in found} == {"FrBMedQA", "S-Editions", "QCM Santé Publique"}
    # the release rows left out because this build reads their origin from its own source
    assert (
        "left out by origin (the build reads these origins from their own\nsources): FrBMedQA 1, MediQAl 1"
        in card.text
    )
    # S-Editions' licence is unknown: it makes the card's licence `other` and blocks publish
    assert card.data.to_dict()["license"] == "other"
    assert "the publishers of S-Editions (via medinjection_release) state no licence" in card.text
    assert check_cards(root) == []
