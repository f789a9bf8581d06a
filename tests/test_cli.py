"""The command line: --help on every command, and clear errors."""

from __future__ import annotations

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from medinjection.cli import app

runner = CliRunner()


def all_commands(command, prefix: tuple[str, ...] = ()):
    yield prefix
    if hasattr(command, "commands"):  # a group (typer vendors its own click)
        for name, sub in command.commands.items():
            yield from all_commands(sub, (*prefix, name))


@pytest.mark.parametrize(
    "path", list(all_commands(get_command(app))), ids=lambda p: " ".join(p) or "medinjection"
)
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_build_names_a_missing_source(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"name: x\nsources:\n  - adapter: frenchmedmcqa\n    path: {tmp_path / 'absent'}\n")
    result = runner.invoke(app, ["build", str(config), "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "absent" in result.output and "frenchmedmcqa" in result.output


def test_build_names_an_unknown_adapter(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("name: x\nsources:\n  - adapter: nosuch\n    path: .\n")
    result = runner.invoke(app, ["build", str(config), "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "nosuch" in result.output and "frenchmedmcqa" in result.output


def test_demo_builds_the_dataset_its_mixes_and_cards(demo_run, monkeypatch):
    """The Quickstart's main job, from a fresh folder: every config loads by name from the current directory."""
    import datasets
    from huggingface_hub import DatasetCard

    demo_run.check()
    monkeypatch.chdir(demo_run.cwd)
    folder = demo_run.cwd / "medinjection-fr"
    sizes = {}
    for name in (
        "native",
        "translated",
        "synthetic",
        "nat",
        "trad",
        "syn",
        "nat_trad",
        "nat_syn",
        "trad_syn",
        "all",
    ):
        loaded = datasets.load_dataset("medinjection-fr", name)
        assert set(loaded) == {"train", "validation", "test"}, name
        sizes[name] = loaded["train"].num_rows
    assert len({sizes[m] for m in ("nat", "trad", "syn", "nat_trad", "nat_syn", "trad_syn", "all")}) == 1
    card = DatasetCard.load(folder / "README.md")
    assert {c["config_name"] for c in card.data.configs} >= {"native", "nat_trad", "all"}
    for subset in ("native", "translated", "synthetic"):
        assert (folder / "cards" / f"{subset}.md").is_file()
