"""The README's Quickstart: one code block of exactly two commands, the second of which `.ci/run` runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("## Quickstart\n"), "README.md must begin with ## Quickstart"
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    assert block, "no code block in the Quickstart"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_is_two_commands_main_job_then_tests():
    main, tests = quickstart_commands()
    assert "torch==2.13.0" in main and "torch==2.13.0" in tests  # never a CUDA build of torch
    assert main.endswith("medinjection demo")
    assert tests.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command():
    _, tests = quickstart_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci.splitlines()
    assert "set -euo pipefail" in ci  # a failing test fails CI
