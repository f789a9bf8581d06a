"""Labels that tell the truth: a run is compared with the authors' run from the settings it actually used
(after the speed plan), every difference named with its kind, "faithful" only without a difference of
data or objective; the model card says which differences exist, by kind."""

from __future__ import annotations

from pathlib import Path

import pytest

from medinjection.training import authors
from medinjection.training.arguments import effective_settings, parse_args
from medinjection.training.run import label_run, run_facts
from medinjection.training.speed import plan_speed

REPO = Path(__file__).resolve().parents[2]
PAPER_RECIPE = REPO / "trl_configs" / "qwen3-4b-instruct-2507" / "nat.yaml"

AUTHORS_FACTS = {
    name: authors.authors_value(name)
    for name in ("train_types", "train_examples", "validation_set", "resize_token_embeddings")
}
"""The facts of a hypothetical run on the authors' own data and validation file (no run of this toolkit
has them: their validation file is not published and the embedding matrix is never resized)."""


def paper_run(*overrides: str):
    # use_cpu: a CPU machine refuses bf16 without it; the plan below is told which device to plan for
    return parse_args(["--config", str(PAPER_RECIPE), "--use_cpu", "true", *overrides])


def gpu_plan_with_flash_attention_and_liger(monkeypatch, training_args, model_args):
    """What --speed auto does on a GPU with flash-attention and liger-kernel installed, planned on CPU."""
    import importlib.util

    import medinjection.training.speed as speed

    monkeypatch.setattr(speed, "flash_attention_available", lambda implementation: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        speed.importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "liger_kernel" else real_find_spec(name, *a),
    )
    return plan_speed("auto", training_args, model_args, device="cuda")


def test_a_speed_plan_that_adds_padding_free_and_liger_is_not_labelled_as_if_nothing_changed(monkeypatch):
    script_args, training_args, model_args = paper_run()
    before = label_run({**effective_settings(script_args, training_args, model_args, 2), **AUTHORS_FACTS})
    # as the recipe is written, on the authors' 2 GPUs: only ours, the checkpoints kept on disk
    assert set(before["paper_deviations"]) == {"save_total_limit"} and before["faithful_to_paper"]

    plan = gpu_plan_with_flash_attention_and_liger(monkeypatch, training_args, model_args)
    assert {"padding_free", "use_liger_kernel", "optim", "pad_to_multiple_of"} <= set(plan.changes)
    after = label_run({**effective_settings(script_args, training_args, model_args, 2), **AUTHORS_FACTS})
    found = after["paper_deviations"]
    assert after != before
    for name in ("padding_free", "use_liger_kernel", "optim", "pad_to_multiple_of"):
        assert found[name]["kind"] == authors.NUMERICS, name
    assert found["padding_free"] == {"authors": False, "run": True, "kind": authors.NUMERICS}
    assert found["optim"]["run"] == "adamw_torch_fused"
    assert after["paper_deviations_by_kind"][authors.NUMERICS] == [
        "optim",
        "pad_to_multiple_of",
        "padding_free",
        "use_liger_kernel",
    ]
    # numerics only: still the authors' data and objective
    assert after["faithful_to_paper"] is True and after["paper_deviations_by_kind"][authors.DATA] == []


def test_each_kind_appears_as_computed(demo_dataset, tiny_model):
    """A CPU run of the authors' recipe on one process, with this toolkit's own data: every kind present."""
    from medinjection.models.identity import base_model
    from medinjection.training.data import load_training_data
    from medinjection.training.run import resolve_effective_batch

    script_args, training_args, model_args = paper_run()
    resolve_effective_batch(script_args, training_args, 1)  # 192 on one process: accumulation 16
    plan = plan_speed("auto", training_args, model_args, device="cpu")
    assert "activation_checkpointing" in plan.changes
    data = load_training_data(str(demo_dataset), "nat")
    facts = run_facts(data.info, base_model(str(tiny_model), None, None))
    labels = label_run({**effective_settings(script_args, training_args, model_args, 1), **facts})
    found, kinds = labels["paper_deviations"], labels["paper_deviations_by_kind"]
    assert found["activation_checkpointing"]["kind"] == authors.SAME_MATHS
    assert found["save_total_limit"]["kind"] == authors.SAME_MATHS
    # the same effective batch, laid out on one process: numerics, but the length groups are not theirs
    assert found["gradient_accumulation_steps"] == {
        "authors": 8,
        "run": 16,
        "kind": authors.NUMERICS,
        "note": authors.BY_NAME["gradient_accumulation_steps"].note,
    }
    assert found["world_size"]["kind"] == authors.NUMERICS and "effective_batch" not in found
    assert (found["length_group_size"]["run"], found["length_group_size"]["kind"]) == (192, authors.DATA)
    # the validation set, the embeddings, the data and the model: never the authors' in this toolkit
    assert found["validation_set"]["kind"] == authors.DATA and "nat" in found["validation_set"]["run"]
    assert found["resize_token_embeddings"] == {
        "authors": True,
        "run": False,
        "kind": authors.DATA,
        "note": authors.BY_NAME["resize_token_embeddings"].note,
    }
    assert found["train_examples"]["run"] == data.info["mix"]["size"]
    assert found["model_name_or_path"]["run"] == "medinjection/tiny-random-qwen3"
    assert kinds[authors.DATA] and kinds[authors.NUMERICS] and kinds[authors.SAME_MATHS]
    assert labels["faithful_to_paper"] is False
    assert set(kinds) == set(authors.KINDS) and sorted(sum(kinds.values(), [])) == sorted(found)


@pytest.mark.parametrize(
    ("optim", "kind"),
    [("adamw_torch_fused", authors.NUMERICS), ("adafactor", authors.DATA), ("sgd", authors.DATA)],
)
def test_a_differences_kind_can_depend_on_the_value(optim, kind):
    script_args, training_args, model_args = paper_run("--optim", optim)
    found = authors.differences(effective_settings(script_args, training_args, model_args, 2))
    assert found["optim"]["kind"] == kind


def test_the_model_card_lists_the_differences_by_kind(monkeypatch):
    from cards.model_card import deviations_text
    from medinjection.training.run import resolve_effective_batch

    script_args, training_args, model_args = paper_run()
    resolve_effective_batch(script_args, training_args, 1)
    gpu_plan_with_flash_attention_and_liger(monkeypatch, training_args, model_args)
    settings = {**effective_settings(script_args, training_args, model_args, 1), **AUTHORS_FACTS}
    labels = label_run(settings)
    text = deviations_text(labels)
    assert "Not the authors' run" in text and "Same settings" not in text
    lines = {line.split(":")[0]: line for line in text.splitlines() if line.startswith("- ")}
    assert set(lines) == {f"- {authors.DATA}", f"- {authors.NUMERICS}", f"- {authors.SAME_MATHS}"}
    assert "`length_group_size` 96 → 192" in lines[f"- {authors.DATA}"]
    assert "`padding_free` False → True" in lines[f"- {authors.NUMERICS}"]
    assert "`use_liger_kernel`" in lines[f"- {authors.NUMERICS}"]
    faithful = label_run({**effective_settings(*paper_run(), 2), **AUTHORS_FACTS})
    assert "Faithful to the authors' run" in deviations_text(faithful)
    assert "Same settings" in deviations_text({"paper_deviations": {}, "faithful_to_paper": True})
