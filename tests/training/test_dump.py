"""`medinjection train ... --dump_tokens FILE`: every training example as it enters the trainer, in the
order of its data loader, after every preprocessing and speed choice; nothing trained, nothing written
into the run folder. On the tiny recipe every example is the authors' rendering."""

from __future__ import annotations

import json

import datasets
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.training.arguments import parse_args
from medinjection.training.tokens import IGNORE

runner = CliRunner()


def authors_rendering(tokenizer, messages) -> list[int]:
    """Their tokens: the chat template's text (their `formatted_chat`), tokenized, nothing appended."""
    return tokenizer(tokenizer.apply_chat_template(messages, tokenize=False))["input_ids"]


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def train_records(dataset, mix: str) -> dict[str, dict]:
    rows = datasets.load_dataset(str(dataset), mix, split="train")
    return {row["id"]: row for row in rows}


def test_dump_tokens_writes_the_authors_tokens_of_every_example_and_trains_nothing(
    demo_dataset, tiny_model, tiny_tokenizer, tiny_argv, tmp_path
):
    output, dump = tmp_path / "run", tmp_path / "tokens.jsonl"
    result = runner.invoke(
        app, ["train", *tiny_argv("nat", demo_dataset, tiny_model, output), "--dump_tokens", str(dump)]
    )
    assert result.exit_code == 0, result.output
    records = train_records(demo_dataset, "nat")
    lines = read_lines(dump)
    assert f"wrote {len(lines)} training examples to {dump} (nothing trained)" in result.output
    assert not output.exists()  # nothing trained, no run folder
    assert sorted(line["id"] for line in lines) == sorted(records)  # every example once
    for line in lines:
        expected = authors_rendering(tiny_tokenizer, records[line["id"]]["messages"])
        assert line["input_ids"] == expected, line["id"]
        assert line["labels"] == expected  # the full loss: every token is a label (before the shift)
        assert tiny_tokenizer.decode(line["input_ids"]).endswith("<|im_end|>\n")


def test_the_dump_is_in_the_order_the_trainer_trains_on(
    demo_dataset, tiny_model, tiny_tokenizer, tiny_argv, tmp_path, monkeypatch
):
    """Compared with the batches a real one-epoch training computes its loss on (recorded in the trainer)."""
    import trl

    from medinjection.training import train

    argv = [*tiny_argv("syn", demo_dataset, tiny_model, tmp_path / "run"), "--num_train_epochs", "1",
            "--eval_strategy", "no", "--save_strategy", "no"]  # fmt: skip
    dump = tmp_path / "tokens.jsonl"
    train(*parse_args([*argv, "--dump_tokens", str(dump)]))
    dumped = [line["input_ids"] for line in read_lines(dump)]

    seen: list[list[int]] = []
    real_compute_loss = trl.SFTTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        if model.training:
            for ids, mask in zip(
                inputs["input_ids"].tolist(), inputs["attention_mask"].tolist(), strict=True
            ):
                seen.append(ids[: sum(mask)])
        return real_compute_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "compute_loss", recording)
    train(*parse_args(argv))
    assert seen == dumped
    by_length = sorted(dumped, key=len, reverse=True)
    assert dumped != by_length or len(dumped) < 3  # the length-grouped order, not a sort
    assert len(seen) == len(train_records(demo_dataset, "syn"))


def test_padding_free_batches_are_dumped_as_the_trainer_receives_them(
    demo_dataset, tiny_model, tiny_tokenizer, tiny_argv, tmp_path
):
    """After the speed choice: a padding-free batch is cut at the example boundaries, and TRL's collator
    has put -100 on the first label of each flattened example (it is never predicted)."""
    from medinjection.training import train

    dump = tmp_path / "tokens.jsonl"
    argv = tiny_argv("nat", demo_dataset, tiny_model, tmp_path / "run", "--padding_free", "true",
                     "--dump_tokens", str(dump))  # fmt: skip
    assert train(*parse_args(argv)) is None
    records = train_records(demo_dataset, "nat")
    lines = read_lines(dump)
    assert len(lines) == len(records)
    for line in lines:
        expected = authors_rendering(tiny_tokenizer, records[line["id"]]["messages"])
        assert line["input_ids"] == expected
        assert line["labels"] == [IGNORE, *expected[1:]]


def test_dump_tokens_of_the_assistant_loss_masks_all_but_the_answer(
    demo_dataset, tiny_model, tiny_tokenizer, tiny_argv, tmp_path
):
    from medinjection.training import train

    dump = tmp_path / "tokens.jsonl"
    train(*parse_args(tiny_argv("nat", demo_dataset, tiny_model, tmp_path / "run", "--loss", "assistant",
                                "--dump_tokens", str(dump))))  # fmt: skip
    records = train_records(demo_dataset, "nat")
    for line in read_lines(dump):
        kept = [token for token in line["labels"] if token != IGNORE]
        answer = records[line["id"]]["messages"][-1]["content"]
        assert tiny_tokenizer.decode(kept) == answer + "<|im_end|>"
