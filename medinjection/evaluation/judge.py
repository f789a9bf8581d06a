"""LLM-as-a-judge for open-ended answers, through the project's generation backends and cache.

The judge is any model the generation steps can talk to (``dataset_builders/generation``): an
OpenAI-compatible server (OpenAI, vLLM serve, TGI, ``transformers serve``), an in-process
``transformers`` model, or vLLM offline. Every answer goes through the SQLite response cache first,
so a verdict is never paid twice and a killed run resumes where it stopped.

Prompts are versioned files, ``medinjection/prompts/judge/<name>.yaml``, all in our words and in
the form of the authors' judge (English system prompt, user turn ``Question / Candidate_answer /
Ground_truth``):

- ``binary-lenient-v1`` (default): is the candidate answer equivalent to the ground truth, 0 or 1,
  in one new token, with the authors' criterion (its core right, details added or missing
  accepted); metric ``judge_binary``, the share of answers judged equivalent;
- ``binary-strict-v1`` (named ``binary-v1`` before, same texts): the same with a stricter criterion
  (same medical content and conclusion);
- ``graded-v1``: a 1-5 grade on the scale of the human ratings (metric ``judge_graded``, the mean);
  the paper has no such judge.

A prompt file of one's own (a path ending in ``.yaml``) takes the same keys, e.g. the authors' own
system text. Every output records the prompt's ``version`` and its ``sha256`` (``prompt_sha256``:
of the file's keys other than ``version``, as canonical JSON, so a comment does not change it and
any word of a text does).

A verdict is read strictly (``parse_verdict``): the reply must start with one digit of the scale,
not followed by another letter or digit. Anything else is *unparseable* and a request that failed
for good (after the backend's retries) is *failed*; both are counted and left out of the mean,
never scored as 0.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from medinjection.core.config import GenerationBackendConfig

DEFAULT_PROMPTS = ("binary-lenient-v1", "graded-v1")
RENAMED = {"binary-v1": "binary-strict-v1"}
"""Former names of bundled prompt files: asked by their old name, they are refused with the new one."""
FORMER_VERSIONS = {
    "judge-binary-v1": (
        "judge-binary-strict-v1",
        "26391e44868267494ce9dd06abb1ef36884298d4b98a5ab8e0db27452237632a",
    ),
}
"""Version labels that older outputs record: ``old -> (the version now, the sha256 of the texts
both names stand for)``; the report shows them under both names (a test keeps the texts unchanged)."""
JUDGE_CACHE = "judge-cache.sqlite"
"""The response cache's file name in an evaluation output folder (the default cache)."""
STATUSES = ("ok", "unparseable", "failed")
_VERDICT = re.compile(r"^\s*(\d)(?![\w])")


class JudgeError(ValueError):
    """Bad judge input (a predictions file without the needed columns, an unknown prompt)."""


@dataclass(frozen=True)
class JudgePrompt:
    name: str  # the file name ("binary-lenient-v1") or the path of a file of one's own
    version: str  # the label in the file, recorded with every verdict and in the cache key
    metric: str  # "judge_binary" | "judge_graded"
    low: int
    high: int
    max_tokens: int
    sha256: str  # prompt_sha256 of the file's keys


def prompt_sha256(template: dict[str, Any]) -> str:
    """sha256 of a prompt file's keys other than ``version`` (canonical JSON: sorted keys, UTF-8):
    what the judge is asked and how its reply is read, whatever the file's comments and layout."""
    content = {k: v for k, v in template.items() if k != "version"}
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@cache
def judge_prompt(name: str) -> JudgePrompt:
    """The judge prompt file ``prompts/judge/<name>.yaml`` (unknown names list the known ones, former
    names give the new one), or a prompt file of one's own when ``name`` is a path ending in
    ``.yaml`` (same keys as the bundled ones)."""
    from medinjection.dataset_builders.generation.prompts import load_prompt

    if name in RENAMED:
        raise JudgeError(
            f"judge prompt {name!r} is now named {RENAMED[name]!r} (the same texts; stricter than the "
            "authors' criterion); binary-lenient-v1 follows their criterion"
        )
    template = load_prompt("judge", name)
    shown = name if name.endswith((".yaml", ".yml")) else f"judge/{name}.yaml"
    for key in ("metric", "scale", "max_tokens"):
        if key not in template:
            raise JudgeError(f"prompt {shown} has no {key!r}")
    if not isinstance(template["system"], str) or not isinstance(template["user"], str):
        raise JudgeError(f"prompt {shown}: 'system' and 'user' must be texts")
    if template["version"] in FORMER_VERSIONS:
        raise JudgeError(
            f"prompt {shown}: version {template['version']!r} is the former name of "
            f"{FORMER_VERSIONS[template['version']][0]!r}; give the file a version of its own"
        )
    try:
        filled = template["user"].format(question="", answer="\0", reference="")
    except (KeyError, IndexError, ValueError) as err:
        raise JudgeError(
            f"prompt {shown}: its 'user' text names {err} (it may name {{question}}, {{answer}}, {{reference}})"
        ) from None
    if "\0" not in filled:
        raise JudgeError(f"prompt {shown}: its 'user' text has no {{answer}}")
    low, high = (int(x) for x in template["scale"])
    return JudgePrompt(
        name,
        template["version"],
        template["metric"],
        low,
        high,
        int(template["max_tokens"]),
        prompt_sha256(template),
    )


