"""The LLM judge: strict verdicts, versioned prompts, the cache, and two real servers.

- the project's fault-injecting server (tests/generation/gen_fault_server.py), answering judge
  prompts with "1" when the candidate equals the ground truth and "0" otherwise: unparseable
  replies and requests that fail for good are counted as such, never as 0, and a second run
  asks nothing it was already answered;
- a real ``transformers serve`` of the tiny Qwen3 (and the same model in process): every answer of
  a random model is judged or counted unparseable, with real token counts, and cached.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from judge_server import JudgeServer

from medinjection.core.config import GenerationBackendConfig
from medinjection.dataset_builders.generation.cache import ResponseCache
from medinjection.evaluation.judge import (
    DEFAULT_PROMPTS,
    FORMER_VERSIONS,
    JudgeError,
    JudgeSettings,
    judge_items,
    judge_messages,
    judge_metric,
    judge_prompt,
    judgment_columns,
    parse_verdict,
    prompt_sha256,
)

ITEMS = [
    {
        "id": f"oeq-{i}",
        "question": f"Question : quel est le traitement du cas {i} ?",
        "reference": f"L'amoxicilline pendant {i + 5} jours.",
        "answer_text": f"L'amoxicilline pendant {i + 5} jours." if i % 2 == 0 else "Le paracétamol.",
    }
    for i in range(8)
]


def test_parse_verdict_is_strict():
    binary, graded = judge_prompt("binary-lenient-v1"), judge_prompt("graded-v1")
    assert [parse_verdict(t, binary) for t in ("1", " 0", "1.", "0\nThe answer is wrong", "1)")] == [
        1,
        0,
        1,
        0,
        1,
    ]
    for text in ("10", "2", "Score: 1", "one", "", None, "1a", " x1"):
        assert parse_verdict(text, binary) is None, text
    assert [parse_verdict(t, graded) for t in ("5", "1", " 3 ", "4/5")] == [5, 1, 3, 4]
    assert [parse_verdict(t, graded) for t in ("0", "6", "45")] == [None, None, None]


def test_prompt_files_are_versioned():
    binary, graded = judge_prompt("binary-strict-v1"), judge_prompt("graded-v1")
    assert (binary.version, binary.metric, binary.low, binary.high, binary.max_tokens) == (
        "judge-binary-strict-v1",
        "judge_binary",
        0,
        1,
        1,
    )
    assert (graded.version, graded.metric, graded.low, graded.high) == (
        "judge-graded-v1",
        "judge_graded",
        1,
        5,
    )
    messages = judge_messages(binary, "Q ?", "réponse {avec} accolades", "la référence")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == (
        "Question: Q ?\nCandidate_answer: réponse {avec} accolades\nGround_truth: la référence"
    )
    assert "equivalent to the ground truth" in messages[0]["content"]
    with pytest.raises(
        ValueError,
        match=r"unknown judge prompt version 'binary-v9'; known: "
        r"\['binary-lenient-v1', 'binary-strict-v1', 'graded-v1'\]",
    ):
        judge_prompt("binary-v9")


def test_bundled_prompts_are_named_for_what_they_are():
    """The binary prompt once named binary-v1 is the strict one (same texts, hence the same hash);
    the lenient one is the default; the old name is refused with the new one."""
    strict, lenient = judge_prompt("binary-strict-v1"), judge_prompt("binary-lenient-v1")
    assert DEFAULT_PROMPTS == ("binary-lenient-v1", "graded-v1")
    assert FORMER_VERSIONS["judge-binary-v1"] == (strict.version, strict.sha256)
    assert lenient.sha256 != strict.sha256 and lenient.metric == strict.metric == "judge_binary"
    ask = ("Q ?", "Une réponse.", "La référence.")
    strict_turns, lenient_turns = judge_messages(strict, *ask), judge_messages(lenient, *ask)
    assert strict_turns[1] == lenient_turns[1] and strict_turns[0] != lenient_turns[0]
    with pytest.raises(JudgeError, match=r"'binary-v1' is now named 'binary-strict-v1' \(the same texts"):
        judge_prompt("binary-v1")


OWN_PROMPT = """# a prompt of one's own, in the bundled format
version: {version}
metric: judge_binary
scale: [0, 1]
max_tokens: 1
system: |-
  First paragraph of my own judge instructions.
  Second line of it.

  Criteria:
  Score 0: no
  Score 1: yes

  Reply with the score only.
user: |-
  Question: {{question}}
  Candidate_answer: {{answer}}
  Ground_truth: {{reference}}
