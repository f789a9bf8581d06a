"""A run folder is locked while a training uses it: a second training into the same output_dir at the same
time is refused, naming the first; the lock of a process that died is recognised and taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medinjection.core.runs import RunError, RunLayout

HOLD = """
import sys, time
from medinjection.core.runs import RunLayout
with RunLayout(sys.argv[1]).lock(["holder"]):
    print("locked", flush=True)
    time.sleep(60)
"""


def start_holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "locked", process.stderr.read()
    return process


def test_a_folder_locked_by_a_running_process_is_refused_naming_it(tmp_path):
    holder = start_holder(tmp_path / "run")
    try:
        with pytest.raises(RunError) as refused:
            RunLayout(tmp_path / "run").lock().acquire()
        assert f"process {holder.pid}" in str(refused.value) and "in use by another training" in str(
            refused.value
        )
        assert "holder" in str(refused.value)  # its command
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    holder = start_holder(tmp_path / "run")
    holder.send_signal(signal.SIGKILL)  # dies holding it: the file stays, its pid in it
    holder.wait()
    layout = RunLayout(tmp_path / "run")
    assert json.loads(layout.lock_path.read_text())["pid"] == holder.pid
    with layout.lock(["second"]) as lock:
        assert lock.previous["pid"] == holder.pid
        assert json.loads(layout.lock_path.read_text())["pid"] == os.getpid()
        assert f"taking over the lock of process {holder.pid}" in caplog.text
    assert not layout.lock_path.exists()  # a clean release removes it
    with layout.lock() as lock:
        assert lock.previous is None


@pytest.mark.slow
def test_two_trainings_into_one_output_dir_at_the_same_time_do_not_both_succeed(
    demo_dataset, tiny_model, tiny_argv, subprocess_env, tmp_path
):
    output = tmp_path / "runs" / "shared"
    first = subprocess.Popen(
        [sys.executable, "-m", "medinjection.recipes.train", *tiny_argv("nat", demo_dataset, tiny_model, output),
         "--max_steps", "100000", "--save_strategy", "no", "--eval_strategy", "no"],
        env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        lock = RunLayout(output).lock_path
        while not (lock.is_file() and lock.read_text().strip()):
            assert first.poll() is None, first.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the first training did not lock its folder within 120 s"
            time.sleep(0.05)
        second = subprocess.run(
            [sys.executable, "-m", "medinjection.recipes.train",
             *tiny_argv("syn", demo_dataset, tiny_model, output), "--max_steps", "2"],
            env=subprocess_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert first.poll() is None, "the first training ended before the second was refused"
        assert second.returncode == 1, second.stdout[-2000:] + second.stderr[-2000:]
        message = second.stderr.strip().splitlines()[-1]
        assert message.startswith("error: ") and f"process {first.pid}" in message and str(output) in message
        assert "Traceback" not in second.stderr
        assert not RunLayout(output).manifest_path.exists()
    finally:
        first.kill()
        first.wait()
