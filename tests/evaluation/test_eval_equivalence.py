"""The batched scorer gives the predictions of the authors' per-item loop (two ``generate`` calls per
item with a letter-masking LogitsProcessor), on the tiny Qwen3, base and DoRA adapter, MCQU and MCQ,
including items whose constrained MCQU answer is a separator or the end token."""

from __future__ import annotations

import pytest
import torch

from medinjection.evaluation.authors_loop import reference_predictions
from medinjection.evaluation.engine import Branch, Engine
from medinjection.evaluation.mcq import predict_texts
from medinjection.evaluation.protocol import letter_token_ids

KEYS = ("greedy_text", "constrained_text", "constrained_letters_text")


def pick(engine: Engine, items, n_mcqu: int = 24, n_mcq: int = 16, n_non_letter: int = 4):
    """Items to check: MCQU ones whose constrained answer is not a letter (a separator or the end
    token: found with the fast path, checked below against the reference), other MCQU, and MCQ."""
    mcqu = [i for i in items if i.type == "MCQU"]
    texts = predict_texts(engine, mcqu)
    odd = [i for i, t in zip(mcqu, texts, strict=True) if t["constrained_text"] not in i.letters][
        :n_non_letter
    ]
    assert odd, "no MCQU dev item where the tiny model's constrained step picks a separator or the end token"
    rest = [i for i in mcqu if i not in odd][: n_mcqu - len(odd)]
    return odd + rest + [i for i in items if i.type == "MCQ"][:n_mcq], odd


def assert_same(reference, fast, items):
    for item, ref, ours in zip(items, reference, fast, strict=True):
        assert {k: ours[k] for k in KEYS} == ref, f"{item.id} ({item.type}): reference {ref}, batched {ours}"


def test_batched_equals_per_item_reference(tiny, dev_items):
    model, tokenizer = tiny
    engine = Engine(model, tokenizer, batch_size=8)  # several batches of mixed lengths
    items, odd = pick(engine, dev_items)
    reference = reference_predictions(model, tokenizer, items, letters_only=True)
    assert any(r["constrained_text"] in ("", ",") for r in reference[: len(odd)])
    assert_same(reference, predict_texts(engine, items), items)
    # the letters-only variant answers those items with a letter, the faithful one does not
    assert all(r["constrained_letters_text"] in i.letters for i, r in zip(odd, reference, strict=False))
    # one batch holding everything gives the same too
    assert_same(reference, predict_texts(Engine(model, tokenizer, batch_size=len(items)), items), items)


def test_mcq_items_decode_several_tokens(tiny, dev_items):
    model, tokenizer = tiny
    items = [i for i in dev_items if i.type == "MCQ"][:12]
    texts = predict_texts(Engine(model, tokenizer), items)
    lengths = [len(tokenizer.encode(t["constrained_text"], add_special_tokens=False)) for t in texts]
    assert max(lengths) > 1, "no MCQ item produced more than one constrained token"


def test_engine_masks_exactly_like_a_logits_processor(tiny, dev_items):
    """A 1-token branch restricted to some ids picks the argmax of the -inf-masked logits."""
    model, tokenizer = tiny
    engine = Engine(model, tokenizer)
    item = dev_items[0]
    prompt = engine.encode(item.messages)
    allowed = tuple(letter_token_ids(tokenizer, item.letters))
    (out,) = engine.run([prompt], [[Branch(1), Branch(1, allowed, allowed)]])
    with torch.inference_mode():
        logits = model(torch.tensor([prompt])).logits[0, -1].float()
    masked = torch.full_like(logits, float("-inf"))
    masked[list(allowed)] = logits[list(allowed)]
    assert out == [[int(logits.argmax())], [int(masked.argmax())]]


def test_dora_adapter_batched_with_caching_equals_reference(tiny_path, dora_runs, dev_items):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medinjection.evaluation.models import load_adapter

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    base = AutoModelForCausalLM.from_pretrained(tiny_path).eval()
    items = [i for i in dev_items if i.type == "MCQU"][:12] + [i for i in dev_items if i.type == "MCQ"][:8]
    base_texts = predict_texts(Engine(base, tokenizer), items)
    loaded = load_adapter(base, dora_runs / "nat")
    assert loaded.info["use_dora"] and loaded.info["dora_caching"]
    reference = reference_predictions(loaded.model, tokenizer, items, letters_only=True)  # no caching
    with loaded.caching():
        fast = predict_texts(Engine(loaded.model, tokenizer), items)
    assert_same(reference, fast, items)
    assert fast != base_texts, "the adapter changed no prediction: the test would not see it unapplied"
    restored = loaded.release()
    assert predict_texts(Engine(restored, tokenizer), items) == base_texts  # base weights untouched