"""


def own_prompt(
    folder: Path, name: str = "own.yaml", version: str = "own-binary-v1", text: str = OWN_PROMPT
) -> str:
    path = folder / name
    path.write_text(text.format(version=version), encoding="utf-8")
    return str(path)


def test_a_prompt_file_of_ones_own_is_asked_as_written(tmp_path):
    """A multi-paragraph system text (as the authors' is) reaches the judge line for line, the user
    turn is built from the stripped fields as their script builds it, and the verdicts record the
    file's version and hash."""
    import yaml

    path = own_prompt(tmp_path)
    prompt = judge_prompt(path)
    template = yaml.safe_load(Path(path).read_text())
    assert (prompt.version, prompt.sha256) == ("own-binary-v1", prompt_sha256(template))
    items = [
        {
            **ITEMS[0],
            "answer_text": "  " + ITEMS[0]["answer_text"] + "\n",
            "reference": ITEMS[0]["reference"] + " ",
        },
        ITEMS[1],
    ]
    with JudgeServer() as server:
        settings = fault_settings(server.url, tmp_path / "judge.sqlite", prompts=(path,))
        results, _ = judge_items(items, settings)
        seen = server.seen
    assert [r["verdict"] for r in results["judge_binary"]] == [1, None]  # item 1: the server's bad reply
    systems = {m[0]["content"] for m in seen}
    assert systems == {template["system"]}
    assert "\n\nCriteria:\nScore 0: no\nScore 1: yes\n\n" in template["system"]
    users = sorted(m[1]["content"] for m in seen)
    q, a, r = (items[0][k].strip() for k in ("question", "answer_text", "reference"))
    assert f"Question: {q}\nCandidate_answer: {a}\nGround_truth: {r}" in users
    assert settings.describe()["prompts_sha256"] == {"judge_binary": prompt.sha256}


def test_the_prompt_hash_follows_the_texts_not_the_comments(tmp_path):
    first = judge_prompt(own_prompt(tmp_path, "a.yaml"))
    commented = judge_prompt(own_prompt(tmp_path, "b.yaml", text="# another comment\n" + OWN_PROMPT))
    renamed = judge_prompt(own_prompt(tmp_path, "c.yaml", version="own-binary-v2"))
    reworded = judge_prompt(
        own_prompt(tmp_path, "d.yaml", text=OWN_PROMPT.replace("Second line", "2nd line"))
    )
    assert first.sha256 == commented.sha256 == renamed.sha256 != reworded.sha256


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("{{answer}}", "{{answr}}"), r"bad.yaml: its 'user' text names 'answr'"),
        (
            lambda t: t.replace("Candidate_answer: {{answer}}", "Candidate: none"),
            r"'user' text has no \{answer\}",
        ),
        (
            lambda t: t.replace("version: {version}", "version: judge-binary-v1"),
            r"former name of 'judge-binary-strict-v1'",
        ),
        (lambda t: t.replace("max_tokens: 1\n", ""), r"bad.yaml has no 'max_tokens'"),
    ],
)
def test_a_bad_prompt_file_is_named(tmp_path, change, message):
    path = own_prompt(tmp_path, "bad.yaml", text=change(OWN_PROMPT))
    with pytest.raises(JudgeError, match=message):
        judge_prompt(path)


def fault_settings(url: str, cache: Path, **kw) -> JudgeSettings:
    backend = GenerationBackendConfig(
        type="openai",
        model="judge-model",
        base_url=url,
        max_retries=2,
        backoff_s=0.0,
        concurrency=4,
        timeout_s=10,
    )
    return JudgeSettings(backend=backend, cache=cache, **kw)


def test_judge_against_the_fault_server(tmp_path):
    with JudgeServer() as server:
        settings = fault_settings(server.url, tmp_path / "judge.sqlite")
        results, usage = judge_items(ITEMS, settings)
        first_requests = sum(server.requests.values())
        again, usage2 = judge_items(ITEMS, settings)
        second_requests = sum(server.requests.values()) - first_requests

    for metric, ok, bad in (("judge_binary", 1, 0), ("judge_graded", 5, 2)):
        rows = results[metric]
        assert [r["status"] for r in rows] == [
            "ok",
            "unparseable",
            "ok",
            "failed",
            "ok",
            "ok",
            "ok",
            "ok",
        ]
        expected = [ok if i % 2 == 0 else bad for i in range(8)]
        assert [r["verdict"] for r in rows] == [
            v if i not in (1, 3) else None for i, v in enumerate(expected)
        ]
        assert rows[1]["raw"].startswith("Voici la traduction") and rows[3]["raw"] is None
        assert "gave up after 3 attempts" in rows[3]["error"]
        columns = judgment_columns(metric, rows)
        assert columns[metric][1] is None and columns[metric][3] is None and columns[metric][0] == float(ok)
    # per prompt: 8 items, item 2 asked twice (429), item 3 three times (500 x 3), item 5 twice
    assert first_requests == 2 * (8 + 1 + 2 + 1)
    assert usage["requests"] == 2 * 7 and usage["failures"] == 2 and usage["retries"] == 2 * 2
    # the second run asks again only for the failed items (3 attempts each, failing again)
    assert second_requests == 2 * 3
    assert usage2["cache_hits"] == 2 * 7 and usage2["requests"] == 0
    assert [r["status"] for r in again["judge_binary"]] == [r["status"] for r in results["judge_binary"]]
    assert all(r["cached"] for i, r in enumerate(again["judge_binary"]) if i != 3)
    assert len(ResponseCache(tmp_path / "judge.sqlite")) == 2 * 7  # a failed request is never cached


