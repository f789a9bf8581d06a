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


@pytest.mark.parametrize("path", list(all_commands(get_command(app))), ids=lambda p: " ".join(p) or "medinjection")
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
