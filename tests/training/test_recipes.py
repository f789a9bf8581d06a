"""The recipe YAMLs and the Slurm array: generated from the one definition of the authors' settings and the
one list of mixes, read by TRL's own `trl sft` parser into the authors' settings, differing only in the mix
and the output folder; unknown keys fail; whether a recipe is the authors' comes from what it says."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medinjection.dataset_builders.mixes import MIXES
from medinjection.training import authors
from medinjection.training.arguments import effective_settings, parse_args
from medinjection.training.authors import PROJECTIONS
from medinjection.training.recipe_files import (
    FAMILIES,
    SECTIONS,
    RecipeError,
    declared_settings,
    recipe_path,
    render,
    render_sbatch,
)

REPO = Path(__file__).resolve().parents[2]
FAMILY = "qwen3-4b-instruct-2507"


def trl_sft_parse(path: Path, *overrides: str):
    """Parse with the parser `trl sft` itself builds (trl/scripts/sft.py make_parser)."""
    from trl.scripts.sft import make_parser

    return make_parser().parse_args_and_config(["--config", str(path), *overrides])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_files_on_disk_are_the_generated_ones(family):
    for mix in MIXES:
        path = REPO / "trl_configs" / family / f"{mix}.yaml"
        assert path.read_text(encoding="utf-8") == render(family, mix), (
            f"{path} drifted from authors.py: run python -m medinjection.training.recipe_files"
        )
        assert recipe_path(family, mix).resolve() == path.resolve()


def test_the_slurm_array_on_disk_is_generated_from_the_list_of_mixes():
    path = REPO / "recipes" / "slurm" / "train_mixes.sbatch"
    assert path.read_text(encoding="utf-8") == render_sbatch(), (
        f"{path} drifted from MIXES: run python -m medinjection.training.recipe_files"
    )
    text = render_sbatch()
    assert f"MIXES=({' '.join(MIXES)})" in text and f"#SBATCH --array=0-{len(MIXES) - 1}" in text


def test_every_recipe_key_of_the_authors_is_placed_and_written_from_their_value():
    placed = {key for keys in SECTIONS.values() for key in keys}
    assert set(authors.RECIPE_KEYS) <= placed
    paper = yaml.safe_load(render(FAMILY, "nat"))
    ours = set(FAMILIES[FAMILY].ours)
    for setting in authors.AUTHORS:
        if setting.section and setting.name not in ours:
            if setting.value is None:
                assert setting.name not in paper
            else:
                assert authors.value_of(paper[setting.name]) == authors.value_of(setting.value), setting.name
    tiny = yaml.safe_load(render("tiny", "nat"))
    for setting in authors.AUTHORS:  # the tiny family changes some trainer settings, never the adapter
        if setting.section and setting.name not in FAMILIES["tiny"].changes and setting.value is not None:
            assert authors.value_of(tiny[setting.name]) == authors.value_of(setting.value), setting.name
    assert "the authors': 0.0001" in render("tiny", "nat")  # a changed setting says what theirs is


def test_the_recipes_follow_the_one_definition(monkeypatch):
    """Generated, not copied: a change to the authors' settings reaches every family's recipe."""
    import dataclasses

    import medinjection.training.recipe_files as recipe_files

    changed = dataclasses.replace(authors.BY_NAME["lora_dropout"], value=0.1)
    monkeypatch.setitem(recipe_files.BY_NAME, "lora_dropout", changed)
    for family in FAMILIES:
        assert yaml.safe_load(render(family, "nat"))["lora_dropout"] == 0.1


@pytest.mark.parametrize("family", sorted(FAMILIES))
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
    differ = authors.differences(settings)
    # on the authors' 2 GPUs, the only recipe key that differs is ours: how many checkpoints are kept
    recipe_keys = {name for name in differ if authors.BY_NAME[name].section}
    assert recipe_keys == {"save_total_limit"} and differ["save_total_limit"]["kind"] == authors.SAME_MATHS
    assert settings["effective_batch"] == 192 and settings["length_group_size"] == 96
    assert authors.is_authors_recipe(declared_settings(REPO / "trl_configs" / FAMILY / f"{mix}.yaml"))
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
    assert training_args.per_device_eval_batch_size == 12
    assert str(training_args.save_strategy.value) == "steps" and training_args.save_steps == 50
    assert training_args.load_best_model_at_end is False and str(training_args.optim.value) == "adamw_torch"
    assert training_args.output_dir == f"runs/{FAMILY}/{mix}"
    assert len(model_args.model_revision) == 40  # a pinned commit, not a branch


def test_the_authors_settings_are_those_of_the_paper_notes():
    """The authors' run of ../shared/docs/paper-notes.md ("The authors' released scripts"), in the installed
    libraries' names."""
    value = authors.authors_value
    assert (value("lora_r"), value("lora_alpha"), value("lora_dropout")) == (16, 16, 0.05)
    assert value("effective_batch") == 192 == value("per_device_train_batch_size") * 8 * value("world_size")
    assert value("length_group_size") == 12 * 8 and value("warmup_steps") == 0.05
    assert value("loss") == "full" and value("packing") is False and value("resize_token_embeddings") is True
    assert value("save_steps") == 50 and value("per_device_eval_batch_size") == 12 and value("seed") == 42
    assert value("train_types") == ["MCQ", "MCQU"] and value("train_examples") == 33_493
    assert {s.kind_of(s.value) for s in authors.AUTHORS} == set(authors.KINDS)


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


