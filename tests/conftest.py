"""Shared test helpers, and the one rule for skipping.

**The rule** (for every test under ``tests/``): never call ``pytest.skip``, ``pytest.importorskip``,
``pytest.xfail`` or ``@pytest.mark.skip``/``skipif`` directly. Ask for what the test needs here:

- ``require(condition, reason)``: a resource (the real data in ``../shared/data``, a system service
  such as Redis or Chromium); ``reason`` says what is missing and how to get it;
- ``require_module(name, reason)``: an optional package; returns the imported module;
- ``require_live(variables, what)``: only in an opt-in live test (``@pytest.mark.live``: a real
  remote service with the user's credentials), skipped unless every variable is set.

On a user's clone a missing resource skips with its reason. In CI (``MEDINJECTION_REQUIRE_ALL=1``,
set by ``.ci/run``) ``require`` and ``require_module`` fail instead, and any other skip (a direct
call, a marker, a skip inside a library) is turned into a failure by ``pytest_runtest_makereport``
below: the opt-in live tests are the only tests that may skip there, and their reason says so.
``tests/test_skips.py`` fails on a direct skip call anywhere under ``tests/``.

All three are also fixtures of the same name, for tests and fixtures in other folders (a second
``conftest`` module cannot be imported by name).

The session's LLM response cache is a fresh file (``MEDINJECTION_GENERATION_CACHE``), so tests
never read or fill the user's ``~/.cache/medinjection`` one and request counts start from zero.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

import pytest

pytest_plugins = ["pytester"]  # tests/test_skips.py runs the rule above in an inner session

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDINJECTION_SHARED_DATA", REPO.parent / "shared" / "data"))
REQUIRE_ALL = os.environ.get("MEDINJECTION_REQUIRE_ALL") == "1"
_SESSION_CACHE: list[str] = []


def in_ci() -> bool:
    return os.environ.get("MEDINJECTION_REQUIRE_ALL") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip (fail in CI) unless ``condition``; ``reason`` says what is missing and how to get it."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required resource missing in CI: {reason}")
    pytest.skip(reason)


def require_module(name: str, reason: str) -> ModuleType:
    """The module ``name``; skip (fail in CI) with ``reason`` (the ``pip install`` to run) when absent."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        require(False, f"{reason} ({err})")
        raise  # pragma: no cover - require() has raised


def require_live(variables: Iterable[str], what: str) -> dict[str, str]:
    """In a ``@pytest.mark.live`` test: the values of ``variables``, or an opt-in skip naming them."""
    variables = list(variables)
    missing = [name for name in variables if not os.environ.get(name)]
    if missing:
        # pytest's own skip, marked: the CI hook below lets only this one through (an attribute, not
        # a subclass: some tests load this file a second time, as another module)
        skip = pytest.skip.Exception(f"opt-in live test ({what}): set {' and '.join(missing)} to run it")
        skip.live_opt_in = True
        raise skip
    return {name: os.environ[name] for name in variables}


@pytest.fixture(name="require", scope="session")
def require_fixture() -> Callable[[bool, str], None]:
    return require


@pytest.fixture(name="require_module", scope="session")
def require_module_fixture() -> Callable[[str, str], ModuleType]:
    return require_module


@pytest.fixture(name="require_live", scope="session")
def require_live_fixture() -> Callable[[Iterable[str], str], dict[str, str]]:
    return require_live


@pytest.fixture(scope="session")
def shared_data() -> Path:
    require(
        (SHARED_DATA / "frenchmedmcqa").is_dir(),
        f"real shared data not found at {SHARED_DATA} (clone beside ../shared/data or set MEDINJECTION_SHARED_DATA)",
    )
    return SHARED_DATA


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """In CI, a skip is a failure unless it is ``require_live``'s in a ``live`` test."""
    outcome = yield
    report = outcome.get_result()
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    live = item.get_closest_marker("live") is not None
    if live and call.excinfo is not None and getattr(call.excinfo.value, "live_opt_in", False):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"skipped in CI (MEDINJECTION_REQUIRE_ALL=1), where nothing may skip: {reason}\n"
        "Ask for resources with require()/require_module() from tests/conftest.py; only "
        "@pytest.mark.live tests may skip, through require_live()."
    )


def pytest_configure(config: pytest.Config) -> None:
    folder = tempfile.mkdtemp(prefix="medinjection-test-cache-")
    _SESSION_CACHE.append(folder)
    os.environ["MEDINJECTION_GENERATION_CACHE"] = str(Path(folder) / "generation-cache.sqlite")


def pytest_unconfigure(config: pytest.Config) -> None:
    for folder in _SESSION_CACHE:
        shutil.rmtree(folder, ignore_errors=True)


class DemoRun:
    """``medinjection demo`` run once per session as a real process in an empty folder (a fresh clone)."""

    def __init__(self, cwd: Path, process):
        self.cwd = cwd
        self.process = process
        self.output = process.stdout + process.stderr

    def check(self) -> None:
        assert self.process.returncode == 0, self.output[-6000:]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """The README's main command, whole loop (data, mixes, training, evaluation, report, publish dry run)."""
    import subprocess
    import sys

    cwd = tmp_path_factory.mktemp("fresh-clone")
    process = subprocess.run(
        [sys.executable, "-m", "medinjection.cli", "demo"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "120"},
    )
    return DemoRun(cwd, process)


def serve_with_transformers(model: Path, tmp_path_factory):
    """A real OpenAI-compatible server, ``transformers serve MODEL`` on a free local port: yields its
    ``/v1`` URL once ``/health`` answers, and stops it after. Use it inside a fixture (``yield from``)."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    require_module("fastapi", "transformers serve needs pip install 'medinjection[serving]'")
    command = shutil.which("transformers") or str(Path(sys.executable).parent / "transformers")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path_factory.mktemp("hub")), "HF_HUB_OFFLINE": "1"}
    log = (tmp_path_factory.mktemp("serve") / "serve.log").open("w")
    process = subprocess.Popen(
        [command, "serve", str(model), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("transformers serve did not start in 90 s: " + Path(log.name).read_text()[-2000:])
        yield f"{url}/v1"
    finally:
        process.terminate()
        process.wait(20)


@pytest.fixture(name="serve_with_transformers", scope="session")
def serve_with_transformers_fixture():
    """``serve_with_transformers`` for the test folders (which cannot import this file by name)."""
    return serve_with_transformers
