"""Language identification alone: langdetect against langdetect-rs, through the language filter's own
calls (``load_backend``, ``language_text``, ``language_probabilities``), on the real shared data.

Usage:
    python benchmarks/language_id.py              # every shared-data item, 3 passes per backend

Texts: what the filter reads of each record (question + options, truncated at 2,000 characters):
FrenchMedMCQA train+dev (French), MMLU medical and PubMedQA questions (English). Both backends are
seeded (``DetectorFactory.seed = 0``) and warmed up on 50 texts first (langdetect loads its
language profiles on the first call). Each pass runs over every text; the figure is the median
pass. The outputs are compared text by text (languages and probabilities).

Last line: one JSON object: texts, langdetect_ms_per_text, langdetect_rs_ms_per_text, speedup,
identical_outputs.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_texts(shared: Path) -> list[str]:
    from medinjection.dataset_builders.steps.language import language_text

    records = []
    for name in ("train", "dev"):
        for item in json.loads((shared / "frenchmedmcqa" / f"{name}.json").read_text(encoding="utf-8")):
            options = [{"letter": k.upper(), "text": v} for k, v in sorted(item["answers"].items())]
            records.append({"instruction": item["question"], "options": options, "type": "MCQ"})
    for path in sorted((shared / "mmlu-medical").glob("*.csv")):
        for row in csv.reader(path.open(encoding="utf-8")):
            options = [
                {"letter": letter, "text": text} for letter, text in zip("ABCD", row[1:5], strict=True)
            ]
            records.append({"instruction": row[0], "options": options, "type": "MCQU"})
    for item in json.loads((shared / "pubmedqa" / "ori_pqal.json").read_text()).values():
        records.append({"instruction": item["QUESTION"], "options": [], "type": "OEQ", "answer": ""})
    return [language_text(record) for record in records]


def timed_pass(module, texts: list[str]) -> tuple[float, list[dict]]:
    from medinjection.dataset_builders.steps.language import language_probabilities

    started = time.perf_counter()
    out = [language_probabilities(module, text) for text in texts]
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()

    from medinjection.dataset_builders.steps.language import load_backend

    texts = shared_texts(args.shared)
    result: dict = {"texts": len(texts)}
    outputs = {}
    for name in ("langdetect", "langdetect_rs"):
        module = load_backend(name, 0)
        timed_pass(module, texts[:50])
        seconds = []
        for _ in range(args.passes):
            elapsed, outputs[name] = timed_pass(module, texts)
            seconds.append(elapsed)
        result[f"{name}_ms_per_text"] = round(statistics.median(seconds) / len(texts) * 1000, 4)
        result[f"{name}_passes_s"] = [round(s, 2) for s in seconds]
    result["speedup"] = round(result["langdetect_ms_per_text"] / result["langdetect_rs_ms_per_text"], 1)
    result["identical_outputs"] = sum(a == b for a, b in zip(*outputs.values(), strict=True))
    result["french_texts"] = sum(1 for probs in outputs["langdetect"] if probs.get("fr", 0) >= 0.5)
    result["machine"] = f"{platform.machine()}, Python {platform.python_version()}"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
