"""A tiny Qwen3 made on the fly: the stand-in for Qwen3-4B-Instruct-2507 in the demo and the tests.

Random weights (nothing is downloaded), the real architecture class (``Qwen3ForCausalLM``), and a
byte-level BPE tokenizer trained in about a second on the bundled French demo texts that carries
Qwen's special tokens (``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``) and the real
Qwen3-Instruct-2507 chat template, which TRL ships in its package. Prompts are therefore rendered
exactly as for the paper's model (``...<|im_start|>assistant\\n``), and the end-of-turn token is
``<|im_end|>`` as there.

As in the real model, the embedding matrix has more rows than the tokenizer has tokens (Qwen3-4B:
151,936 rows for about 151,669 tokens): the recipes must not resize it.

``make_tiny_model(path)`` is idempotent: a folder that already holds the same tiny model (same
settings) is reused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

MARKER = "medinjection-model.json"
"""A file in a model folder that says what it is: for the tiny model, that it was made on the fly."""
TINY_HUB_ID = "medinjection/tiny-random-qwen3"
"""The name the tiny model goes by in manifests and cards. It is not on the Hub: the marker says so,
and publishing an adapter of it for real is refused (a dry run is allowed)."""
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@dataclass(frozen=True)
class TinySettings:
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    vocab_size: int = 1000
    """BPE vocabulary trained (tokens); the embedding matrix is rounded up to a multiple of 64."""
    initializer_range: float = 0.2
    """Larger than Qwen3's 0.02 so that a random model's greedy answers vary between items."""
    seed: int = 0


QWEN3 = {
    "qwen3-0.6b": dict(
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151_936,
        max_position_embeddings=40_960,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
    ),
    "qwen3-4b": dict(
        hidden_size=2560,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=9728,
        vocab_size=151_936,
        max_position_embeddings=40_960,
        rope_theta=5_000_000.0,
        tie_word_embeddings=True,
        rms_norm_eps=1e-6,
    ),
}
"""Published Qwen3 architectures, given random weights by the GPU benchmarks (benchmarks/train.py and
benchmarks/evaluate.py): throughput does not depend on the weights."""


def qwen3_config(arch: str, tokenizer):
    """The ``Qwen3Config`` of ``QWEN3[arch]`` with ``tokenizer``'s pad and end-of-sequence ids."""
    from transformers import Qwen3Config

    return Qwen3Config(
        **QWEN3[arch], pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )


def qwen3_instruct_2507_template() -> str:
    """The Qwen3-Instruct-2507 chat template as TRL ships it (the template of Qwen3-4B-Instruct-2507)."""
    path = resources.files("trl") / "chat_templates" / "qwen3_instruct_2507.jinja"
    return path.read_text(encoding="utf-8")


def _corpus() -> list[str]:
    """French lines to train the tokenizer on: the bundled demo texts, the chat format, answer letters."""
    from medinjection.core.chat import load_chat_template

    samples = resources.files("medinjection.dataset_builders") / "samples"
    lines: list[str] = []
    for path in sorted(Path(str(samples)).rglob("*.json*")):
        lines.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    template = load_chat_template()
    lines.append(template["system"])
    lines.extend(template["user"].values())
    letters = "ABCDEFGH"
    for i, letter in enumerate(letters):
        lines.append(f"{letter}. option {letter} Réponse : {letter}, {letters[(i + 2) % len(letters)]}")
        lines.append(f" {letter} {letter}, {letter},\n{letter}")
    return lines


def make_tokenizer(settings: TinySettings = TinySettings()):
    """A fast tokenizer with Qwen's special tokens and the real Qwen3-Instruct-2507 chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    fast.chat_template = qwen3_instruct_2507_template()
    return fast


def make_tiny_model(path: str | Path, settings: TinySettings = TinySettings()) -> Path:
    """Write a tiny random Qwen3 (model, tokenizer, generation config, marker) into ``path``."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    path = Path(path)
    marker = path / MARKER
    wanted = {"hub_id": TINY_HUB_ID, "made_on_the_fly": True, "settings": asdict(settings)}
    if marker.is_file() and model_marker(path) == wanted:
        return path
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(settings)
    tokenizer.save_pretrained(path)
    end_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    architecture = {k: v for k, v in asdict(settings).items() if k not in ("vocab_size", "seed")}
    config = Qwen3Config(
        vocab_size=-(-(len(tokenizer) + 1) // 64) * 64,
        **architecture,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=end_ids[0],
        pad_token_id=end_ids[1],
    )
    torch.manual_seed(settings.seed)
    model = Qwen3ForCausalLM(config)
    # Qwen3-Instruct-2507's generation config stops on both end tokens; greedy is what the recipes pin.
    model.generation_config = GenerationConfig(eos_token_id=end_ids, pad_token_id=end_ids[1], do_sample=False)
    model.save_pretrained(path)
    marker.write_text(json.dumps(wanted, indent=2) + "\n")
    return path


def model_marker(path: str | Path) -> dict | None:
    """The marker of a local model folder (``None`` for a Hub id or a folder without one)."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{marker}: not valid JSON ({err})") from None


def main() -> None:  # pragma: no cover - a convenience: python -m medinjection.models.tiny PATH
    import sys

    print(make_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "tiny-qwen3"))


if __name__ == "__main__":  # pragma: no cover
    main()
