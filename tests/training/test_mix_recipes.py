"""Recipes for any mix file: one TRL recipe per config of the file, parsed by TRL's parser, trained by
`medinjection train` on that config, whose manifest then carries the mix's weights and size."""

from __future__ import annotations

import shutil

import pytest
import yaml
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.dataset_builders.mixes import build_mixes
from medinjection.training.arguments import parse_args
from medinjection.training.recipe_files import RecipeError, mix_configs, render, write_mix_recipes


def test_a_recipe_per_config_in_the_files_order(tmp_path):
    assert mix_configs("ratios") == [f"nat_trad_{r}_{s}" for r in ("1to1", "1to3") for s in (8, 16, 24)]
    paths = write_mix_recipes("ratios", "qwen3-4b-instruct-2507", tmp_path / "ratios")
    assert [p.name for p in paths] == [f"{c}.yaml" for c in mix_configs("ratios")] + ["train_mixes.sbatch"]
    for path, config in zip(paths, mix_configs("ratios"), strict=False):
        recipe = yaml.safe_load(path.read_text())
        assert (
            recipe["dataset_config"] == config
            and recipe["output_dir"] == f"runs/qwen3-4b-instruct-2507/{config}"
        )
        # the same settings as the paper's recipes, only the mix differs
        paper = yaml.safe_load(render("qwen3-4b-instruct-2507", "nat_trad"))
        assert {k: v for k, v in recipe.items() if k not in ("dataset_config", "output_dir")} == {
            k: v for k, v in paper.items() if k not in ("dataset_config", "output_dir")
        }
        script, training, model = parse_args(["--config", str(path), "--bf16", "false"])
        assert script.dataset_config == config and model.use_dora
    sbatch = (tmp_path / "ratios" / "train_mixes.sbatch").read_text()
    assert "MIXES=(" + " ".join(mix_configs("ratios")) + ")" in sbatch and "#SBATCH --array=0-5" in sbatch
    with pytest.raises(RecipeError, match="no bundled mix file"):
        mix_configs("nosuch")


def test_a_config_of_a_ratio_file_trains_and_its_manifest_says_the_mix(demo_dataset, tiny_model, tmp_path):
    from medinjection.training.run import train

    root = tmp_path / "medinjection-fr"
    shutil.copytree(demo_dataset, root, ignore=shutil.ignore_patterns("_build", "rejects"))
    build_mixes(root, mixes="ratios")
    result = CliRunner().invoke(
        app, ["recipes", "--mixes", "ratios", "--family", "tiny", "-o", str(tmp_path / "r")]
    )
    assert result.exit_code == 0 and "wrote 6 tiny recipes" in result.output
    argv = [
        "--config", str(tmp_path / "r" / "nat_trad_1to3_8.yaml"), "--dataset_name", str(root),
        "--model_name_or_path", str(tiny_model), "--output_dir", str(tmp_path / "run"), "--num_train_epochs", "1",
    ]  # fmt: skip
    layout = train(*parse_args(argv))
    mix = layout.manifest()["mix"]
    assert mix["name"] == "nat_trad_1to3_8" and mix["size"] == 8
    assert (
        mix["entry"]["weights"] == {"native": 1.0, "translated": 3.0}
        and mix["entry"]["nested_in"] == "nat_trad_1to3_16"
    )