def former_version(version: str | None) -> tuple[str, str] | None:
    """``(version now, sha256)`` when ``version`` is a label older outputs record for a renamed prompt."""
    return FORMER_VERSIONS.get(version or "")


def judge_messages(prompt: JudgePrompt, question: str, answer: str, reference: str) -> list[dict[str, str]]:
    """The system and user turns of one judgment; each field stripped of its outer whitespace (as the
    authors' judge does), so that their prompt put in a file of this format asks the same."""
    from medinjection.dataset_builders.generation.prompts import render

    fields = {"question": question.strip(), "answer": answer.strip(), "reference": reference.strip()}
    return render("judge", prompt.name, **fields)[1]


def parse_verdict(text: str | None, prompt: JudgePrompt) -> int | None:
    """The verdict of a judge reply, or ``None`` when it is not one digit of the prompt's scale.

    ``"1"``, ``" 1."``, ``"4\\nThe answer..."`` parse; ``"10"``, ``"Score: 4"``, ``"6"`` (graded) do not.
    """
    match = _VERDICT.match(text or "")
    if not match:
        return None
    value = int(match.group(1))
    return value if prompt.low <= value <= prompt.high else None


@dataclass
class JudgeSettings:
    """Which judge, with which prompts, caching where.

    ``backend.max_tokens`` is replaced by each prompt's ``max_tokens`` unless ``max_tokens`` is
    given (a reasoning model needs more than the paper's one token); ``json_mode`` is always off.
    """

    backend: GenerationBackendConfig
    cache: Path
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    max_tokens: int | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> JudgeSettings:
        """From the plain dict of ``to_options`` (the form the evaluation's task options take);
        ``prompts_sha256`` is there for the reuse check only (a prompt file edited since gives
        another fingerprint, so its verdicts are not reused)."""
        unknown = set(options) - {"backend", "cache", "prompts", "prompts_sha256", "max_tokens"}
        if unknown:
            raise JudgeError(
                f"unknown judge options {sorted(unknown)}; known: backend, cache, prompts, prompts_sha256, "
                "max_tokens"
            )
        return cls(
            backend=GenerationBackendConfig(**options["backend"]),
            cache=Path(options["cache"]),
            prompts=tuple(options.get("prompts") or DEFAULT_PROMPTS),
            max_tokens=options.get("max_tokens"),
        )

    def to_options(self) -> dict[str, Any]:
        return {
            "backend": self.backend.model_dump(mode="json", exclude_defaults=True),
            "cache": str(self.cache),
            "prompts": list(self.prompts),
            "prompts_sha256": [judge_prompt(p).sha256 for p in self.prompts],
            "max_tokens": self.max_tokens,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.backend.model,
            "backend": self.backend.type,
            "base_url": self.backend.base_url,
            "temperature": self.backend.temperature,
            "prompts": {judge_prompt(p).metric: judge_prompt(p).version for p in self.prompts},
            "prompts_sha256": {judge_prompt(p).metric: judge_prompt(p).sha256 for p in self.prompts},
            "max_tokens": self.max_tokens,
        }


def make_judge_settings(
    model: str,
    cache: str | Path,
    *,
    backend: str = "openai",
    base_url: str | None = None,
    prompts: Sequence[str] | None = None,
    max_tokens: int | None = None,
    concurrency: int = 16,
    timeout_s: float = 120.0,
    max_retries: int = 6,
) -> JudgeSettings:
    """Judge settings from command-line values (prompt names checked now, not after the answers)."""
    prompts = tuple(prompts or DEFAULT_PROMPTS)
    for name in prompts:
        judge_prompt(name)
    config = GenerationBackendConfig(
        type=backend,
        model=model,
        base_url=base_url,
        concurrency=concurrency,
        timeout_s=timeout_s,
        max_retries=max_retries,
        temperature=0.0,
        json_mode=False,
    )
    return JudgeSettings(backend=config, cache=Path(cache), prompts=prompts, max_tokens=max_tokens)


def judge_config(settings: JudgeSettings, prompt: JudgePrompt) -> GenerationBackendConfig:
    max_tokens = settings.max_tokens or prompt.max_tokens
    return settings.backend.model_copy(update={"max_tokens": max_tokens, "json_mode": False})


