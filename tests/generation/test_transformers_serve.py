"""Against a real OpenAI-compatible server: ``transformers serve`` on a tiny Qwen3 made on the fly
(random weights: its answers are not JSON, so every item must end rejected as invalid_json with its
raw output, with real token counts), and the in-process transformers backend on the same model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from medinjection.core.config import GenerationBackendConfig, load_build_config
from medinjection.dataset_builders.generate import run_generation
from medinjection.dataset_builders.generation.cache import ResponseCache
from medinjection.dataset_builders.generation.runner import Generator, Request

SAMPLES = Path(__file__).resolve().parents[2] / "dataset_builders" / "samples"
TRANSFORMERS = shutil.which("transformers") or str(Path(os.sys.executable).parent / "transformers")


def make_tiny_qwen3(out: Path) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    lines = [
        "Le patient présente une douleur thoracique.",
        "Quelle est la bonne réponse ?",
        '{"instruction": "texte"}',
    ] * 50
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(
        lines,
        trainers.BpeTrainer(
            vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    Qwen3ForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_qwen3(tmp_path_factory.mktemp("tiny") / "qwen3")


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory, serve_with_transformers):
    yield from serve_with_transformers(tiny_model, tmp_path_factory)


def test_translation_against_transformers_serve(served, tiny_model, tmp_path):
    config = {
        "name": "serve-test",
        "sources": [],
        "translate": {
            "sources": [
                {"adapter": "mmlu_medical", "path": str(SAMPLES / "english" / "mmlu")},
                {
                    "adapter": "pubmedqa",
                    "path": str(SAMPLES / "english" / "pubmedqa"),
                    "options": {"format": "both"},
                },
            ],
            "backend": {
                "type": "openai",
                "model": str(tiny_model),
                "base_url": served,
                "max_tokens": 12,
                "json_mode": False,
                "concurrency": 4,
                "timeout_s": 60,
            },
            "cache": str(tmp_path / "cache.sqlite"),
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cfg = load_build_config(path)
    usage = run_generation(cfg, "translate", tmp_path / "out")
    rejects = [
        json.loads(line)
        for p in (tmp_path / "out" / "rejects" / "translate").glob("*.jsonl")
        for line in p.read_text().splitlines()
    ]
    kept = list((tmp_path / "out" / "_build" / "generated").rglob("*.jsonl"))
    assert len(rejects) == 9 and not kept  # 5 MMLU + 2 x 2 PubMedQA items, all answered with non-JSON
    assert {r["reason"] for r in rejects} == {"invalid_json"}
    assert all(r["raw"]["output"] for r in rejects)
    assert (
        usage["requests"] == 9
        and usage["prompt_tokens"] > 9 * 50
        and 0 < usage["completion_tokens"] <= 9 * 12
    )
    assert len(ResponseCache(tmp_path / "cache.sqlite")) == 9
    again = run_generation(cfg, "translate", tmp_path / "out2")
    assert again.get("requests", 0) == 0 and again["cache_hits"] == 9


def test_in_process_transformers_backend(tiny_model, tmp_path):
    backend = GenerationBackendConfig(type="transformers", model=str(tiny_model), max_tokens=6)
    generator = Generator(backend, ResponseCache(tmp_path / "c.sqlite"))
    messages = [{"role": "user", "content": "Quelle est la bonne réponse ?"}]
    first = generator.generate([Request(messages, "translate-v1")])[0]
    second = generator.generate([Request(messages, "translate-v1")])[0]
    generator.close()
    assert first.text is not None and not first.cached and second.cached and second.text == first.text
    assert (
        generator.usage.requests == 1
        and 0 < generator.usage.completion_tokens <= 6
        and generator.usage.prompt_tokens > 5
    )
