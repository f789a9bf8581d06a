"""A real build of the three fixture sources (tests/fixtures/mixes); shared by the card, mix and publish tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from medinjection.schema import PROVENANCES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "mixes"


def fixture_build(folder: Path) -> Path:
    from medinjection.config import load_build_config
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