def judge_items(
    items: Sequence[dict[str, Any]], settings: JudgeSettings
) -> tuple[dict[str, list[dict]], dict]:
    """Judge every item with every prompt of ``settings``.

    Args:
        items: dicts with ``question``, ``answer_text`` and ``reference``.
    Returns:
        ``({metric: [one judgment per item]}, usage)``; a judgment is ``{"verdict", "status", "raw",
        "error", "cached"}`` with ``status`` in ``STATUSES``; ``usage`` counts requests, cache hits,
        failures and tokens over all prompts.
    """
    from medinjection.dataset_builders.generation.cache import ResponseCache
    from medinjection.dataset_builders.generation.runner import Generator, Request

    for index, item in enumerate(items):
        for key in ("question", "answer_text", "reference"):
            if not isinstance(item.get(key), str):
                raise JudgeError(f"item {index} ({item.get('id', '?')}): no {key!r} text to judge")
    prompts = [judge_prompt(name) for name in settings.prompts]
    if len({p.metric for p in prompts}) != len(prompts):
        raise JudgeError(f"two judge prompts for the same metric: {list(settings.prompts)}")
    # One generator (one backend: a local judge model is loaded once) per distinct request config;
    # the prompt version in each request keeps the cache keys of the prompts apart.
    groups: dict[str, list[JudgePrompt]] = {}
    for prompt in prompts:
        groups.setdefault(judge_config(settings, prompt).model_dump_json(), []).append(prompt)
    cache_db = ResponseCache(settings.cache)
    results: dict[str, list[dict]] = {}
    usage: Counter = Counter()
    try:
        for group in groups.values():
            generator = Generator(judge_config(settings, group[0]), cache_db)
            try:
                requests = [
                    Request(
                        judge_messages(prompt, item["question"], item["answer_text"], item["reference"]),
                        prompt.version,
                    )
                    for prompt in group
                    for item in items
                ]
                answers = generator.generate(requests)
            finally:
                generator.close()
            usage.update(generator.usage.as_dict(settings.backend.prices))
            for number, prompt in enumerate(group):
                chunk = answers[number * len(items) : (number + 1) * len(items)]
                results[prompt.metric] = [judgment(answer, prompt) for answer in chunk]
    finally:
        cache_db.close()
    return results, dict(usage)


def judgment(answer, prompt: JudgePrompt) -> dict[str, Any]:
    """One verdict from a generation ``Answer`` (failed: no text after the retries)."""
    if answer.text is None:
        return {"verdict": None, "status": "failed", "raw": None, "error": answer.error, "cached": False}
    verdict = parse_verdict(answer.text, prompt)
    return {
        "verdict": verdict,
        "status": "ok" if verdict is not None else "unparseable",
        "raw": answer.text,
        "error": "",
        "cached": answer.cached,
    }


def judgment_columns(metric: str, judgments: Sequence[dict]) -> dict[str, list]:
    """Prediction columns of one prompt's judgments: ``<metric>``, ``<metric>_status``, ``<metric>_raw``
    (``open_ended.add_judgments`` adds ``_prompt``, ``_prompt_sha256`` and ``_model``)."""
    return {
        metric: [None if j["verdict"] is None else float(j["verdict"]) for j in judgments],
        f"{metric}_status": [j["status"] for j in judgments],
        f"{metric}_raw": [j["raw"] for j in judgments],
    }


def judge_metric(
    values: Sequence[float | None],
    statuses: Sequence[str | None],
    settings_description: dict[str, Any],
    metric: str,
    **stats_options: Any,
) -> dict[str, Any]:
    """The summary entry of a judge metric: the mean over parsed verdicts, its interval and counts.

    ``n`` is the number of parsed verdicts; ``n_unparseable`` and ``n_failed`` say how many were
    left out. With no parsed verdict the value is ``None`` and ``missing`` says why.
    """
    from medinjection.evaluation.stats import metric as metric_entry

    counts = Counter(s for s in statuses if s is not None)
    judged = [float(v) for v, s in zip(values, statuses, strict=True) if s == "ok" and v is not None]
    extra = {
        "n_judged": sum(counts.values()),
        "n_unparseable": counts.get("unparseable", 0),
        "n_failed": counts.get("failed", 0),
        "judge_model": settings_description.get("model"),
        "prompt_version": (settings_description.get("prompts") or {}).get(metric),
        "prompt_sha256": (settings_description.get("prompts_sha256") or {}).get(metric),
    }
    if not judged:
        return {
            "value": None,
            "ci95": None,
            "n": 0,
            "missing": f"no parseable verdict ({extra['n_unparseable']} unparseable, {extra['n_failed']} failed)",
            **extra,
        }
    return {**metric_entry(judged, **stats_options), **extra}
