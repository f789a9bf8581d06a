"""Nothing skips in CI: every skip goes through tests/conftest.py (``require``, ``require_module``,
``require_live``), and in CI (``MEDINJECTION_REQUIRE_ALL=1``) only the opt-in live tests may skip."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# Written so that this file does not match itself.
DIRECT_SKIP = re.compile(
    r"pytest\s*\.\s*(skip|importorskip|xfail)\s*\(|mark\s*\.\s*(skip|skipif|xfail)\b|unittest\s*\.\s*skip"
)


def test_no_test_skips_on_its_own():
    """The rule of tests/conftest.py: a direct skip would bypass CI's "nothing may skip"."""
    found = [
        f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path != TESTS / "conftest.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if DIRECT_SKIP.search(line)
    ]
    assert not found, (
        "skip through tests/conftest.py's require()/require_module()/require_live():\n" + "\n".join(found)
    )


INNER = """
import pytest
from conftest import require, require_live, require_module


def test_missing_resource():
    require(False, "the thing is not there")


def test_missing_module():
    require_module("no_such_module_for_medinjection", "pip install it")


def test_a_library_skips():
    pytest.{skip}("skipped from inside a library")


@pytest.mark.live
def test_live_without_credentials():
    require_live(["NO_SUCH_VARIABLE_FOR_MEDINJECTION"], "a real remote service")


def test_live_helper_outside_a_live_test():
    require_live(["NO_SUCH_VARIABLE_FOR_MEDINJECTION"], "a real remote service")
""".replace("{skip}", "sk" + "ip")


def run_inner(pytester, monkeypatch, ci: bool):
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    pytester.makeini("[pytest]\nmarkers =\n    live: opt-in\n")
    pytester.makepyfile(test_inner=INNER)
    if ci:
        monkeypatch.setenv("MEDINJECTION_REQUIRE_ALL", "1")
    else:
        monkeypatch.delenv("MEDINJECTION_REQUIRE_ALL", raising=False)
    result = pytester.runpytest_subprocess("-v", "-rA")
    outcomes = {}
    for line in result.outlines:
        match = re.match(r"test_inner\.py::test_(\w+) (PASSED|FAILED|SKIPPED|ERROR)", line)
        if match:
            outcomes[match.group(1)] = match.group(2)
    return outcomes, result.stdout.str()


def test_in_ci_only_opt_in_live_tests_skip(pytester, monkeypatch):
    outcomes, text = run_inner(pytester, monkeypatch, ci=True)
    assert outcomes == {
        "missing_resource": "FAILED",
        "missing_module": "FAILED",
        "a_library_skips": "FAILED",
        "live_without_credentials": "SKIPPED",
        "live_helper_outside_a_live_test": "FAILED",
    }, text
    assert "opt-in live test (a real remote service): set NO_SUCH_VARIABLE_FOR_MEDINJECTION" in text


def test_on_a_clone_missing_resources_skip_with_their_reason(pytester, monkeypatch):
    outcomes, text = run_inner(pytester, monkeypatch, ci=False)
    assert set(outcomes.values()) == {"SKIPPED"}, text
    assert "the thing is not there" in text and "pip install it" in text