def test_judge_metric_counts_what_it_leaves_out():
    statuses = ["ok", "unparseable", "ok", "failed", "ok", None]
    values = [1.0, None, 0.0, None, 1.0, None]
    prompt = judge_prompt("binary-lenient-v1")
    described = JudgeSettings(
        GenerationBackendConfig(type="openai", model="judge-model"), Path("c")
    ).describe()
    assert described["prompts"]["judge_binary"] == prompt.version
    entry = judge_metric(values, statuses, described, "judge_binary", resamples=200)
    assert entry["value"] == pytest.approx(2 / 3) and entry["n"] == 3
    assert (entry["n_judged"], entry["n_unparseable"], entry["n_failed"]) == (5, 1, 1)
    assert entry["judge_model"] == "judge-model" and entry["prompt_version"] == "judge-binary-lenient-v1"
    assert entry["prompt_sha256"] == prompt.sha256
    assert 0 <= entry["ci95"][0] <= entry["value"] <= entry["ci95"][1] <= 1
    nothing = judge_metric([None, None], ["unparseable", "failed"], described, "judge_binary")
    assert nothing["value"] is None and nothing["n"] == 0
    assert nothing["missing"] == "no parseable verdict (1 unparseable, 1 failed)"


def test_judge_input_is_checked(tmp_path):
    settings = fault_settings("http://127.0.0.1:9/v1", tmp_path / "c.sqlite")
    with pytest.raises(JudgeError, match=r"item 0 \(x\): no 'answer_text' text to judge"):
        judge_items([{"id": "x", "question": "q", "reference": "r"}], settings)


# --- a real OpenAI-compatible server: transformers serve on the tiny Qwen3 --------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny_path) -> Path:
    return tiny_path  # the tiny Qwen3 of tests/evaluation/eval_fixtures.py


@pytest.fixture(scope="module")
def served(tiny_model, tmp_path_factory, serve_with_transformers):
    yield from serve_with_transformers(tiny_model, tmp_path_factory)


def check_random_judge(results: dict, usage: dict, n: int, max_tokens: int) -> None:
    for metric, rows in results.items():
        assert len(rows) == n
        prompt = judge_prompt("binary-lenient-v1" if metric == "judge_binary" else "graded-v1")
        for row in rows:
            assert row["status"] in ("ok", "unparseable"), row
            assert isinstance(row["raw"], str)
            # the status is what the strict parser says of the raw reply, nothing else
            assert row["verdict"] == parse_verdict(row["raw"], prompt)
            assert (row["status"] == "ok") == (row["verdict"] is not None)
    assert usage["requests"] == 2 * n and usage["failures"] == 0
    assert usage["prompt_tokens"] > 2 * n * 50 and 0 < usage["completion_tokens"] <= 2 * n * max_tokens


@pytest.mark.slow
def test_judge_against_transformers_serve(served, tiny_model, tmp_path):
    backend = GenerationBackendConfig(
        type="openai", model=str(tiny_model), base_url=served, concurrency=4, timeout_s=60
    )
    settings = JudgeSettings(backend=backend, cache=tmp_path / "judge.sqlite", max_tokens=3)
    results, usage = judge_items(ITEMS[:4], settings)
    check_random_judge(results, usage, 4, 3)
    again, usage2 = judge_items(ITEMS[:4], settings)
    assert usage2["cache_hits"] == 8 and usage2["requests"] == 0
    assert [r["raw"] for r in again["judge_graded"]] == [r["raw"] for r in results["judge_graded"]]


def test_judge_with_an_in_process_transformers_model(tiny_model, tmp_path):
    backend = GenerationBackendConfig(type="transformers", model=str(tiny_model))
    settings = JudgeSettings(backend=backend, cache=tmp_path / "judge.sqlite")
    results, usage = judge_items(ITEMS[:3], settings)
    check_random_judge(results, usage, 3, 1)  # the prompts' one new token, as the paper's judge
