"""Open-ended questions (OEQ) in ``medinjection evaluate``: greedy answers, text metrics, the judge.

The paper's protocol: the item's prompt through the chat template, greedy decoding up to 512 new
tokens (``oeq_max_new_tokens``; the authors: batch 1; here batched by length with right padding
through ``Engine``), then BLEU, ROUGE-2, METEOR and, when a model is given, BERTScore-F1 against the
reference answer, and optionally an LLM judge (``judge``). Every per-item figure is a column of ``predictions.parquet``; ``summarize`` turns
them into the summary's ``metrics`` (corpus BLEU is not a mean of a column: it is computed here,
with a bootstrap over items of sacrebleu's segment statistics).

Everything ``summarize`` needs is in the prediction rows (the BERTScore settings or the reason it
is missing, the judge model and prompt versions), so a summary can be recomputed from the
predictions file alone (after ``medinjection judge`` added verdicts, for instance).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medinjection.evaluation import text_metrics
from medinjection.evaluation.judge import JudgeSettings, judge_items, judge_metric, judgment_columns
from medinjection.evaluation.scorers import Scorer

MAX_NEW_TOKENS = 512
TEXT_METRICS = ("bleu_sentence", "rouge2", "meteor", "bertscore_f1")
JUDGE_METRICS = ("judge_binary", "judge_graded")
METRIC_COLUMNS = TEXT_METRICS + JUDGE_METRICS


@dataclass
class OEQOptions:
    """The options of the OEQ scorer: what it does beyond generating the answers.

    The runner records the scorer options in every summary (and in the fingerprint that decides
    whether outputs can be reused), so they travel as plain JSON: ``as_dict`` / ``of``.
    """

    max_new_tokens: int = MAX_NEW_TOKENS
    bertscore_model: str | None = None
    bertscore_layers: int | None = None
    bertscore_batch_size: int = 32
    judge: JudgeSettings | None = None

    @classmethod
    def of(cls, options: OEQOptions | dict[str, Any] | None) -> OEQOptions:
        if options is None:
            return cls()
        if isinstance(options, cls):
            return options
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown OEQ options {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        values = dict(options)
        if isinstance(values.get("judge"), dict):
            values["judge"] = JudgeSettings.from_options(values["judge"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["judge"] = self.judge.to_options() if self.judge is not None else None
        return out


def scorer_options(
    output: str | Path,
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    bertscore_model: str | None = None,
    bertscore_layers: int | None = None,
    judge: str | None = None,
    judge_backend: str = "openai",
    judge_base_url: str | None = None,
    judge_prompts: list[str] | None = None,
    judge_cache: str | Path | None = None,
    judge_max_tokens: int | None = None,
    judge_concurrency: int = 16,
) -> dict[str, Any]:
    """The OEQ scorer's options from the ``evaluate`` settings (plain JSON; the judge's cache defaults
    to ``<output>/judge-cache.sqlite``)."""
    from medinjection.evaluation.judge import JUDGE_CACHE, make_judge_settings

    if bertscore_model is not None and bertscore_model.lower() == "none":
        bertscore_model = None
    settings = None
    if judge:
        settings = make_judge_settings(
            judge,
            judge_cache or Path(output) / JUDGE_CACHE,
            backend=judge_backend,
            base_url=judge_base_url,
            prompts=judge_prompts,
            max_tokens=judge_max_tokens,
            concurrency=judge_concurrency,
        )
    options = OEQOptions(max_new_tokens, bertscore_model, bertscore_layers, judge=settings)
    return options.as_dict()


def user_turn(messages) -> str:
    """The question as the judge and the raters see it: the prompt's user turn (context included)."""
    users = [m["content"] for m in messages if m["role"] == "user"]
    if not users:
        raise ValueError("an open-ended prompt without a user turn")
    return users[-1]


def text_metric_columns(
    answers: list[str], references: list[str], options: OEQOptions, device: str | None = None
) -> dict[str, list]:
    """Per-item metric columns (and the BERTScore settings or the reason it is missing)."""
    columns: dict[str, list] = {
        "bleu_sentence": text_metrics.sentence_bleu(answers, references).per_item,
        "rouge2": text_metrics.rouge2(answers, references).per_item,
        "meteor": text_metrics.meteor(answers, references).per_item,
    }
    bert = text_metrics.bertscore_f1(
        answers,
        references,
        model=options.bertscore_model,
        num_layers=options.bertscore_layers,
        batch_size=options.bertscore_batch_size,
        device=device,
    )
    n = len(answers)
    columns["bertscore_f1"] = bert.per_item if bert.per_item is not None else [None] * n
    columns["bertscore_hash"] = [bert.details.get("hash")] * n
    columns["bertscore_missing"] = [bert.missing] * n
    return columns


