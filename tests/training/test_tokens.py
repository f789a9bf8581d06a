"""Tokens and label masks of the loss modes, on the tiny tokenizer that carries the real
Qwen3-Instruct-2507 chat template: the full loss on exactly the authors' tokens (an independent rendering),
the assistant mask checked against what TRL itself computes."""

from __future__ import annotations

import pytest

from medinjection.training.tokens import (
    IGNORE,
    assistant_ids_and_labels,
    full_sequence_ids,
    prepare,
    training_chat_template,
)

SYSTEM = "Tu es un assistant médical expert. Tu réponds en français."
CHATS = [
    [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": "Quels médicaments sont des anticoagulants ?\n\nA. Héparine\nB. Paracétamol\nC. Warfarine",
        },
        {"role": "assistant", "content": "A, C"},
    ],
    [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": "Quel organe sécrète l'insuline ?\n\nA. Foie\nB. Pancréas\nC. Rate\nD. Rein",
        },
        {"role": "assistant", "content": "B"},
    ],
]


def trl_prepared(tiny_model, tokenizer, rows, **config):
    """TRL's own dataset preparation (SFTTrainer.__init__) on ``rows``: its input_ids and labels."""
    import tempfile

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=tempfile.mkdtemp(prefix="trl-out-"),
        use_cpu=True,
        bf16=False,
        report_to="none",
        activation_checkpointing=False,
        **config,
    )
    trainer = SFTTrainer(
        model=str(tiny_model), args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    return trainer.train_dataset, trainer.data_collator


def authors_rendering(tokenizer, chat) -> list[int]:
    """The authors' tokens, rendered independently: their script's chat template to text (their
    `formatted_chat` column), then the tokenizer on that text; no end token appended (their TRL appended
    one only to a column named `text`)."""
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
    return tokenizer(text)["input_ids"]


def test_full_loss_tokens_are_exactly_the_authors(tiny_tokenizer):
    for chat in CHATS:
        ours = full_sequence_ids(tiny_tokenizer, chat)
        assert ours == authors_rendering(tiny_tokenizer, chat)
        # the sequence ends with the template's `<|im_end|>\n`, nothing after it
        assert tiny_tokenizer.decode(ours).endswith("<|im_end|>\n")
        assert not tiny_tokenizer.decode(ours).endswith("<|im_end|>\n<|im_end|>")
        assert ours[-2] == tiny_tokenizer.eos_token_id and ours[-1] != tiny_tokenizer.eos_token_id


def test_trl_text_path_on_the_authors_column_and_the_installed_version(tiny_model, tiny_tokenizer):
    """Why the tokens are computed before TRL: the authors' setup (a `formatted_chat` text column) gets
    their tokens from TRL 0.17 to 1.14, which append the EOS only to a column named `text`, and one
    `<|im_end|>` more from TRL 1.15 on, which append it to the `dataset_text_field` column whatever its
    name. Checked against the TRL installed here, whichever it is."""
    from importlib.metadata import version

    from packaging.version import Version

    rows = [{"formatted_chat": tiny_tokenizer.apply_chat_template(chat, tokenize=False)} for chat in CHATS]
    theirs, collator = trl_prepared(tiny_model, tiny_tokenizer, rows, dataset_text_field="formatted_chat")
    appended = [tiny_tokenizer.eos_token_id] if Version(version("trl")) >= Version("1.15") else []
    for chat, row in zip(CHATS, theirs, strict=True):
        assert row["input_ids"] == [*full_sequence_ids(tiny_tokenizer, chat), *appended]
    batch = collator([dict(row) for row in theirs])
    real = batch["attention_mask"].bool()
    assert (batch["labels"][real] == batch["input_ids"][real]).all()  # every real token is a label


def test_trl_sft_conversational_path_gives_the_authors_tokens(tiny_model, tiny_tokenizer):
    theirs, _ = trl_prepared(tiny_model, tiny_tokenizer, [{"messages": chat} for chat in CHATS])
    for chat, row in zip(CHATS, theirs, strict=True):
        assert row["input_ids"] == full_sequence_ids(tiny_tokenizer, chat)


def test_full_loss_labels_cover_system_user_and_assistant(tiny_tokenizer):
    from datasets import Dataset

    prepared, stats = prepare(
        Dataset.from_list([{"messages": c} for c in CHATS]), tiny_tokenizer, "full", 2048
    )
    for chat, row in zip(CHATS, prepared, strict=True):
        assert row["labels"] == row["input_ids"]
        text = tiny_tokenizer.decode([t for t in row["labels"] if t != IGNORE])
        for message in chat:
            assert message["content"] in text
        assert row["input_ids"] == authors_rendering(tiny_tokenizer, chat)
    assert stats.examples == 2 and stats.truncated == 0 and stats.dropped_without_labels == 0


def test_assistant_loss_mask_is_exactly_the_answer_and_its_end_of_turn(tiny_tokenizer):
    template = training_chat_template(tiny_tokenizer)
    assert "{% generation %}" in template or "{%- generation %}" in template
    for chat in CHATS:
        ids, labels = assistant_ids_and_labels(tiny_tokenizer, chat, template)
        assert ids == tiny_tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True)["input_ids"]
        kept = [t for t in labels if t != IGNORE]
        assert tiny_tokenizer.decode(kept) == chat[-1]["content"] + "<|im_end|>"
        # the kept tokens are one contiguous run, the last turn's answer
        positions = [i for i, t in enumerate(labels) if t != IGNORE]
        assert positions == list(range(positions[0], positions[-1] + 1))
        assert tiny_tokenizer.decode(ids[: positions[0]]).endswith("<|im_start|>assistant\n")


