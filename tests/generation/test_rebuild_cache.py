"""Paid LLM answers survive the documented review -> exclusion list -> rebuild loop: the default
cache lives outside the build folder, so ``--overwrite`` with a changed filter sends no request for
items answered before; and changing only the executor (type, tasks, workers) needs no --overwrite.
Requests are counted at a real local HTTP server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from gen_configs import write_config, write_mmlu_csv
from gen_fault_server import NumberedServer

from medinjection.core.config import load_build_config
from medinjection.dataset_builders.build import BuildError, build
from medinjection.dataset_builders.generate import CACHE_ENV, cache_path, default_cache_path
from medinjection.dataset_builders.generation.cache import ResponseCache

N = 12
FAST = {"dedup": {"enabled": False}, "decontamination": {"enabled": False}}


def ids(root: Path) -> list[str]:
    return sorted(r["id"] for p in root.glob("data/*/*.parquet") for r in pq.read_table(p).to_pylist())


def digest(root: Path) -> dict[str, str]:
    files = [*root.glob("data/*/*.parquet"), *root.glob("rejects/*/*.jsonl"), root / "stats.json"]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(files)}


@pytest.fixture
def user_cache(tmp_path, monkeypatch) -> Path:
    """The default cache (no ``cache:`` in the config), pointed at a fresh file for this test."""
    path = tmp_path / "user-cache" / "generation-cache.sqlite"
    monkeypatch.setenv(CACHE_ENV, str(path))
    return path


def config_file(folder: Path, url: str, **top) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(
        folder,
        url,
        [{"adapter": "mmlu_medical", "path": str(write_mmlu_csv(folder / "en", N))}],
        cache=False,
        top={**FAST, **top},
    )


def edit(path: Path, **changes) -> None:
    config = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(yaml.safe_dump(config))


def test_default_cache_is_outside_the_build_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "medinjection" / "generation-cache.sqlite"
    config = load_build_config(config_file(tmp_path / "c", "http://127.0.0.1:9/v1"))
    assert cache_path(config, "translate") == default_cache_path()


def test_overwrite_with_a_changed_filter_sends_no_request(tmp_path, user_cache):
    with NumberedServer(lambda number, attempt: "ok") as server:
        path = config_file(tmp_path, server.url)
        root = build(load_build_config(path), tmp_path / "out", progress=False)
        assert server.asked() == set(range(N)) and user_cache.is_file()
        assert not user_cache.is_relative_to(root)
        first = ids(root)
        asked = dict(server.requests)

        # the review loop: an exclusion list, then a stricter language filter; each needs --overwrite
        excluded = tmp_path / "excluded_ids.txt"
        excluded.write_text(first[0] + "\n")
        edit(path, **{"filters.review": [str(excluded)]})
        with pytest.raises(BuildError, match="another config"):
            build(load_build_config(path), root, progress=False)
        build(load_build_config(path), root, overwrite=True, progress=False)
        assert ids(root) == first[1:]
        edit(path, **{"filters.language.threshold": 0.6})
        build(load_build_config(path), root, overwrite=True, progress=False)
        assert dict(server.requests) == asked  # not one request for items answered before
    usage = [json.loads(p.read_text()) for p in (root / "_build" / "usage").glob("*.json")]
    assert sum(u["requests"] for u in usage) == 0 and sum(u["cache_hits"] for u in usage) == N


def test_changing_only_the_executor_needs_no_overwrite(tmp_path, user_cache):
    with NumberedServer(lambda number, attempt: "ok") as server:
        path = config_file(tmp_path, server.url)
        root = build(load_build_config(path), tmp_path / "out", progress=False)
        before, kept = digest(root), ids(root)
        completions = sorted((root / "_build" / "logs").glob("*/completions/*"))
        stamps = {p: p.stat().st_mtime_ns for p in completions}

        # a finished build: another task count, worker count or executor type redoes nothing
        edit(path, **{"executor.tasks": 3, "executor.workers": 2})
        build(load_build_config(path), root, progress=False)
        build(load_build_config(path), root, tasks=2, workers=1, progress=False)
        assert {p: p.stat().st_mtime_ns for p in completions} == stamps
        assert digest(root) == before

        # an unfinished one cannot be resumed by another task count: it starts again, from the cache
        (root / "_build" / "logs" / "finalize" / "completions" / "00000").unlink()
        (root / "stats.json").unlink()
        asked = dict(server.requests)
        build(load_build_config(path), root, tasks=2, workers=1, progress=False)
        assert dict(server.requests) == asked
    assert sorted(p.name for p in (root / "_build" / "logs" / "prepare" / "completions").iterdir()) == [
        "00000",
        "00001",
    ]
    assert ids(root) == kept and len(kept) == N


def test_overwrite_keeps_a_cache_an_earlier_version_left_in_build(tmp_path, user_cache):
    """Earlier versions kept the cache in ``_build/``: ``--overwrite`` moves its answers first."""
    with NumberedServer(lambda number, attempt: "ok") as server:
        path = config_file(tmp_path, server.url)
        root = build(load_build_config(path), tmp_path / "out", progress=False)
        old = root / "_build" / "generation-cache.sqlite"
        user_cache.rename(old)  # as an earlier version would have left it
        asked = dict(server.requests)
        edit(path, **{"filters.language.threshold": 0.6})
        build(load_build_config(path), root, overwrite=True, progress=False)
        assert dict(server.requests) == asked
    assert not old.exists() and len(ResponseCache(user_cache)) == N
