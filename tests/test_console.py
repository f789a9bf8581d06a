"""What the main commands print: the README's `medinjection demo` gives a line per stage and a
summary (well under 150 lines), datatrove's logs go to `_build/build.log`, `--verbose` prints them,
and errors still print in full (tests/generation/test_endpoint_failures.py). Run as real processes, so that datatrove's worker processes write
to the same terminal a user would see."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from medinjection.core.console import Console
from medinjection.dataset_builders.mixes import MIXES

STAGES = (
    "translate",
    "synthesize",
    "prepare",
    "exact_dedup_index",
    "minhash_signatures",
    "minhash_buckets",
    "minhash_clusters",
    "decontamination_index",
    "write",
    "finalize",
)


def medinjection(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medinjection.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )


@pytest.fixture(scope="module")
def demo(demo_run) -> tuple[Path, subprocess.CompletedProcess]:
    return demo_run.cwd, demo_run.process


def test_demo_prints_a_line_per_stage_and_a_summary(demo):
    cwd, run = demo
    assert run.returncode == 0, run.stdout + run.stderr
    lines = (run.stdout + run.stderr).splitlines()
    assert len(lines) < 75, "\n".join(lines)  # half the bound of 150; datatrove alone printed ~350
    for index, stage in enumerate(STAGES, 1):
        assert sum(1 for line in lines if line.startswith(f"[{index:>2}/10] {stage} ")) == 1, stage
    loop = ["mixes and cards", "tiny base model", *(f"train {m}" for m in MIXES), "evaluate", "report"]
    loop.append("publish dry run")
    for index, step in enumerate(loop, 1):
        assert sum(1 for line in lines if line.startswith(f"[{index:>2}/{len(loop)}] {step} ")) == 1, step
    assert not [line for line in lines if "| INFO " in line or "Stats:" in line]  # no datatrove log line
    assert not [line for line in lines if "it/s]" in line or "{'loss'" in line]  # no trainer output
    folder = (cwd / "medinjection-fr").resolve()
    kept = json.loads((folder / "stats.json").read_text())["records"]["kept"]
    assert any(line.startswith(f"built {folder} in ") and f"{kept} records kept" in line for line in lines)
    assert "load_dataset('./medinjection-fr', 'nat_trad')" in run.stdout
    for label in ("dataset", "adapters", "evaluation", "report", "publish preview", "logs"):
        assert any(line.startswith(f"  {label} ") for line in lines), label
    log = (folder / "_build" / "build.log").read_text(encoding="utf-8")
    # the log holds what datatrove printed to the console: its workers' lines and the merged stats
    assert "Launching pipeline for rank=0" in log and "📉📉📉 Stats: Task 0" in log
    assert "📉📉📉 Stats: All 2 tasks" in log and "📊 - STATS: finalize" in log
    assert "train_runtime" in (cwd / "logs" / "train-nat.log").read_text(encoding="utf-8")


def test_verbose_prints_datatrove_logs(demo):
    cwd, _ = demo
    run = medinjection("build", "demo", "--output", "medinjection-fr", "--verbose", cwd=cwd)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Not doing anything as all 2 tasks have already been completed." in run.stderr
    assert "[ 3/10] prepare" in run.stdout and "done before" in run.stdout


def test_console_draws_a_bar_only_on_a_terminal(monkeypatch):
    import medinjection.core.console as console_module

    monkeypatch.setattr(console_module, "BAR_AFTER_S", 0.0)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    polled = threading.Event()

    def done() -> int:
        polled.set()
        return 1

    for stream, bar in ((io.StringIO(), False), (Terminal(), True)):
        console = Console(stream)
        polled.clear()
        with console.stage("prepare", 3, 10, tasks=2, done=done) as line:
            line.detail = "164 records"
            polled.wait(5 if bar else 0.2)
        text = stream.getvalue()
        assert text.rstrip().splitlines()[-1].startswith("[ 3/10] prepare")
        assert text.rstrip().endswith("164 records")
        assert ("1/2" in text) is bar
