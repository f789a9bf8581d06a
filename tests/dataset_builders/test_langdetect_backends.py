"""langdetect-rs is a drop-in for langdetect: same probabilities and same filter decisions on the shared data."""

from __future__ import annotations

import csv
import json

from medinjection.dataset_builders.steps.language import language_probabilities, load_backend


def shared_texts(shared_data) -> list[str]:
    texts = []
    for name in ("train", "dev"):
        for item in json.loads((shared_data / "frenchmedmcqa" / f"{name}.json").read_text(encoding="utf-8")):
            texts.append(" ".join([item["question"], *item["answers"].values()]))
    for path in sorted((shared_data / "mmlu-medical").glob("*.csv")):
        texts += [" ".join(row[:5]) for row in csv.reader(path.open(encoding="utf-8"))]
    pubmed = json.loads((shared_data / "pubmedqa" / "ori_pqal.json").read_text())
    texts += [item["QUESTION"] for item in pubmed.values()]
    return texts[::3]  # a third of each set (about 1,350 texts): langdetect costs about 2 ms a text


def test_langdetect_rs_gives_the_same_probabilities_as_langdetect(shared_data, require_module):
    require_module("langdetect_rs", "langdetect-rs not installed: pip install 'medinjection[fast]'")
    texts = shared_texts(shared_data)
    reference, fast = load_backend("langdetect", 0), load_backend("langdetect_rs", 0)
    assert reference.__name__ == "langdetect" and fast.__name__ == "langdetect_rs"
    differ = []
    for text in texts:
        a = language_probabilities(load_backend("langdetect", 0), text)
        b = language_probabilities(load_backend("langdetect_rs", 0), text)
        if a != b:
            differ.append((text[:80], a, b))
    assert not differ, f"{len(differ)} of {len(texts)} texts differ, e.g. {differ[:3]}"
    french = sum(1 for text in texts if language_probabilities(fast, text).get("fr", 0) >= 0.5)
    assert 0 < french < len(texts)  # both French and English texts were compared


def test_auto_prefers_langdetect_rs_when_installed(require_module):
    require_module("langdetect_rs", "langdetect-rs not installed: pip install 'medinjection[fast]'")
    assert load_backend("auto").__name__ == "langdetect_rs"