def test_trl_assistant_mask_also_marks_the_newline_we_leave_out(tiny_model, tiny_tokenizer):
    theirs, _ = trl_prepared(
        tiny_model, tiny_tokenizer, [{"messages": chat} for chat in CHATS], assistant_only_loss=True
    )
    template = training_chat_template(tiny_tokenizer)
    for chat, row in zip(CHATS, theirs, strict=True):
        ids, ours = assistant_ids_and_labels(tiny_tokenizer, chat, template)
        assert ids == row["input_ids"]
        # recent TRL builds a `labels` column; older ones (1.4) keep `assistant_masks` for the collator
        labels = row.get("labels") or [
            t if m else IGNORE for t, m in zip(ids, row["assistant_masks"], strict=True)
        ]
        trl_kept = [t for t in labels if t != IGNORE]
        assert tiny_tokenizer.decode(trl_kept) == chat[-1]["content"] + "<|im_end|>\n"
        assert [t for t in ours if t != IGNORE] == trl_kept[:-1]


def test_truncation_and_examples_left_without_labels_are_counted(tiny_tokenizer):
    from datasets import Dataset

    rows = [{"messages": c, "id": f"item-{i}"} for i, c in enumerate(CHATS)]
    template = training_chat_template(tiny_tokenizer)
    first_answer_token = [
        next(i for i, t in enumerate(assistant_ids_and_labels(tiny_tokenizer, c, template)[1]) if t != IGNORE)
        for c in CHATS
    ]
    prompt_length = min(first_answer_token)
    cut = prompt_length - 1  # every answer falls beyond max_length
    prepared, stats = prepare(Dataset.from_list(rows), tiny_tokenizer, "assistant", cut)
    assert len(prepared) == 0
    assert (
        stats.truncated == 2
        and stats.dropped_without_labels == 2
        and stats.dropped_ids == ["item-0", "item-1"]
    )
    prepared, stats = prepare(Dataset.from_list(rows), tiny_tokenizer, "full", cut)
    assert len(prepared) == 2 and stats.truncated == 2 and all(len(r["input_ids"]) == cut for r in prepared)


def test_unknown_loss_mode_is_refused(tiny_tokenizer):
    from datasets import Dataset

    with pytest.raises(ValueError, match="assistant"):
        prepare(Dataset.from_list([{"messages": CHATS[0]}]), tiny_tokenizer, "completion", 128)


@pytest.mark.parametrize("loss", ["full", "assistant"])
def test_a_record_without_messages_is_named(tiny_tokenizer, loss):
    from datasets import Dataset

    from medinjection.training.data import DataError

    rows = [{"messages": CHATS[0], "id": "item-0"}, {"messages": None, "id": "item-1"}]
    with pytest.raises(DataError, match="record 'item-1' has no `messages`"):
        prepare(Dataset.from_list(rows), tiny_tokenizer, loss, 128)
    broken = [{"messages": [{"content": "Quel organe sécrète l'insuline ?"}], "id": "item-2"}]  # no role
    with pytest.raises(DataError, match="record 'item-2': every message needs a role"):
        prepare(Dataset.from_list(broken), tiny_tokenizer, loss, 128)
    with pytest.raises(DataError, match=r"no `messages` column.*\['id', 'text'\]"):
        prepare(Dataset.from_list([{"id": "item-3", "text": "x"}]), tiny_tokenizer, loss, 128)
