"""The recipe YAMLs: generated from one template, read by TRL's own `trl sft` parser into the paper's
settings, differing only in the mix and the output folder; unknown keys fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medinjection.dataset_builders.mixes import MIXES
from medinjection.training.arguments import (
    PAPER,
    PROJECTIONS,
    effective_settings,
    paper_deviations,
    parse_args,
)
from medinjection.training.recipe_files import TEMPLATES, RecipeError, recipe_path, render

REPO = Path(__file__).resolve().parents[2]
FAMILY = "qwen3-4b-instruct-2507"


def trl_sft_parse(path: Path, *overrides: str):
    """Parse with the parser `trl sft` itself builds (trl/scripts/sft.py make_parser)."""
    from trl.scripts.sft import make_parser

    return make_parser().parse_args_and_config(["--config", str(path), *overrides])


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_files_on_disk_are_the_generated_ones(family):
    for mix in MIXES:
        path = REPO / "trl_configs" / family / f"{mix}.yaml"
        assert path.read_text(encoding="utf-8") == render(family, mix), (
            f"{path} drifted from its template: run python -m medinjection.training.recipe_files"
        )
        assert recipe_path(family, mix).resolve() == path.resolve()


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_the_seven_differ_only_in_mix_and_output_dir(family):
    loaded = {
        mix: yaml.safe_load((REPO / "trl_configs" / family / f"{mix}.yaml").read_text()) for mix in MIXES
    }
    reference = loaded["nat"]
    for mix, config in loaded.items():
        assert config["dataset_config"] == mix
        assert config["output_dir"].endswith(f"/{mix}")
        differ = {k for k in reference.keys() | config.keys() if reference.get(k) != config.get(k)}
        assert differ <= {"dataset_config", "output_dir"}, (mix, differ)


@pytest.mark.parametrize("mix", list(MIXES))
def test_paper_recipe_parses_with_trl_sft_into_the_paper_settings(mix):
    # use_cpu: a CPU machine refuses bf16 without it; it changes nothing else that is checked here.
    script_args, training_args, model_args, mixture = trl_sft_parse(
        REPO / "trl_configs" / FAMILY / f"{mix}.yaml", "--use_cpu", "true"
    )
    assert mixture.datasets == []
    assert (script_args.dataset_name, script_args.dataset_config) == ("medinjection-fr", mix)
    assert (script_args.dataset_train_split, script_args.dataset_test_split) == ("train", "validation")
    script_args.loss = "full"  # not a TRL field: the manifest's loss mode of trl sft's run
    settings = effective_settings(script_args, training_args, model_args, world_size=2)
    assert paper_deviations(settings) == {}, paper_deviations(settings)
    # the values, spelled out (not only "equal to PAPER"):
    assert model_args.model_name_or_path == "Qwen/Qwen3-4B-Instruct-2507"
    assert model_args.dtype == "bfloat16" and training_args.bf16 is True
    assert model_args.use_peft and model_args.use_dora
    assert (model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout) == (16, 16, 0.05)
    assert sorted(model_args.lora_target_modules) == sorted(PROJECTIONS)
    assert training_args.num_train_epochs == 10
    assert training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * 2 == 192
    assert training_args.learning_rate == 1e-4
    assert str(training_args.lr_scheduler_type.value) == "cosine"
    assert training_args.warmup_steps == 0.05  # a float below 1 is a ratio in transformers 5
    assert training_args.max_length == 2048
    assert training_args.activation_checkpointing and training_args.gradient_checkpointing
    assert training_args.train_sampling_strategy == "group_by_length"
    assert training_args.pad_to_multiple_of == 8
    assert training_args.seed == 42
    assert str(training_args.eval_strategy.value) == "epoch"
    assert training_args.output_dir == f"runs/{FAMILY}/{mix}"
    assert len(model_args.model_revision) == 40  # a pinned commit, not a branch


def test_paper_table_matches_the_paper_notes():
    """PAPER is the authors' setup of ../shared/docs/paper-notes.md, in the installed library's names."""
    assert PAPER["lora_alpha"] == 16 and PAPER["effective_batch"] == 192 and PAPER["warmup_steps"] == 0.05
    assert PAPER["loss"] == "full" and PAPER["packing"] is False


@pytest.mark.parametrize("mix", ["nat", "all"])
def test_medinjection_train_reads_the_same_files(mix):
    script_args, training_args, model_args = parse_args(
        [
            "--config",
            str(REPO / "trl_configs" / FAMILY / f"{mix}.yaml"),
            "--use_cpu",
            "true",
            "--loss",
            "assistant",
        ]
    )
    assert script_args.recipe_file.endswith(f"{mix}.yaml")
    assert script_args.loss == "assistant" and script_args.speed == "auto"
    assert model_args.lora_alpha == 16 and training_args.max_length == 2048


@pytest.mark.parametrize("mix", list(MIXES))
def test_tiny_recipe_parses_with_both_parsers(mix):
    path = REPO / "trl_configs" / "tiny" / f"{mix}.yaml"
    script_args, training_args, model_args, _ = trl_sft_parse(path)
    assert script_args.dataset_config == mix and training_args.bf16 is False
    assert model_args.use_dora and (model_args.lora_r, model_args.lora_alpha) == (16, 16)
    assert sorted(model_args.lora_target_modules) == sorted(PROJECTIONS)
    ours = parse_args(["--config", str(path)])
    assert ours[1].to_dict() == training_args.to_dict()


def test_unknown_yaml_key_fails_with_its_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "trl_configs" / "tiny" / "nat.yaml").read_text() + "lora_alhpa: 16\n")
    with pytest.raises(ValueError, match="lora_alhpa"):
        parse_args(["--config", str(bad)])


def test_unknown_family_or_mix_lists_the_known_ones():
    with pytest.raises(RecipeError, match="nat_trad"):
        render("tiny", "nat-trad")
    with pytest.raises(RecipeError, match="qwen3-4b-instruct-2507"):
        render("qwen3", "nat")


def test_every_family_takes_the_one_dora_block():
    from medinjection.training.recipe_files import DORA

    adapter_keys = {key.split(":")[0] for key in DORA.splitlines() if key and not key.startswith("#")}
    assert adapter_keys == {
        "use_peft",
        "use_dora",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
    }
    loaded = {}
    for family in TEMPLATES:
        text = render(family, "nat")
        assert DORA in text and text.count("\nlora_alpha:") == 1, family
        loaded[family] = yaml.safe_load(text)
    for key in adapter_keys:
        assert len({repr(config[key]) for config in loaded.values()}) == 1, key


def paper_args(*overrides: str, recipe: Path | None = None):
    return parse_args(
        [
            "--config",
            str(recipe or REPO / "trl_configs" / FAMILY / "nat.yaml"),
            "--use_cpu",
            "true",
            *overrides,
        ]
    )


@pytest.mark.parametrize(("world_size", "accumulation"), [(1, 16), (2, 8), (4, 4), (8, 2)])
def test_a_paper_recipe_keeps_the_papers_effective_batch_on_any_number_of_gpus(
    world_size, accumulation, caplog
):
    from medinjection.training.run import resolve_effective_batch

    script_args, training_args, _ = paper_args()
    batch = resolve_effective_batch(script_args, training_args, world_size)
    assert training_args.gradient_accumulation_steps == accumulation
    assert batch["value"] == 192 == PAPER["effective_batch"] and batch["warning"] is None
    assert "paper" in batch["source"] and "effective batch" not in caplog.text


def test_a_paper_recipe_at_another_effective_batch_is_warned_about(caplog):
    from medinjection.training.run import TrainError, resolve_effective_batch

    script_args, training_args, _ = paper_args("--gradient_accumulation_steps", "4")
    batch = resolve_effective_batch(script_args, training_args, 1)
    assert training_args.gradient_accumulation_steps == 4 and batch["value"] == 48
    assert "--effective_batch 192" in batch["warning"] and batch["warning"] in caplog.text
    script_args, training_args, _ = paper_args("--effective_batch", "96")
    assert resolve_effective_batch(script_args, training_args, 1)["value"] == 96
    assert training_args.gradient_accumulation_steps == 8
    script_args, training_args, _ = paper_args()
    with pytest.raises(TrainError, match=r"192 \(the paper's.*5 process\(es\).*--effective_batch N"):
        resolve_effective_batch(script_args, training_args, 5)


def test_other_recipes_keep_their_accumulation(tmp_path):
    from medinjection.training.recipe_files import recipe_family
    from medinjection.training.run import resolve_effective_batch

    tiny = REPO / "trl_configs" / "tiny" / "nat.yaml"
    script_args, training_args, _ = parse_args(["--config", str(tiny)])
    batch = resolve_effective_batch(script_args, training_args, 1)
    assert training_args.gradient_accumulation_steps == 1 and batch == {
        "value": 4,
        "source": "the recipe's gradient_accumulation_steps",
        "paper": None,
        "warning": None,
    }
    # a copy kept in a folder of the family's name is that family's recipe; elsewhere it is the user's own
    copy = tmp_path / FAMILY / "nat.yaml"
    copy.parent.mkdir()
    copy.write_text((REPO / "trl_configs" / FAMILY / "nat.yaml").read_text())
    assert recipe_family(copy) == FAMILY and recipe_family(tmp_path / "mine.yaml") is None
    script_args, training_args, _ = paper_args(recipe=copy)
    assert resolve_effective_batch(script_args, training_args, 1)["value"] == 192
