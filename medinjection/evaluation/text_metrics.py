"""Lexical and embedding metrics of open-ended answers: BLEU, ROUGE-2, METEOR, BERTScore-F1.

Each metric is computed by the library the field uses, set up for French and for offline use:

- **BLEU** (sacrebleu): corpus BLEU (the usual figure) and the mean of sentence BLEU (effective
  order, so short answers are not zeroed), both on sacrebleu's 0-100 scale, with sacrebleu's
  signature (tokenizer ``13a``, which keeps accented letters).
- **ROUGE-2** (rouge-score): F-measure of word bigrams with ``FrenchTokenizer``. rouge-score's default
  tokenizer keeps only ``[a-z0-9]``, so "fièvre" becomes "fi vre"; ours keeps every Unicode letter.
- **METEOR** (nltk's ``single_meteor_score``): exact and stem matching (nltk's Snowball French
  stemmer, built into nltk) on the same tokens. nltk's synonym stage looks words up in WordNet, a
  data download, and English WordNet knows no French words anyway: it is replaced by an empty
  synonym source, and every METEOR figure says so (``METEOR_RESOURCES``).
- **BERTScore-F1** (bert-score): opt-in, a model id or a local folder (no model: the metric is
  *missing*, with that reason). A Hub id that cannot be had (offline, or the Hub unreachable, and
  not in the cache) fails before scoring starts (``require_bertscore_model``) instead of costing
  retries per task; a model that still cannot be loaded makes the metric missing, with the reason;
  it is never reported as 0. (An *empty answer* scores 0, bert-score's own rule for an empty sentence.)

Nothing else is fetched at run time (``evaluate.load`` would download metric scripts from the Hub).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METEOR_PARAMS = {"alpha": 0.9, "beta": 3.0, "gamma": 0.5}
METEOR_RESOURCES = (
    "nltk {version} single_meteor_score (alpha 0.9, beta 3, gamma 0.5): exact + stem matches "
    "(nltk SnowballStemmer('french'), no data download); no synonym matches (WordNet not used); "
    "tokens: FrenchTokenizer (NFC, lower case, Unicode letters and digits)"
)
BERTSCORE_FRENCH_MODEL = "bert-base-multilingual-cased"
"""bert-score's own choice for French (``lang="fr"``), layer 9: the paper recipe names it. Not a
default: BERTScore runs only when a model is given."""
NO_BERTSCORE = (
    "no BERTScore model given (bertscore_model; the paper recipe names bert-base-multilingual-cased)"
)


class MetricUnavailable(RuntimeError):
    """A metric's model cannot be had as asked (offline, not cached); the message gives the one-line fix."""


_WORD = re.compile(r"[^\W_]+")


class FrenchTokenizer:
    """Lower-cased runs of Unicode letters and digits, after NFC normalisation.

    A drop-in ``tokenizer`` for rouge-score's ``RougeScorer`` (it only needs ``tokenize``):
    "L'aspirine réduit la fièvre" -> ``["l", "aspirine", "réduit", "la", "fièvre"]``.
    """

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(unicodedata.normalize("NFC", text).lower())


TOKENIZER = FrenchTokenizer()


@dataclass
class MetricScores:
    """Scores of one metric over a list of (answer, reference) pairs.

    ``per_item``: one score per pair (``None`` where the metric is missing); ``details``: what
    the figure used (signature, resources, model); ``missing``: why there is no figure, or ``None``.
    """

    name: str
    per_item: list[float] | None
    details: dict[str, Any] = field(default_factory=dict)
    missing: str | None = None


def _check_pairs(answers: Sequence[str], references: Sequence[str]) -> None:
    if len(answers) != len(references):
        raise ValueError(f"{len(answers)} answers for {len(references)} references")
    for index, (answer, reference) in enumerate(zip(answers, references, strict=True)):
        if not isinstance(answer, str) or not isinstance(reference, str):
            raise ValueError(f"pair {index}: answer and reference must be strings")


# --- BLEU -------------------------------------------------------------------------------------