def test_every_family_trains_the_authors_adapter():
    adapter_keys = {s.name for s in authors.AUTHORS if s.section == "adapter"}
    assert adapter_keys == {
        "use_peft",
        "use_dora",
        "lora_r",
        "lora_alpha",
        "lora_dropout",
        "lora_target_modules",
    }
    for family in FAMILIES:
        assert not adapter_keys & set(FAMILIES[family].changes), family
        config = yaml.safe_load(render(family, "nat"))
        for key in adapter_keys:
            assert authors.value_of(config[key]) == authors.value_of(authors.authors_value(key)), (
                family,
                key,
            )


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
    assert batch["value"] == 192 == authors.authors_value("effective_batch") and batch["warning"] is None
    assert "authors'" in batch["source"] and "effective batch" not in caplog.text


def test_a_paper_recipe_at_another_effective_batch_is_warned_about(caplog):
    from medinjection.training.run import TrainError, resolve_effective_batch

    script_args, training_args, _ = paper_args("--gradient_accumulation_steps", "4")
    batch = resolve_effective_batch(script_args, training_args, 1)
    assert training_args.gradient_accumulation_steps == 4 and batch["value"] == 48
    assert "--effective_batch 192" in batch["warning"] and batch["warning"] in caplog.text
    assert "not the authors' 192" in batch["warning"]
    script_args, training_args, _ = paper_args("--effective_batch", "96")
    assert resolve_effective_batch(script_args, training_args, 1)["value"] == 96
    assert training_args.gradient_accumulation_steps == 8
    script_args, training_args, _ = paper_args()
    with pytest.raises(TrainError, match=r"192 \(the authors'.*5 process\(es\).*--effective_batch N"):
        resolve_effective_batch(script_args, training_args, 5)


def test_other_recipes_keep_their_accumulation():
    from medinjection.training.run import resolve_effective_batch

    tiny = REPO / "trl_configs" / "tiny" / "nat.yaml"
    script_args, training_args, _ = parse_args(["--config", str(tiny)])
    batch = resolve_effective_batch(script_args, training_args, 1)
    assert training_args.gradient_accumulation_steps == 1 and batch == {
        "value": 4,
        "source": "the recipe's gradient_accumulation_steps",
        "authors": None,
        "warning": None,
    }


def test_whether_a_recipe_is_the_authors_comes_from_what_it_says_not_where_it_lies(tmp_path):
    from medinjection.training.run import resolve_effective_batch

    text = (REPO / "trl_configs" / FAMILY / "nat.yaml").read_text()
    anywhere = tmp_path / "my-recipes" / "nat.yaml"  # a copy under any name is still the authors' recipe
    anywhere.parent.mkdir()
    anywhere.write_text(text)
    script_args, training_args, _ = paper_args(recipe=anywhere)
    assert resolve_effective_batch(script_args, training_args, 1)["value"] == 192
    # numerics do not make it another recipe: sdpa and a per-device batch of 6 still train their run
    numerics = tmp_path / "numerics.yaml"
    numerics.write_text(
        text.replace("attn_implementation: flash_attention_2", "attn_implementation: sdpa").replace(
            "per_device_train_batch_size: 12", "per_device_train_batch_size: 6"
        )
    )
    script_args, training_args, _ = paper_args(recipe=numerics)
    batch = resolve_effective_batch(script_args, training_args, 2)
    assert batch["value"] == 192 and training_args.gradient_accumulation_steps == 16
    # another learning rate, in a folder named like the paper family, is not the authors' recipe
    other = tmp_path / FAMILY / "nat.yaml"
    other.parent.mkdir()
    other.write_text(text.replace("learning_rate: 0.0001", "learning_rate: 0.0002"))
    assert not authors.is_authors_recipe(declared_settings(other))
    script_args, training_args, _ = paper_args(recipe=other)
    batch = resolve_effective_batch(script_args, training_args, 1)
    assert batch["value"] == 96 and batch["authors"] is None and batch["warning"] is None
    # a key left out takes TRL's default: without `packing` the recipe is still theirs (packing off)
    omitted = tmp_path / "omitted.yaml"
    omitted.write_text(text.replace("packing: false\n", ""))
    assert "packing" not in yaml.safe_load(omitted.read_text())
    assert authors.is_authors_recipe(declared_settings(omitted))
