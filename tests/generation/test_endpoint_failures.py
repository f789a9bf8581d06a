"""A broken LLM endpoint never gives a "successful" build: 401/403/404 stop the stage naming the
endpoint and the model (never the key), a failure rate above the threshold stops it, a task with
unanswered items is not marked complete and a rerun asks exactly those, and there is no silent
default endpoint. Requests are counted at a real local HTTP server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gen_configs import write_config, write_mmlu_csv
from gen_fault_server import NumberedServer

from medinjection.core.config import ConfigError, load_build_config
from medinjection.dataset_builders.build import build
from medinjection.dataset_builders.generate import run_generation
from medinjection.dataset_builders.generation.backends import EndpointError, StageStopped

KEY = "sk-test-SENTINEL-0123456789"
FAST = {"dedup": {"enabled": False}, "decontamination": {"enabled": False}}


def translated_rows(root: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return [r for p in sorted(root.glob("data/translated/*.parquet")) for r in pq.read_table(p).to_pylist()]


def item_numbers(rows: list[dict]) -> set[int]:
    return {int(r["original"]["instruction"].split("item number ")[1].split()[0]) for r in rows}


def config_for(folder: Path, url: str, n: int, **translate):
    path = write_config(
        folder,
        url,
        [{"adapter": "mmlu_medical", "path": str(write_mmlu_csv(folder / "en", n))}],
        translate={"max_failure_rate": 0.5, **translate},
        top=FAST,
        concurrency=2,
        max_retries=2,
    )
    return load_build_config(path)


@pytest.mark.parametrize("status", ["401", "404"])
def test_refused_endpoint_stops_the_stage_and_a_rerun_asks_only_the_rest(tmp_path, monkeypatch, status):
    """The key is revoked (401) or the model removed (404) after 6 answers: the build stops naming the
    endpoint and the model, not the key; once fixed, a rerun of the same folder asks only the others."""
    n = 20
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    state = {"broken": True}

    def plan(number: int, attempt: int) -> str:
        return status if state["broken"] and number >= 6 else "ok"

    with NumberedServer(plan) as server:
        config = config_for(tmp_path, server.url, n)
        with pytest.raises(EndpointError) as caught:
            build(config, tmp_path / "out", progress=False, logs_to_file=True)
        message = str(caught.value)
        assert f"{server.url}/chat/completions answered HTTP {status}" in message
        assert "'test-model'" in message and "translate" in message
        assert KEY not in message  # the server quoted the key; the message does not
        log = (tmp_path / "out" / "_build" / "build.log").read_text()
        assert f"HTTP {status}" in log and KEY not in log
        assert not list((tmp_path / "out" / "_build" / "logs" / "translate").glob("completions/*"))
        # stopped at the first refusal: the other items were not asked (the 2 slots may have been busy)
        assert len(server.asked() - set(range(6))) <= 2
        before = dict(server.requests)

        state["broken"] = False
        root = build(config, tmp_path / "out", progress=False)
    asked_again = server.asked(before)
    assert not asked_again & set(range(6))  # answered before the stop: from the cache
    assert asked_again == set(range(6, n))  # the refused ones and those never asked
    assert item_numbers(translated_rows(root)) == set(range(n))


def test_unanswered_items_leave_the_task_incomplete_and_are_asked_again(tmp_path):
    """Items 3 and 11 never get an answer (500 after every retry): the other items are all answered
    and cached, the task is not marked complete, the build stops saying so; after the server is
    fixed, the rerun asks exactly those two."""
    n = 16
    state = {"broken": True}

    def plan(number: int, attempt: int) -> str:
        return "500" if state["broken"] and number in (3, 11) else "ok"

    with NumberedServer(plan) as server:
        config = config_for(tmp_path, server.url, n)
        with pytest.raises(StageStopped, match=r"translate \(task 0\): 2 requests got no answer"):
            build(config, tmp_path / "out", progress=False)
        assert server.asked() == set(range(n))
        assert not list((tmp_path / "out" / "_build" / "logs" / "translate").glob("completions/*"))
        assert not (tmp_path / "out" / "stats.json").exists()
        before = dict(server.requests)

        state["broken"] = False
        root = build(config, tmp_path / "out", progress=False)
    assert server.asked(before) == {3, 11}
    assert item_numbers(translated_rows(root)) == set(range(n))
    stats = json.loads((root / "stats.json").read_text())
    assert "generation_failed" not in stats["rejects"]


def test_failure_rate_above_the_threshold_stops_early(tmp_path):
    """Every request fails: the stage stops after about 20 of 80, not after asking all of them."""
    n = 80
    with NumberedServer(lambda number, attempt: "500") as server:
        config = config_for(tmp_path, server.url, n, max_failure_rate=0.2)
        with pytest.raises(StageStopped, match="more than max_failure_rate 0.2"):
            run_generation(config, "translate", tmp_path / "out")
    assert 20 <= len(server.asked()) <= 22  # RATE_AFTER, plus the second slot in flight


def test_a_refused_request_rejects_its_item_and_the_run_goes_on(tmp_path):
    """A 400 (the server refuses one prompt) is not retried: that item is rejected with the server's
    reason, the others are translated, and the task completes."""
    n = 10
    with NumberedServer(lambda number, attempt: "400" if number == 3 else "ok") as server:
        config = config_for(tmp_path, server.url, n)
        run_generation(config, "translate", tmp_path / "out")
    assert server.asked() == set(range(n))
    assert sum(v for k, v in server.requests.items() if server.numbers[k] == 3) == 1
    rejects = [
        json.loads(line)
        for p in (tmp_path / "out" / "rejects" / "translate").glob("*.jsonl")
        for line in p.read_text().splitlines()
    ]
    assert [(r["reason"], "HTTP 400" in r["detail"] and "not retried" in r["detail"]) for r in rejects] == [
        ("generation_failed", True)
    ]


def test_no_silent_default_endpoint(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    config = config_for(tmp_path, None, 4)
    with pytest.raises(ConfigError, match=r"translate\.backend .*no endpoint.*OPENAI_BASE_URL"):
        build(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()  # stopped before any work
    with NumberedServer(lambda number, attempt: "ok") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        run_generation(config, "translate", tmp_path / "gen")
    assert server.asked() == set(range(4))


def test_the_command_prints_the_error_in_full(tmp_path, monkeypatch):
    """`medinjection build` (a real process) on a 401 endpoint: the whole message, endpoint and
    model named, the key not, and where datatrove's log is; exit code 1."""
    import subprocess
    import sys

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with NumberedServer(lambda number, attempt: "401") as server:
        config_for(tmp_path, server.url, 4)
        run = subprocess.run(
            [sys.executable, "-m", "medinjection.cli", "build", "config.yaml", "--output", "out"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert run.returncode == 1, run.stdout + run.stderr
    error = run.stderr[run.stderr.index("error: ") :]
    assert error.startswith(f"error: translate (task 0): {server.url}/chat/completions answered HTTP 401")
    assert "for model 'test-model': the API key was refused: check $OPENAI_API_KEY" in error
    assert "run the same command again to ask only the items without an answer" in error
    assert f"datatrove's log: {(tmp_path / 'out' / '_build' / 'build.log').resolve()}" in error
    assert KEY not in run.stdout + run.stderr
    assert "[1/5] translate" in run.stdout and run.stdout.rstrip().endswith("failed")