def add_judgments(rows: list[dict[str, Any]], judge: JudgeSettings) -> dict[str, Any]:
    """Judge ``rows`` in place (judge columns added); returns the judge's usage."""
    verdicts, usage = judge_items(rows, judge)
    described = judge.describe()
    for metric, judgments in verdicts.items():
        for column, values in judgment_columns(metric, judgments).items():
            for row, value in zip(rows, values, strict=True):
                row[column] = value
        for row in rows:
            # per prompt: another judge may give the other prompt's verdicts later (`medinjection judge`)
            row[f"{metric}_prompt"] = described["prompts"][metric]
            row[f"{metric}_prompt_sha256"] = described["prompts_sha256"][metric]
            row[f"{metric}_model"] = described["model"]
    return usage


def score(ctx, items) -> list[dict[str, Any]]:
    """One prediction row per OEQ item: the greedy answer, its length, the metric columns."""
    options = OEQOptions.of(ctx.options)
    engine = ctx.engine
    prompts = [engine.encode(item.messages) for item in items]
    budget = options.max_new_tokens
    generated = engine.generate_greedy(prompts, budget)  # both engines: transformers and vLLM
    rows = []
    for item, prompt, ids in zip(items, prompts, generated, strict=True):
        stopped = bool(ids) and ids[-1] == engine.stop_id
        rows.append(
            {
                "question": user_turn(item.messages),
                "reference": item.reference,
                "answer_text": engine.decode(ids),
                "answer_tokens": len(ids) - int(stopped),
                "finished": stopped or len(ids) < budget,
                "n_prompt_tokens": len(prompt),
            }
        )
    device = str(engine.device) if getattr(engine, "device", None) is not None else None
    columns = text_metric_columns(
        [r["answer_text"] for r in rows], [r["reference"] for r in rows], options, device
    )
    for name, values in columns.items():
        for row, value in zip(rows, values, strict=True):
            row[name] = value
    for metric in JUDGE_METRICS:
        for row in rows:
            row.setdefault(metric, None)
            row.setdefault(f"{metric}_status", None)
    if options.judge is not None and rows:
        add_judgments(rows, options.judge)
    return rows


# --- summary ----------------------------------------------------------------------------------