def _oeq_items():
    from medinjection.evaluation.items import EvalItem

    system = {"role": "system", "content": "Tu es un assistant médical expert."}
    questions = ["Quel est le traitement de la pneumonie ?", "Que faire devant une fièvre chez l'enfant ?"]
    return [
        EvalItem(
            id=f"oeq-{i}",
            type="OEQ",
            source="mediqal",
            messages=(system, {"role": "user", "content": question}),
            reference="Une antibiothérapie par amoxicilline.",
        )
        for i, question in enumerate(questions)
    ]


def test_merging_is_checked_and_keeps_predictions(tiny_path, dora_runs, dev_items):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medinjection.evaluation.models import load_adapter, merge_checked

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    items, oeq = dev_items[:24], _oeq_items()
    loaded = load_adapter(AutoModelForCausalLM.from_pretrained(tiny_path).eval(), dora_runs / "nat_trad")
    with loaded.caching():
        unmerged = predict_texts(Engine(loaded.model, tokenizer), items)
        unmerged_oeq = Engine(loaded.model, tokenizer).generate_greedy(
            [Engine(loaded.model, tokenizer).encode(i.messages) for i in oeq], 32
        )
    merged = merge_checked(
        loaded, AutoModelForCausalLM.from_pretrained(tiny_path).eval(), tokenizer, items, oeq
    )
    check = merged.info["merge_check"]
    assert merged.merged and check["items"] == len(items) + len(oeq)
    assert (check["mc_items"], check["oeq_items"], check["oeq_tokens"]) == (len(items), len(oeq), 32)
    assert check["max_abs_logit_diff"] < 1e-3
    engine = Engine(merged.model, tokenizer)
    assert predict_texts(engine, items) == unmerged
    assert engine.generate_greedy([engine.encode(i.messages) for i in oeq], 32) == unmerged_oeq


def test_a_merge_that_changes_predictions_or_has_nothing_to_check_is_refused(
    tiny_path, dora_runs, dev_items, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medinjection.evaluation.models import ModelLoadError, load_adapter, merge_checked
    from medinjection.models.tiny import TinySettings, make_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)

    def loaded():
        return load_adapter(AutoModelForCausalLM.from_pretrained(tiny_path).eval(), dora_runs / "nat")

    with pytest.raises(ModelLoadError, match="merge check has no item"):
        merge_checked(loaded(), AutoModelForCausalLM.from_pretrained(tiny_path).eval(), tokenizer, [], [])
    # merged into another base (same shapes, other weights): the decoded answers differ, on MC and OEQ
    other = AutoModelForCausalLM.from_pretrained(make_tiny_model(tmp_path / "other", TinySettings(seed=7)))
    with pytest.raises(ModelLoadError, match=r"decodes differently from the unmerged one on \d+ of 12"):
        merge_checked(loaded(), other.eval(), tokenizer, dev_items[:12])
    other = AutoModelForCausalLM.from_pretrained(tmp_path / "other")
    with pytest.raises(ModelLoadError, match="oeq-"):
        merge_checked(loaded(), other.eval(), tokenizer, [], _oeq_items())


@pytest.mark.parametrize("batch_size", [1, 5])
def test_greedy_generation_for_open_ended_equals_generate(tiny, dev_items, batch_size):
    from medinjection.evaluation.engine import pinned_generation_config

    model, tokenizer = tiny
    engine = Engine(model, tokenizer, batch_size=batch_size)
    prompts = [engine.encode(i.messages) for i in dev_items[:5]]
    ours = engine.generate_greedy(prompts, max_new_tokens=12)
    for prompt, ids in zip(prompts, ours, strict=True):
        out = model.generate(
            torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            generation_config=pinned_generation_config(tokenizer, 12),
        )
        assert ids == out[0, len(prompt) :].tolist()
