"""Real builds shared by the card, mix and publish tests: the three FrenchMedMCQA-shaped fixture
sources (tests/fixtures/mixes; one licence, apache-2.0), a build of sources under different
licences, one of them unknown (tests/fixtures/sources, tests/fixtures/build/unknown_licence), and
the native origins build (FrBMedQA through its own adapter, the other origins from a release-shaped
Native folder)."""

from __future__ import annotations

from pathlib import Path

import yaml

from medinjection.core.schema import PROVENANCES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mixes"
SOURCES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
UNKNOWN_LICENCE = Path(__file__).resolve().parents[1] / "fixtures" / "build" / "unknown_licence"
RELEASE_NATIVE = SOURCES / "medinjection_release" / "native"
# the release's origins that this build reads from their own sources, and a name no row carries
EXCLUDED_ORIGINS = ["FrBMedQA", "mediqal", "Bogus Origin"]


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


def native_origins_config() -> dict:
    """FrBMedQA from its own adapter (tests/fixtures/sources/frbmedqa) and, from a folder in the
    Native release's layout, every origin but those of ``EXCLUDED_ORIGINS``. The release folder holds
    a test-split copy of an own FrBMedQA train item (under another origin name), an S-Editions answer
    of 2,250 characters (over ``max_field_chars`` 1,000) and an empty file."""
    return {
        "name": "origins-fixture",
        "sources": [
            {"adapter": "frbmedqa", "path": str(SOURCES / "frbmedqa")},
            {
                "adapter": "medinjection_release",
                "path": str(RELEASE_NATIVE),
                "provenance": "native",
                "options": {"origins": {"exclude": EXCLUDED_ORIGINS}},
            },
        ],
        "filters": {"max_field_chars": 1000},
        "executor": {"type": "local", "tasks": 1, "workers": 1},
    }


def native_origins_build(folder: Path) -> Path:
    from medinjection.core.config import load_build_config
    from medinjection.dataset_builders.build import build

    (folder / "build.yaml").write_text(yaml.safe_dump(native_origins_config(), allow_unicode=True))
    return build(load_build_config(folder / "build.yaml"), folder / "out", workers=1, progress=False)
