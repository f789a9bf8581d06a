"""Kill a real ``medinjection translate`` process mid-run, then resume it: the cache survives the
kill, and no prompt whose answer was in the cache is requested again (requests counted at the server)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

from gen_configs import write_config, write_mmlu_csv
from gen_fault_server import FaultServer

N = 60
CONCURRENCY = 2


def translate(config, out):
    cmd = [sys.executable, "-m", "medinjection.cli", "translate", str(config), "--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def cached_hashes(path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {h for (h,) in db.execute("SELECT input_hash FROM responses")}


def test_kill_and_resume_never_pays_twice(tmp_path):
    with FaultServer(delay_s=0.05) as server:
        config = write_config(
            tmp_path,
            server.url,
            [{"adapter": "mmlu_medical", "path": str(write_mmlu_csv(tmp_path / "en", N))}],
            concurrency=CONCURRENCY,
        )
        process = translate(config, tmp_path / "out")
        deadline = time.time() + 60
        while sum(server.answered.values()) < N // 3 and time.time() < deadline and process.poll() is None:
            time.sleep(0.02)
        assert process.poll() is None, (
            "the run ended before it could be killed: " + process.stdout.read().decode()
        )
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        time.sleep(0.3)  # let the server finish answering what was in flight
        before = dict(server.requests)
        survived = cached_hashes(tmp_path / "cache.sqlite")
        assert N // 4 <= len(survived) < N  # the kill came mid-run, and the answers received are on disk

        process = translate(config, tmp_path / "out")
        output = process.communicate(timeout=120)[0].decode()
        assert process.returncode == 0, output
        usage = json.loads(output.strip().splitlines()[-1])

    asked_again = {h for h, n in server.requests.items() if n > before.get(h, 0)}
    assert not asked_again & survived  # nothing in the cache was requested again
    assert len(asked_again) == N - len(survived) == usage["requests"]
    assert usage["cache_hits"] == len(survived)
    # Paid twice at most for the answers in flight at the kill (sent, not yet written).
    assert sum(1 for n in server.answered.values() if n > 1) <= CONCURRENCY
    assert cached_hashes(tmp_path / "cache.sqlite") == set(server.requests)
    rows = [
        json.loads(line)
        for p in (tmp_path / "out" / "_build" / "generated" / "translate").glob("*/*.jsonl")
        for line in p.read_text().splitlines()
    ]
    assert len(rows) == N
