"""Fixtures for the quality tests: one real local Argilla server for the whole session.

``argilla_server`` (session): a dict describing a running argilla-server 2.8 started by
``LocalArgilla`` (Debian's redis-server, the server venv, SQLite, the ``medinjection-sql`` search
engine) with an owner and two annotators in one workspace::

    {"url": "http://127.0.0.1:PORT", "owner_api_key": ..., "owner_password": ..., "workspace": "review",
     "annotators": [{"username": "annotator1", "password": ..., "api_key": ...}, {...annotator2...}],
     "server": <LocalArgilla>, "start_seconds": 9.8}

It skips (fails in CI, ``MEDINJECTION_REQUIRE_ALL=1``) when redis-server is missing, and installs the
server venv from PyPI when missing (``$MEDINJECTION_ARGILLA_HOME`` or ``~/.cache/medinjection``).
The server data lives in a session temporary folder; the server is stopped at the end of the session,
and on a failed start nothing is left running.

``argilla_client`` (session): an ``argilla.Argilla`` client logged in as the owner.

``chromium``: the path of Debian's chromium for the browser test (with the playwright driver
installed), or a skip (fail in CI) saying what is missing. No browser is ever downloaded.

Tests share the server: give each dataset a unique name.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


def _root_conftest():
    # tests/ is not a package and pytest imports every conftest.py as ``conftest``: load the shared
    # helpers (``require``) from their file.
    path = Path(__file__).resolve().parents[1] / "conftest.py"
    spec = importlib.util.spec_from_file_location("medinjection_tests_root_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


require = _root_conftest().require


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from medinjection.quality.server import LocalArgilla, ServerError

    require(
        shutil.which("redis-server") is not None,
        "redis-server not found (Debian: apt-get install redis-server; see .ci/provision)",
    )
    server = LocalArgilla(
        tmp_path_factory.mktemp("argilla"), n_annotators=2, install_if_missing=True, timeout=240
    )
    try:
        server.start()
    except ServerError as err:
        server.stop()
        pytest.fail(f"the local Argilla server did not start: {err}")
    try:
        yield {
            "url": server.url,
            "owner_api_key": server.owner_api_key,
            "owner_password": server.owner_password,
            "workspace": server.workspace,
            "annotators": [
                {"username": a.username, "password": a.password, "api_key": a.api_key}
                for a in server.annotators
            ],
            "server": server,
            "start_seconds": server.state.start_seconds,
        }
    finally:
        server.stop()


@pytest.fixture(scope="session")
def argilla_client(argilla_server: dict):
    import argilla as rg

    return rg.Argilla(api_url=argilla_server["url"], api_key=argilla_server["owner_api_key"], timeout=60)


@pytest.fixture(scope="session")
def chromium() -> Path:
    path = Path("/usr/bin/chromium")
    require(path.exists(), f"{path} not found (Debian: apt-get install chromium; see .ci/provision)")
    require(
        importlib.util.find_spec("playwright") is not None,
        "the playwright driver is not installed (pip install -e '.[test]'; never `playwright install`)",
    )
    return path