def bootstrap_statistic(
    stats: np.ndarray, statistic, *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic(stats[resampled rows])`` (items resampled);
    None for fewer than two items (one item resamples to itself: no interval)."""
    from medinjection.evaluation.stats import bootstrap_draws, percentile_interval

    if len(stats) < 2:
        return None
    draws = bootstrap_draws(len(stats), resamples, np.random.default_rng(seed))
    interval = percentile_interval((statistic(stats[d]) for d in draws), confidence)
    return tuple(interval) if interval else None


def paired_corpus_bleu(
    rows: list[dict[str, Any]],
    baseline_rows: list[dict[str, Any]],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Corpus BLEU of two models on the same items: difference, paired bootstrap interval and p-value.

    Items are matched by ``id`` (original order); each resample draws the same items for both.
    """

    def answered(table: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in table if r.get("type") == "OEQ" and (r.get("permutation") or 0) == 0}

    mine, base = answered(rows), answered(baseline_rows)
    ids = sorted(set(mine) & set(base))
    if not ids:
        nan = float("nan")
        return {
            "n": 0,
            "value": None,
            "baseline_value": None,
            "diff": None,
            "ci95": [None, None],
            "test": "paired_approximate_randomization_corpus_bleu",
            "p_value": nan,
        }
    a = text_metrics.bleu_segment_stats(
        [mine[i]["answer_text"] for i in ids], [mine[i]["reference"] for i in ids]
    )
    b = text_metrics.bleu_segment_stats(
        [base[i]["answer_text"] for i in ids], [base[i]["reference"] for i in ids]
    )
    from medinjection.evaluation.stats import bootstrap_draws, percentile_interval

    value, baseline = text_metrics.corpus_bleu_from_stats(a), text_metrics.corpus_bleu_from_stats(b)
    draws = bootstrap_draws(len(ids), resamples, np.random.default_rng(seed))
    distribution = (
        text_metrics.corpus_bleu_from_stats(a[d]) - text_metrics.corpus_bleu_from_stats(b[d]) for d in draws
    )
    return {
        "n": len(ids),
        "value": value,
        "baseline_value": baseline,
        "diff": value - baseline,
        "ci95": percentile_interval(distribution, confidence) if len(ids) >= 2 else [None, None],
        "test": "paired_approximate_randomization_corpus_bleu",
        "p_value": approximate_randomization_p(a, b, resamples=max(resamples, 999), seed=seed),
    }


def approximate_randomization_p(
    a: np.ndarray, b: np.ndarray, *, resamples: int = 999, seed: int = 0
) -> float:
    """Two-sided p-value of a corpus BLEU difference by paired approximate randomization.

    The test sacrebleu's ``--paired-ar`` runs (Riezler and Maxwell, 2005): each resample swaps the two
    systems' statistics of every segment with probability 1/2; p = (#|diff_r| >= |diff| + 1) / (R + 1).
    Unlike a bootstrap p-value it stays honest on a handful of items (three segments allow only eight
    swaps: p cannot fall below 1/4).
    """
    observed = abs(text_metrics.corpus_bleu_from_stats(a) - text_metrics.corpus_bleu_from_stats(b))

    def swapped(swap: np.ndarray) -> bool:
        x, y = np.where(swap[:, None], b, a), np.where(swap[:, None], a, b)
        diff = abs(text_metrics.corpus_bleu_from_stats(x) - text_metrics.corpus_bleu_from_stats(y))
        return bool(diff >= observed - 1e-9)

    if 2 ** len(a) <= resamples + 1:  # few segments: every swap pattern, an exact p-value
        patterns = np.array(np.meshgrid(*[[False, True]] * len(a))).reshape(len(a), -1).T
        return sum(swapped(p) for p in patterns) / len(patterns)
    rng = np.random.default_rng(seed)
    hits = sum(swapped(rng.random(len(a)) < 0.5) for _ in range(resamples))
    return (hits + 1) / (resamples + 1)


def _bootstrap_options(ctx) -> dict[str, Any]:
    """The bootstrap settings of the run: the context's ``bootstrap`` (``resummarize``), else its
    ``EvalArguments`` (``evaluate``), else the stats defaults."""
    given = getattr(ctx, "bootstrap", None)
    if given:
        return {k: v for k, v in given.items() if k in ("resamples", "seed", "confidence")}
    settings = getattr(ctx, "settings", None)
    options = {}
    for ours, theirs in (("resamples", "bootstrap_resamples"), ("seed", "seed")):
        value = getattr(settings, theirs, None)
        if value is not None:
            options[ours] = value
    return options


def _column(rows: list[dict], name: str) -> list:
    return [row.get(name) for row in rows]


def _first(values: list) -> Any:
    return next((v for v in values if v is not None), None)


def summarize(rows: list[dict[str, Any]], ctx=None) -> dict[str, dict[str, Any]]:
    """The OEQ entries of the summary's ``metrics``, from the prediction rows alone."""
    from medinjection.evaluation.stats import metric as metric_entry

    boot = _bootstrap_options(ctx)
    answers, references = _column(rows, "answer_text"), _column(rows, "reference")
    out: dict[str, dict[str, Any]] = {}

    segment_stats = text_metrics.bleu_segment_stats(answers, references)
    value, signature = text_metrics.corpus_bleu(answers, references)
    out["bleu"] = {
        "value": value if rows else None,
        "ci95": bootstrap_statistic(segment_stats, text_metrics.corpus_bleu_from_stats, **boot),
        "n": len(rows),
        "scale": "0-100",
        "signature": signature,
        "kind": "corpus BLEU (sacrebleu)",
    }
    out["bleu_sentence"] = {
        **metric_entry(_column(rows, "bleu_sentence"), **boot),
        "scale": "0-100",
        "signature": text_metrics.bleu_signature(effective_order=True),
        "kind": "mean sentence BLEU (sacrebleu, effective order)",
    }
    out["rouge2"] = {
        **metric_entry(_column(rows, "rouge2"), **boot),
        **text_metrics.rouge2([], []).details,
    }
    out["meteor"] = {**metric_entry(_column(rows, "meteor"), **boot), **text_metrics.meteor([], []).details}

    missing = _first(_column(rows, "bertscore_missing"))
    if missing or not rows:
        out["bertscore_f1"] = {"value": None, "ci95": None, "n": 0, "missing": missing or "no items"}
    else:
        out["bertscore_f1"] = {
            **metric_entry(_column(rows, "bertscore_f1"), **boot),
            "settings": _first(_column(rows, "bertscore_hash")),
        }

    out.update(judge_summary(rows, **boot))
    return out


def judge_summary(rows: list[dict[str, Any]], **bootstrap: Any) -> dict[str, dict[str, Any]]:
    """The judge entries (``judge_binary``, ``judge_graded``) of the rows that were judged."""
    out = {}
    for name in JUDGE_METRICS:
        statuses = _column(rows, f"{name}_status")
        if not any(s is not None for s in statuses):
            continue  # not judged: no entry
        described = {
            "model": _first(_column(rows, f"{name}_model")),
            "prompts": {name: _first(_column(rows, f"{name}_prompt"))},
            # None in predictions written before the hash was recorded
            "prompts_sha256": {name: _first(_column(rows, f"{name}_prompt_sha256"))},
        }
        out[name] = judge_metric(_column(rows, name), statuses, described, name, **bootstrap)
    return out


def check(options: dict[str, Any]) -> None:
    """Before any model is loaded: a named BERTScore Hub model must be available (see ``text_metrics``)."""
    text_metrics.require_bertscore_model(OEQOptions.of(options).bertscore_model)


SCORER = Scorer(
    name="oeq",
    types=frozenset({"OEQ"}),
    score=score,
    metric_columns=METRIC_COLUMNS,
    binary_metrics=frozenset({"judge_binary"}),
    primary_metrics=METRIC_COLUMNS,
    summarize=summarize,
    check=check,
)