def _bleu(effective_order: bool = False):
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=effective_order)


def bleu_signature(effective_order: bool = False) -> str:
    """sacrebleu's signature of our BLEU settings (sacrebleu knows it only after scoring something)."""
    metric = _bleu(effective_order)
    metric.corpus_score(["x"], [["x"]])
    return str(metric.get_signature())


def bleu_segment_stats(answers: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """sacrebleu's per-segment sufficient statistics (lengths, n-gram matches and totals).

    Corpus BLEU is a function of their sum, which makes bootstrap resamples cheap: the same
    statistics sacrebleu's own significance tests resample.
    """
    _check_pairs(answers, references)
    metric = _bleu()
    if not answers:
        return np.zeros((0, 2 + 2 * metric.max_ngram_order), dtype=np.int64)
    return np.asarray(metric._extract_corpus_statistics(list(answers), [list(references)]), dtype=np.int64)


def corpus_bleu_from_stats(stats: np.ndarray) -> float:
    """Corpus BLEU (0-100) of summed segment statistics."""
    return float(_bleu()._compute_score_from_stats(list(np.asarray(stats).sum(axis=0))).score)


def corpus_bleu(answers: Sequence[str], references: Sequence[str]) -> tuple[float, str]:
    """(corpus BLEU 0-100, sacrebleu signature)."""
    _check_pairs(answers, references)
    if not answers:
        return math.nan, bleu_signature()
    metric = _bleu()
    score = metric.corpus_score(list(answers), [list(references)])
    return float(score.score), str(metric.get_signature())


def sentence_bleu(answers: Sequence[str], references: Sequence[str]) -> MetricScores:
    """Sentence BLEU (0-100, effective order) of each pair."""
    _check_pairs(answers, references)
    metric = _bleu(effective_order=True)
    scores = [float(metric.sentence_score(a, [r]).score) for a, r in zip(answers, references, strict=True)]
    return MetricScores("bleu_sentence", scores, {"signature": bleu_signature(effective_order=True)})


# --- ROUGE-2 ----------------------------------------------------------------------------------


def rouge2(answers: Sequence[str], references: Sequence[str]) -> MetricScores:
    """ROUGE-2 F-measure of each pair, with ``FrenchTokenizer`` (no stemming)."""
    from rouge_score import rouge_scorer

    _check_pairs(answers, references)
    scorer = rouge_scorer.RougeScorer(["rouge2"], tokenizer=TOKENIZER)
    scores = [float(scorer.score(r, a)["rouge2"].fmeasure) for a, r in zip(answers, references, strict=True)]
    return MetricScores(
        "rouge2",
        scores,
        {"resources": "rouge-score rouge2 F-measure, FrenchTokenizer (accents kept), no stemming"},
    )


# --- METEOR -----------------------------------------------------------------------------------


class NoSynonyms:
    """Stands in for nltk's WordNet reader: no synonyms for any word (no download, stated)."""

    def synsets(self, *_args: Any, **_kwargs: Any) -> list:
        return []


def meteor(answers: Sequence[str], references: Sequence[str]) -> MetricScores:
    """METEOR of each pair: exact and French-stem matches, no synonyms (see ``METEOR_RESOURCES``)."""
    import nltk
    from nltk.stem.snowball import SnowballStemmer
    from nltk.translate.meteor_score import single_meteor_score

    _check_pairs(answers, references)
    stemmer = SnowballStemmer("french")
    wordnet = NoSynonyms()
    scores = [
        float(
            single_meteor_score(
                TOKENIZER.tokenize(r),
                TOKENIZER.tokenize(a),
                preprocess=str.lower,
                stemmer=stemmer,
                wordnet=wordnet,
                **METEOR_PARAMS,
            )
        )
        for a, r in zip(answers, references, strict=True)
    ]
    return MetricScores("meteor", scores, {"resources": METEOR_RESOURCES.format(version=nltk.__version__)})


# --- BERTScore --------------------------------------------------------------------------------


def bertscore_layers(model: str, num_layers: int | None) -> int:
    """The layer bert-score reads: given, else bert-score's tuned one for a known id, else the last."""
    if num_layers is not None:
        return num_layers
    from bert_score.utils import model2layers

    if model in model2layers:
        return model2layers[model]
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model)
    return int(config.num_hidden_layers)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint answers at all (any HTTP status) within ``timeout`` seconds."""
    import httpx
    from huggingface_hub import constants

    try:
        httpx.head(constants.ENDPOINT, timeout=timeout)
    except httpx.HTTPError:
        return False
    return True


def require_bertscore_model(model: str | None) -> None:
    """Fail fast when ``model`` is a Hub id that cannot be had: not in the local Hub cache, and
    ``HF_HUB_OFFLINE`` set or the Hub unreachable. A local folder, a cached id, or no model pass."""
    from pathlib import Path

    if not model or Path(model).expanduser().is_dir():
        return
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return
    fix = (
        f"download it once online (`hf download {model}`), give a local folder, or set bertscore_model none "
        "(BERTScore then reported missing)"
    )
    if constants.is_offline_mode():
        raise MetricUnavailable(
            f"BERTScore model {model!r} is not in the Hub cache ({constants.HF_HUB_CACHE}) and HF_HUB_OFFLINE "
            f"is set: {fix}"
        )
    if not hub_reachable():
        raise MetricUnavailable(
            f"BERTScore model {model!r} is not in the Hub cache ({constants.HF_HUB_CACHE}) and the Hub "
            f"({constants.ENDPOINT}) cannot be reached: {fix}"
        )


def bertscore_f1(
    answers: Sequence[str],
    references: Sequence[str],
    model: str | None = None,
    num_layers: int | None = None,
    batch_size: int = 32,
    device: str | None = None,
) -> MetricScores:
    """BERTScore F1 of each pair with ``model`` (a Hub id or a local folder).

    When ``model`` is ``None`` or cannot be loaded (offline, a wrong path), the metric is missing
    and ``missing`` says why; no score is made up.
    """
    _check_pairs(answers, references)
    if not model:
        return MetricScores("bertscore_f1", None, missing=NO_BERTSCORE)
    try:
        import bert_score
        from bert_score import BERTScorer

        layers = bertscore_layers(model, num_layers)
        scorer = BERTScorer(
            model_type=model,
            num_layers=layers,
            batch_size=batch_size,
            device=device or "cpu",
            use_fast_tokenizer=True,
        )
    except (OSError, ValueError, ImportError, AssertionError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return MetricScores(
            "bertscore_f1", None, {"model": model}, missing=f"BERTScore model {model!r} unavailable: {reason}"
        )
    # bert-score truncates to the tokenizer's model_max_length; a folder saved without one reports
    # a huge sentinel that the fast tokenizer cannot take: use the model's position limit.
    tokenizer, config = scorer._tokenizer, scorer._model.config
    if tokenizer.model_max_length > 1_000_000 and getattr(config, "max_position_embeddings", None):
        tokenizer.model_max_length = int(config.max_position_embeddings)
    details = {
        "model": model,
        "num_layers": layers,
        "hash": scorer.hash,
        "version": bert_score.__version__,
        "model_revision": getattr(config, "_commit_hash", None),
    }
    # bert-score scores a pair with an empty side 0 (its own rule, with a warning), but its encoder
    # of the empty string calls a tokenizer method transformers 5 removed: apply the rule here and
    # give the scorer the other pairs only.
    scores = [0.0] * len(answers)
    kept = [i for i, (a, r) in enumerate(zip(answers, references, strict=True)) if a.strip() and r.strip()]
    if kept:
        _, _, f1 = scorer.score(
            [answers[i] for i in kept], [references[i] for i in kept], batch_size=batch_size
        )
        for i, value in zip(kept, f1.tolist(), strict=True):
            scores[i] = float(value)
    details["empty_pairs_scored_0"] = len(answers) - len(kept)
    return MetricScores("bertscore_f1", scores, details)
