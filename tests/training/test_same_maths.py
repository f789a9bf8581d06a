"""The speed-ups compute the same loss: padding-free batches keep sequences apart on CPU attention
(transformers builds a block-diagonal mask from position_ids), activation checkpointing changes no
gradient, and ``--speed auto`` chooses by hardware and records why."""

from __future__ import annotations

import pytest
import torch

from medinjection.training.authors import PROJECTIONS
from medinjection.training.speed import plan_speed
from medinjection.training.tokens import IGNORE, prepare


@pytest.fixture(scope="module")
def batch_rows(demo_dataset, tiny_tokenizer):
    """Eight demo items of different lengths, as medinjection train tokenizes them (full loss)."""
    import datasets

    train = datasets.load_dataset(str(demo_dataset), "nat", split="train")
    prepared, _ = prepare(train.select(range(8)), tiny_tokenizer, "full", 2048)
    rows = [dict(r) for r in prepared]
    assert len({len(r["input_ids"]) for r in rows}) > 1  # padding actually happens
    return rows


def dora_model(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")
    config = LoraConfig(
        r=16, lora_alpha=16, lora_dropout=0.05, use_dora=True, target_modules=list(PROJECTIONS)
    )
    model = get_peft_model(model, config)
    for name, param in model.named_parameters():  # DoRA starts as the base model; make the adapter matter
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    return model


def per_sequence_nll(logits, labels, sequence_of_position):
    """Summed next-token NLL of every sequence (``sequence_of_position``: sequence index per position)."""
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = labels[:, 1:]
    mask = targets != IGNORE
    nll = -logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    seq = sequence_of_position[:, 1:]
    return torch.zeros(int(seq.max()) + 1).index_add_(0, seq[mask], nll[mask])


def test_padding_free_per_sequence_losses_equal_the_padded_ones_on_sdpa(
    tiny_model, tiny_tokenizer, batch_rows
):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = dora_model(tiny_model).eval()
    pad = tiny_tokenizer.pad_token_id
    padded = DataCollatorForLanguageModeling(pad_token_id=pad, pad_to_multiple_of=8)(batch_rows)
    flat = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)(batch_rows)
    assert "attention_mask" not in flat and flat["input_ids"].shape[0] == 1
    # use_cache=False as SFTTrainer.compute_loss sets it: transformers only looks for packed sequences in
    # position_ids when there is no cache (masking_utils._preprocess_mask_arguments).
    with torch.no_grad():
        padded_logits = model(
            input_ids=padded["input_ids"], attention_mask=padded["attention_mask"], use_cache=False
        ).logits
        flat_logits = model(**{k: v for k, v in flat.items() if k != "labels"}, use_cache=False).logits
        # without the sequence boundaries (one long sequence), attention crosses items: the check can fail
        positions = torch.arange(flat["input_ids"].shape[1])[None]
        crossed_logits = model(input_ids=flat["input_ids"], position_ids=positions, use_cache=False).logits
    rows = torch.arange(padded["input_ids"].shape[0])[:, None].expand_as(padded["input_ids"])
    padded_nll = per_sequence_nll(padded_logits, padded["labels"], rows)
    flat_nll = per_sequence_nll(flat_logits, flat["labels"], flat["seq_idx"].long())
    crossed_nll = per_sequence_nll(crossed_logits, flat["labels"], flat["seq_idx"].long())
    assert len(padded_nll) == len(batch_rows) == len(flat_nll)
    torch.testing.assert_close(flat_nll, padded_nll, rtol=1e-5, atol=1e-4)
    assert not torch.allclose(crossed_nll[1:], padded_nll[1:], rtol=1e-3, atol=1e-2)
    # and the label tokens are the same ones: every token after the first of each sequence
    assert int((padded["labels"][:, 1:] != IGNORE).sum()) == int((flat["labels"][:, 1:] != IGNORE).sum())


def one_step_gradients(tiny_model, rows, tokenizer, checkpointing: bool) -> dict[str, torch.Tensor]:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = dora_model(tiny_model).train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(rows)
    torch.manual_seed(123)  # the dropout draws
    model(**batch).loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_activation_checkpointing_changes_no_gradient_with_dropout(tiny_model, tiny_tokenizer, batch_rows):
    """Why dropping recomputation on CPU is the same maths: the replayed forward draws the same dropout."""
    plain = one_step_gradients(tiny_model, batch_rows[:4], tiny_tokenizer, checkpointing=False)
    recomputed = one_step_gradients(tiny_model, batch_rows[:4], tiny_tokenizer, checkpointing=True)
    assert plain.keys() == recomputed.keys() and any("lora_magnitude_vector" in n for n in plain)
    for name in plain:
        torch.testing.assert_close(recomputed[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def sft_args(**overrides):
    from trl import ModelConfig, SFTConfig

    args = dict(
        output_dir="/tmp/unused",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=True,
        pad_to_multiple_of=8,
        optim="adamw_torch",
        report_to="none",
    )
    args.update(overrides)
    return SFTConfig(**args), ModelConfig(attn_implementation="sdpa")


def test_speed_auto_on_cpu_drops_recomputation_and_pad_to_8_only():
    training_args, model_args = sft_args()
    plan = plan_speed("auto", training_args, model_args, device="cpu")
    assert set(plan.changes) == {"activation_checkpointing", "pad_to_multiple_of"}
    assert training_args.activation_checkpointing is False and training_args.gradient_checkpointing is False
    assert training_args.pad_to_multiple_of is None and training_args.padding_free is False
    assert "block-diagonal" in plan.as_dict()["not_applied"]["padding_free"]


def test_speed_faithful_changes_nothing():
    training_args, model_args = sft_args()
    before = training_args.to_dict()
    plan = plan_speed("faithful", training_args, model_args, device="cpu")
    assert plan.changes == {} and training_args.to_dict() == before


def test_speed_auto_on_gpu_needs_flash_attention_for_padding_free(monkeypatch):
    import medinjection.training.speed as speed

    training_args, model_args = sft_args()
    plan = plan_speed("auto", training_args, model_args, device="cuda")
    assert "padding_free" not in plan.changes and "not flash-attention" in plan.kept["padding_free"]
    assert plan.changes["optim"]["to"] == "adamw_torch_fused"
    assert "activation_checkpointing" not in plan.changes  # kept on GPU

    monkeypatch.setattr(speed, "flash_attention_available", lambda implementation: True)
    training_args, model_args = sft_args()
    model_args.attn_implementation = "flash_attention_2"
    plan = plan_speed("auto", training_args, model_args, device="cuda")
    assert training_args.padding_free is True and training_args.pad_to_multiple_of is None
    training_args, model_args = sft_args(packing=True)
    model_args.attn_implementation = "flash_attention_2"
    assert "padding_free" not in plan_speed("auto", training_args, model_args, device="cuda").changes
