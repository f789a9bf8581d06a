"""Shared fixtures of the training tests: the tiny Qwen3 and the demo dataset with its mixes, made once.

Nothing is downloaded: the model is made on the fly (``medinjection.models.tiny``), the dataset is the bundled
demo built offline (the same build and mixes as ``medinjection demo``), and ``datasets`` caches into a
temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from medinjection.models.tiny import make_tiny_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def offline_caches(tmp_path_factory):
    cache = tmp_path_factory.mktemp("hf-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TOKENIZERS_PARALLELISM", "false")
        import datasets
        import huggingface_hub.constants

        # both libraries read these variables when imported, which may have happened already
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", Path(cache / "datasets"))
        datasets.disable_progress_bars()
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen3")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory) -> Path:
    """The bundled demo built and mixed (read-only for the tests: copy it before changing it)."""
    from medinjection.core.config import load_build_config
    from medinjection.dataset_builders.build import build
    from medinjection.dataset_builders.mixes import build_mixes

    root = tmp_path_factory.mktemp("demo") / "medinjection-fr"
    build(load_build_config("demo"), root, progress=False)
    build_mixes(root, seed=0, allow_smaller=True)
    return root


@pytest.fixture
def demo_copy(demo_dataset, tmp_path) -> Path:
    target = tmp_path / "medinjection-fr"
    shutil.copytree(demo_dataset, target, ignore=shutil.ignore_patterns("_build", "rejects"))
    return target


@pytest.fixture(scope="session")
def tiny_argv():
    """``tiny_argv(mix, dataset, model, output, *extra)``: arguments of the tiny recipe with local paths."""

    def make(mix: str, dataset: Path, model: Path, output: Path, *extra: str) -> list[str]:
        return [
            "--config",
            str(REPO / "trl_configs" / "tiny" / f"{mix}.yaml"),
            "--dataset_name",
            str(dataset),
            "--model_name_or_path",
            str(model),
            "--output_dir",
            str(output),
            *extra,
        ]

    return make


@pytest.fixture(scope="session")
def subprocess_env(offline_caches) -> dict[str, str]:
    return dict(os.environ)  # offline_caches has set HF_HUB_OFFLINE, TOKENIZERS_PARALLELISM and the cache
