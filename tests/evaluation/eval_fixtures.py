"""Fixtures of the multiple-choice evaluation tests (imported by the test modules that use them).

A tiny random Qwen3 made on the fly, DoRA adapters made directly with PEFT on it (random, non-zero
weights so that they change predictions) and saved with the run folder's file names, and real
FrenchMedMCQA items read through the source adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medinjection.core.runs import ADAPTER_FILES

DORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="session", autouse=True)
def hash_cache(tmp_path_factory):
    """The model-file hash cache of the session (``models.identity.hash_cache_path``): a fresh file, so
    that tests never read or fill the user's ``~/.cache/medinjection/file-hashes.json``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDINJECTION_HASH_CACHE", str(tmp_path_factory.mktemp("hashes") / "file-hashes.json"))
        yield


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> Path:
    from medinjection.models.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def tiny(tiny_path):
    """``(model, tokenizer)`` of the tiny Qwen3, float32, eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_path).eval()
    return model, AutoTokenizer.from_pretrained(tiny_path)


def make_dora_run(base_path: Path, folder: Path, seed: int) -> Path:
    """A run folder holding a DoRA adapter of the paper's shape (random weights) on ``base_path``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_path)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        use_dora=True,
        target_modules=DORA_TARGETS,
        init_lora_weights=False,
    )
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(folder)
    for name in ADAPTER_FILES:
        assert (folder / name).is_file(), f"PEFT did not write {name}"
    (folder / "manifest.json").write_text(
        json.dumps({"base_model": str(base_path), "mix": folder.name}) + "\n"
    )
    return folder


@pytest.fixture(scope="session")
def dora_runs(tiny_path, tmp_path_factory) -> Path:
    """``runs/`` with two DoRA run folders, ``nat`` and ``nat_trad``."""
    root = tmp_path_factory.mktemp("runs")
    for seed, name in enumerate(("nat", "nat_trad"), start=1):
        make_dora_run(tiny_path, root / name, seed)
    return root


def frenchmedmcqa_items(shared_data: Path, split_file: str = "dev.json", limit: int | None = None):
    """Real FrenchMedMCQA items, through the adapter, normalised, validated and prompted (chat v1)."""
    from medinjection.core.chat import to_messages
    from medinjection.core.config import SourceSpec
    from medinjection.core.schema import validate_record
    from medinjection.dataset_builders.sources import get_adapter
    from medinjection.dataset_builders.steps.normalize import normalize_record
    from medinjection.evaluation.items import item_from_record

    spec = SourceSpec(adapter="frenchmedmcqa", path=str(shared_data / "frenchmedmcqa" / split_file))
    adapter = get_adapter("frenchmedmcqa")(spec)
    items = []
    for raw in adapter.iter_raw():
        record = normalize_record(adapter.map_row(raw))
        validate_record(record)
        items.append(item_from_record(record, to_messages(record)))
        if limit is not None and len(items) >= limit:
            break
    return items


@pytest.fixture(scope="session")
def dev_items(shared_data):
    return frenchmedmcqa_items(shared_data)
