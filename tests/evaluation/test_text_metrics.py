"""BLEU, ROUGE-2, METEOR and BERTScore on short French answers, against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from medinjection.evaluation import text_metrics as tm

REFERENCE = "La fièvre persiste depuis trois jours"
ANSWER = "Une fièvre persiste depuis deux jours"


def test_french_tokenizer_keeps_accented_letters():
    assert tm.FrenchTokenizer().tokenize("L'aspirine réduit la FIÈVRE (38,5 °C).") == [
        "l",
        "aspirine",
        "réduit",
        "la",
        "fièvre",
        "38",
        "5",
        "c",
    ]
    # NFC: a decomposed "è" (e + combining grave) is the same token as the composed one
    assert tm.TOKENIZER.tokenize("fie\u0300vre") == ["fièvre"]


def test_rouge2_keeps_fievre():
    # bigrams of the reference: la fièvre, fièvre persiste, persiste depuis, depuis trois, trois jours
    # of the answer: une fièvre, fièvre persiste, persiste depuis, depuis deux, deux jours
    # shared: 2 of 5 on each side -> P = R = F = 0.4
    assert tm.rouge2([ANSWER], [REFERENCE]).per_item == [pytest.approx(0.4)]
    # rouge-score's default tokenizer splits "fièvre" into "fi vre": 3 shared bigrams of 6, F = 0.5
    from rouge_score import rouge_scorer

    default = rouge_scorer.RougeScorer(["rouge2"]).score(REFERENCE, ANSWER)["rouge2"].fmeasure
    assert default == pytest.approx(0.5)
    # an answer that differs from the reference only by its accents shares no bigram with it
    assert tm.rouge2(["La fievre persiste"], ["La fièvre persiste"]).per_item == [0.0]


def test_meteor_by_hand():
    # exact matches fièvre, persiste, depuis, jours: P = R = 4/6, Fmean = P*R / (0.9 P + 0.1 R) = 2/3
    # chunks: (fièvre persiste depuis) and (jours) -> 2; penalty = 0.5 * (2/4)^3 = 0.0625
    # METEOR = (1 - 0.0625) * 2/3 = 0.625
    scores = tm.meteor([ANSWER], [REFERENCE])
    assert scores.per_item == [pytest.approx(0.625)]
    assert "no synonym matches (WordNet not used)" in scores.details["resources"]
    assert "SnowballStemmer('french')" in scores.details["resources"]
    # French stems match: fièvres/fièvre (fievr), persistent/persiste? no: "persistent" -> "persistent",
    # "persiste" -> "persist"; so 1 of 3 tokens matches: P = R = 1/3, one chunk, penalty 0.5 -> 1/6
    assert tm.meteor(["Les fièvres persistent"], ["La fièvre persiste"]).per_item == [pytest.approx(1 / 6)]


def test_bleu_corpus_and_sentence():
    # 13a tokens: answer and reference 6 tokens each; matches 1-grams 4/6, 2-grams 2/5, 3-grams 1/4, 4-grams 0/3
    # sentence BLEU with effective order (exp smoothing of the 4-gram: 1 / (2 * 3)):
    expected = 100 * math.exp((math.log(4 / 6) + math.log(2 / 5) + math.log(1 / 4) + math.log(1 / 6)) / 4)
    assert tm.sentence_bleu([ANSWER], [REFERENCE]).per_item == [pytest.approx(expected)]
    value, signature = tm.corpus_bleu([ANSWER], [REFERENCE])
    assert value == pytest.approx(expected)
    assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    # corpus BLEU from the summed segment statistics equals sacrebleu's corpus score
    answers = [ANSWER, "Le patient est guéri", REFERENCE]
    references = [REFERENCE, "Le patient est guéri depuis hier", REFERENCE]
    stats = tm.bleu_segment_stats(answers, references)
    assert tm.corpus_bleu_from_stats(stats) == pytest.approx(tm.corpus_bleu(answers, references)[0])
    assert tm.corpus_bleu([REFERENCE], [REFERENCE])[0] == pytest.approx(100.0)


def test_pairs_must_line_up():
    with pytest.raises(ValueError, match="2 answers for 1 references"):
        tm.rouge2(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="pair 0"):
        tm.meteor([None], ["a"])


def make_tiny_bert(path):
    """A tiny random BERT and a WordPiece tokenizer trained on a few French lines (nothing downloaded)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    lines = [REFERENCE, ANSWER, "Le patient présente une douleur thoracique depuis hier."] * 10
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(lines, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(path)  # no model_max_length: bert-score must cope (it uses the position limit)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(path)
    return path


def test_bertscore_with_a_tiny_local_bert(tmp_path, monkeypatch):
    import bert_score
    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = str(make_tiny_bert(tmp_path / "bert"))
    answers = [REFERENCE, "Le patient présente une douleur.", ""]
    references = [REFERENCE, "Une fièvre persiste depuis deux jours", REFERENCE]
    scores = tm.bertscore_f1(answers, references, model=model)
    assert scores.missing is None and len(scores.per_item) == 3
    assert scores.per_item[0] == pytest.approx(1.0, abs=1e-5)  # identical strings
    assert scores.per_item[1] < 0.999
    assert scores.per_item[2] == 0.0 and scores.details["empty_pairs_scored_0"] == 1  # bert-score's rule
    assert scores.details["num_layers"] == 2  # a local model not in bert-score's table: its last layer
    assert scores.details["hash"] == (
        f"{model}_L2_no-idf_version={bert_score.__version__}(hug_trans={transformers.__version__})_fast-tokenizer"
    )
    # the layer can be chosen, and changes the score of different strings
    first_layer = tm.bertscore_f1(answers, references, model=model, num_layers=1)
    assert first_layer.details["num_layers"] == 1
    assert first_layer.per_item[0] == pytest.approx(1.0, abs=1e-5)
    assert first_layer.per_item[1] != pytest.approx(scores.per_item[1], abs=1e-6)


def test_bertscore_missing_model_is_missing_not_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scores = tm.bertscore_f1([ANSWER], [REFERENCE], model=str(tmp_path / "no-such-model"))
    assert scores.per_item is None
    assert scores.missing.startswith(f"BERTScore model '{tmp_path / 'no-such-model'}' unavailable: ")
    none = tm.bertscore_f1([ANSWER], [REFERENCE], model=None)
    assert none.per_item is None and "no BERTScore model given" in none.missing
