"""`medinjection translation-check`: a translation backend scored on a parallel file before use, with
the translate step's own prompt (through the generation cache), BLEU and chrF with sacrebleu's
signatures; and the card stating the figures of a build's translation checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from gen_fault_server import FaultServer
from sacrebleu.metrics import BLEU, CHRF
from test_transformers_serve import make_tiny_qwen3
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.core.config import GenerationBackendConfig, load_build_config
from medinjection.dataset_builders.build import BuildError, build
from medinjection.dataset_builders.translation_check import (
    TranslationCheckError,
    check_translation_backend,
    read_pairs,
)

PAIRS = Path(__file__).resolve().parents[1] / "fixtures" / "translation"
runner = CliRunner()


def test_pairs_from_jsonl_and_tsv_and_bad_lines_named(tmp_path):
    jsonl, tsv = read_pairs(PAIRS / "pairs.jsonl"), read_pairs(PAIRS / "pairs.tsv")
    assert len(jsonl) == len(tsv) == 10
    assert [(p.en, p.fr) for p in jsonl] == [(p.en, p.fr) for p in tsv] and jsonl[0].id == "p1"
    for name, text, message in (
        (
            "a.jsonl",
            '{"en": "Fever.", "fr": "Fièvre."}\n{"en": "Cough."}\n',
            r"a\.jsonl:2: field 'fr' is missing",
        ),
        ("b.jsonl", "[1, 2]\n", r"b\.jsonl:1: a JSON list, not an object"),
        ("c.tsv", "Fever.\tFièvre.\nno tab here\n", r"c\.tsv:2: 1 tab-separated cells"),
        ("d.tsv", "\n\n", r"d\.tsv: no pair in the file"),
    ):
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(TranslationCheckError, match=message):
            read_pairs(tmp_path / name)


def test_the_figures_are_sacrebleus_on_the_written_translations_and_nothing_is_paid_twice(tmp_path):
    """A local OpenAI-compatible server answers each prompt with French JSON; the report's BLEU and
    chrF equal sacrebleu's on the translations it wrote, and a second run asks nothing."""
    with FaultServer() as server:
        backend = GenerationBackendConfig(type="openai", model="translator", base_url=server.url)
        kwargs = {"cache_path": tmp_path / "cache.sqlite", "prompt_version": "v1"}
        report = check_translation_backend(PAIRS / "pairs.jsonl", backend, output=tmp_path / "out", **kwargs)
        asked = sum(server.requests.values())
        again = check_translation_backend(PAIRS / "pairs.jsonl", backend, output=tmp_path / "again", **kwargs)
        assert sum(server.requests.values()) == asked == 10
    rows = [json.loads(line) for line in (tmp_path / "out" / "translations.jsonl").read_text().splitlines()]
    hypotheses, references = [r["translation"] for r in rows], [r["reference"] for r in rows]
    assert all(r["status"] == "ok" and r["translation"] for r in rows)
    assert report["bleu"]["score"] == round(BLEU().corpus_score(hypotheses, [references]).score, 4)
    assert report["chrf"]["score"] == round(CHRF().corpus_score(hypotheses, [references]).score, 4)
    assert report["bleu"]["signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert report["prompt_version"] == "translate-v1" and report["n"] == 10
    assert report["comet"] == {"score": None, "missing": "no --comet-model given"}
    assert again["usage"]["cache_hits"] == 10 and again["bleu"] == report["bleu"]
    assert json.loads((tmp_path / "out" / "translation_check.json").read_text())["bleu"] == report["bleu"]


@pytest.fixture(scope="module")
def served_translator(tmp_path_factory, serve_with_transformers):
    model = make_tiny_qwen3(tmp_path_factory.mktemp("translator") / "qwen3")
    for url in serve_with_transformers(model, tmp_path_factory):
        yield model, url


def test_against_a_local_transformers_serve_translator(served_translator, tmp_path):
    """The real path: `transformers serve` on a tiny random model. Its answers are not the prompt's
    JSON, so every translation counts as empty and unparseable, and the scores say so (0), never an error."""
    model, url = served_translator
    result = runner.invoke(
        app,
        [
            "translation-check", "--pairs", str(PAIRS / "pairs.tsv"), "--model", str(model), "--base-url", url,
            "--no-json-mode", "--cache", str(tmp_path / "c.sqlite"), "--output", str(tmp_path / "out"), "--limit", "3",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "translation_check.json").read_text())
    assert (
        report["n"] == 3 and report["unparseable"] + report["failed"] == 3 and report["bleu"]["score"] == 0.0
    )
    assert "3 answers unparseable" in result.output and "nrefs:1" in result.output
    assert report["usage"]["requests"] == 3 and report["usage"]["completion_tokens"] > 0


def test_a_build_states_its_translation_checks_in_the_card(tmp_path):
    with FaultServer() as server:
        backend = GenerationBackendConfig(type="openai", model="translator", base_url=server.url)
        check_translation_backend(
            PAIRS / "pairs.jsonl", backend, cache_path=tmp_path / "c.sqlite", output=tmp_path / "check"
        )
    demo = Path(load_build_config("demo").base_dir)
    config = tmp_path / "configs" / "demo.yaml"
    shutil.copytree(demo, config.parent)
    data = yaml.safe_load(config.read_text())
    data["translation_checks"] = [str(tmp_path / "check")]
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    shutil.copytree(demo.parent / "samples", tmp_path / "samples")
    root = build(load_build_config(config), tmp_path / "out", workers=1, progress=False)
    stats = json.loads((root / "stats.json").read_text())
    (check,) = stats["build"]["translation_checks"]
    assert check["backend"]["model"] == "translator" and check["pairs"]["name"] == "pairs.jsonl"
    card = (root / "README.md").read_text()
    assert f"| translator | translate-v1 | pairs.jsonl (10 pairs) | {check['bleu']['score']:.2f} |" in card
    data["translation_checks"] = [str(tmp_path / "nowhere")]
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(BuildError, match="nowhere"):
        build(load_build_config(config), tmp_path / "out2", workers=1, progress=False)
    assert not (tmp_path / "out2" / "data").exists()
