"""Real builds shared by the card, mix and publish tests: the three FrenchMedMCQA-shaped fixture
sources (tests/fixtures/mixes; one licence, apache-2.0), and a build of sources under different
licences, one of them unknown (tests/fixtures/sources, tests/fixtures/build/unknown_licence)."""

from __future__ import annotations

from pathlib import Path

import yaml

from medinjection.core.schema import PROVENANCES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mixes"
SOURCES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
UNKNOWN_LICENCE = Path(__file__).resolve().parents[1] / "fixtures" / "build" / "unknown_licence"


def fixture_build(folder: Path) -> Path:
    from medinjection.core.config import load_build_config
    from medinjection.dataset_builders.build import build

    sources = [
        {"adapter": "frenchmedmcqa", "path": str(FIXTURES / provenance), "provenance": provenance}
        for provenance in PROVENANCES
    ]
    config = {
        "name": "cards-fixture",
        "sources": sources,
        "executor": {"type": "local", "tasks": 2, "workers": 1},
    }
    (folder / "build.yaml").write_text(yaml.safe_dump(config))
    return build(load_build_config(folder / "build.yaml"), folder / "out", workers=1, progress=False)


def mixed_license_build(folder: Path) -> Path:
    """FrenchMedMCQA (apache-2.0) + MediQAl (cc-by-4.0) + mlabonne/medical-mqca-fr (no licence stated)."""
    from medinjection.core.config import load_build_config
    from medinjection.dataset_builders.build import build

    config = {
        "name": "licences-fixture",
        "sources": [
            {"adapter": "frenchmedmcqa", "path": str(SOURCES / "frenchmedmcqa")},
            {"adapter": "mediqal", "path": str(SOURCES / "mediqal")},
            {"adapter": "mlabonne_medical_mcqa_fr", "path": str(UNKNOWN_LICENCE)},
        ],
        "executor": {"type": "local", "tasks": 1, "workers": 1},
    }
    (folder / "build.yaml").write_text(yaml.safe_dump(config))
    return build(load_build_config(folder / "build.yaml"), folder / "out", workers=1, progress=False)
