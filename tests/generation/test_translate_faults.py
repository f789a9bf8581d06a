"""Translation through a local server that injects 429s, 500s, timeouts, unreadable bodies, invalid
JSON and changed letters: every item is accepted or rejected with its reason and raw output; the
items that never got an answer leave the task unfinished (an error naming them), and a second run
asks only those (the rest come from the cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gen_fault_server import FaultServer
from typer.testing import CliRunner

from medinjection.cli import app
from medinjection.core.config import load_build_config
from medinjection.dataset_builders.generate import run_generation
from medinjection.dataset_builders.generation.backends import StageStopped
from medinjection.dataset_builders.generation.cache import ResponseCache

N = 40
# Transient faults first, then the final behaviour; by the item number in the prompt.
PLANS = {
    0: ["429", "ok"],
    1: ["500", "500", "ok"],
    2: ["timeout", "ok"],
    3: ["badbody", "ok"],
    4: ["badjson"],
    5: ["wrongletters"],
    6: ["fewer_options"],
    7: ["500"] * 10,  # never recovers: generation_failed
}
EXPECTED_REJECT = {4: "invalid_json", 5: "answer_key_changed", 6: "options_changed", 7: "generation_failed"}


def item_number(server: FaultServer, key: str) -> int:
    return server.numbers[key]


class PlannedServer(FaultServer):
    def __init__(self):
        super().__init__(plan=self.choose, timeout_sleep_s=3.0)
        self.numbers: dict[str, int] = {}

    def choose(self, key: str, attempt: int) -> str:
        number = self.numbers.get(key, -1)
        plan = PLANS.get(number % 10 if number >= 0 else -1, ["ok"])
        return plan[min(attempt, len(plan) - 1)]

    async def _answer(self, body):
        from gen_fault_server import item_of, prompt_hash

        messages = body.get("messages") or []
        item = item_of(messages)
        if item is not None:
            self.numbers[prompt_hash(messages)] = int(item["instruction"].split("item number ")[1].split()[0])
        return await super()._answer(body)


def read_rows(root: Path, sub: str) -> list[dict]:
    return [json.loads(line) for p in sorted(root.glob(sub)) for line in p.read_text().splitlines()]


def run_unfinished(config, out: Path) -> dict:
    """Run the stage, which must stop on the 4 items without an answer; its usage, from the files."""
    with pytest.raises(StageStopped, match="4 requests got no answer after 5 attempts each"):
        run_generation(config, "translate", out)
    usage: dict = {}
    for path in (out / "_build" / "usage").glob("*.json"):
        for key, value in json.loads(path.read_text()).items():
            if isinstance(value, (int, float)) and key != "rank":
                usage[key] = usage.get(key, 0) + value
    return usage


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    from gen_configs import write_config, write_mmlu_csv

    folder = tmp_path_factory.mktemp("faults")
    with PlannedServer() as server:
        config = load_build_config(
            write_config(
                folder,
                server.url,
                [{"adapter": "mmlu_medical", "path": str(write_mmlu_csv(folder / "en", N))}],
                translate={"max_failure_rate": 0.5},  # 4 of 40 fail: above the default 0.05
            )
        )
        usage = run_unfinished(config, folder / "out")
        first = dict(server.requests)
        usage2 = run_unfinished(config, folder / "out2")
        second = dict(server.requests)
    return folder, usage, usage2, first, second, server


def test_every_item_accepted_or_rejected_with_reason(faulty_run):
    folder, usage, _, _, _, _ = faulty_run
    kept = read_rows(folder / "out", "_build/generated/translate/*/*.jsonl")
    rejected = read_rows(folder / "out", "rejects/translate/*.jsonl")
    assert len(kept) + len(rejected) == N
    numbers = lambda rows, key: {int(r[key].split("item number ")[1].split()[0]) for r in rows}  # noqa: E731
    got_rejects = {
        int(r["record"]["instruction"].split("item number ")[1].split()[0]): r["reason"] for r in rejected
    }
    want = {i: EXPECTED_REJECT[i % 10] for i in range(N) if i % 10 in EXPECTED_REJECT}
    assert got_rejects == want
    assert numbers([r["original"] for r in kept], "instruction") == set(range(N)) - set(want)
    for row in rejected:
        if row["reason"] == "generation_failed":
            assert row["raw"]["output"] is None and "gave up" in row["detail"]
        else:
            assert row["raw"]["output"]  # the raw model output is kept
    assert usage["failures"] == 4 and usage["requests"] == N - 4
    assert usage["cost_usd"] == pytest.approx((N - 4) * (100 * 1.0 + 50 * 2.0) / 1e6)


def test_accepted_rows_keep_letters_and_key(faulty_run):
    folder = faulty_run[0]
    for row in read_rows(folder / "out", "_build/generated/translate/*/*.jsonl"):
        assert [o["letter"] for o in row["options"]] == [o["letter"] for o in row["original"]["options"]]
        assert row["answer"] == row["original"]["answer"] and row["correct_letters"] == [row["answer"]]
        assert row["provenance"] == "translated" and row["language"] == "fr"
        assert row["generation"] == {
            "model": "test-model",
            "prompt_version": "translate-v1",
            "seed_id": row["id"],
        }


def test_retries_then_second_run_asks_only_the_failed(faulty_run):
    folder, _, usage2, first, second, server = faulty_run
    # transient faults were retried: items 0-3 (mod 10) needed more than one request
    for key, number in server.numbers.items():
        if number % 10 == 1:
            assert first[key] == 3
        elif number % 10 == 7:
            assert first[key] == 5  # 1 + max_retries
        elif number % 10 in (4, 5, 6, 8, 9):
            assert first[key] == 1
    # the second run answered everything from the cache, except the 4 that never got an answer
    asked_again = {k for k in second if second[k] != first.get(k)}
    assert {server.numbers[k] % 10 for k in asked_again} == {7}
    assert usage2["cache_hits"] == N - 4 and usage2["requests"] == 0
    assert len(ResponseCache(folder / "cache.sqlite")) == N - 4


def test_dry_run_counts_misses_and_cost(tmp_path):
    from gen_configs import write_config, write_mmlu_csv

    config = write_config(
        tmp_path,
        "http://127.0.0.1:9/v1",
        [{"adapter": "mmlu_medical", "path": str(write_mmlu_csv(tmp_path / "en", 12))}],
    )
    result = CliRunner().invoke(
        app, ["translate", str(config), "--dry-run", "--limit", "5", "--output", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "5 items, 0 answers in the cache, 5 requests to make to test-model" in result.output
    assert "estimated cost $0.00" in result.output and not (tmp_path / "o" / "_build" / "generated").exists()
