"""Recall and false flags of the decontamination on real data, by n-gram size: FrenchMedMCQA.

    python benchmarks/decontamination.py                 # ../shared/data; n = 3, 4, 5, 8; threshold 0.5
    python benchmarks/decontamination.py --threshold 0.6

The evaluation set is FrenchMedMCQA's dev split read in the published test split's shape (no
``type`` field), indexed by the build's own ``DecontaminationIndex``; the build's own
``DecontaminationFilter.match`` then checks

- every dev item lightly reworded (one word of the question dropped, the options in reverse order,
  one option extended by a word, the answer kept): ``recall`` is the share matched to the item it
  came from;
- the same with two words dropped (``recall_two_words``);
- every train item: ``flagged`` counts those matched to some dev item, ``flagged_distinct`` those
  whose word-set Jaccard with their match is below 0.4 (on reading, distinct questions that share
  a stem), and ``filter_records_per_s`` the filter's speed on them.

Prints one line per n and, last, one JSON object with every figure (keys suffixed ``_n<N>``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from medinjection.core.config import EvalSetSpec, SplitConfig
from medinjection.dataset_builders.sources import get_adapter
from medinjection.dataset_builders.steps.decontaminate import DecontaminationFilter, DecontaminationIndex
from medinjection.dataset_builders.steps.minhash_text import correct_options, near_dedup_text, simplify, words

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def reword(item: dict, dropped: int = 1) -> dict:
    """One (or two) words of the question dropped, options reversed, the first option extended;
    the correct options keep their letters' texts (letters re-assigned)."""
    question = item["question"].split()
    for position in (len(question) // 2, len(question) // 3)[:dropped]:
        if len(question) > 6:
            del question[position]
    letters = sorted(item["answers"])
    texts = [item["answers"][letter] for letter in reversed(letters)]
    texts[0] += " uniquement"
    moved = dict(zip(reversed(letters), letters, strict=True))
    return {
        "instruction": " ".join(question),
        "options": [{"letter": L.upper(), "text": t} for L, t in zip(letters, texts, strict=True)],
        "correct_letters": [moved[letter].upper() for letter in item["correct_answers"]],
    }


def as_record(item: dict) -> dict:
    options = [{"letter": k.upper(), "text": v} for k, v in sorted(item["answers"].items())]
    correct = [letter.upper() for letter in item["correct_answers"]]
    return {"instruction": item["question"], "options": options, "type": "MCQ", "correct_letters": correct}


def check(matcher, record: dict):
    """The filter's own decision: n-gram share, then the correct options must agree."""
    return matcher.match(text_of(record), correct_options(record))


def text_of(record: dict) -> str:
    return simplify(near_dedup_text({**record, "type": "MCQ"}))


def jaccard(a: str, b: str) -> float:
    left, right = set(words(a)), set(words(b))
    return len(left & right) / len(left | right)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "frenchmedmcqa")
    parser.add_argument("--n-grams", type=int, nargs="+", default=[3, 4, 5, 8])
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: not found (the FrenchMedMCQA files of ../shared/data)")
    train = json.loads((args.data / "train.json").read_text(encoding="utf-8"))
    dev = json.loads((args.data / "dev.json").read_text(encoding="utf-8"))
    figures: dict[str, float | int] = {
        "eval_items": len(dev),
        "train_items": len(train),
        "threshold": args.threshold,
    }
    with tempfile.TemporaryDirectory() as tmp:
        eval_file = Path(tmp) / "test.json"  # the published test split's shape
        eval_file.write_text(json.dumps([{k: v for k, v in i.items() if k != "type"} for i in dev]))
        spec = EvalSetSpec(adapter="frenchmedmcqa", path=str(eval_file), splits=["test"], name="dev as test")
        adapter = get_adapter("frenchmedmcqa")(spec)
        ids = [adapter.map_row(raw)["id"] for raw in adapter.iter_raw()]  # dev's record ids, in order
        for n in args.n_grams:
            folder = Path(tmp) / f"n{n}"
            for _ in DecontaminationIndex(str(folder), n, [spec], tmp, split=SplitConfig(), seed=0).run():
                pass
            matcher = DecontaminationFilter(str(folder), n, args.threshold, ["train"])
            found = [check(matcher, reword(item)) for item in dev]
            recall = sum(1 for k, hit in enumerate(found) if hit and hit[0]["id"] == ids[k])
            found2 = [check(matcher, reword(item, dropped=2)) for item in dev]
            recall2 = sum(1 for k, hit in enumerate(found2) if hit and hit[0]["id"] == ids[k])
            start = time.perf_counter()
            matches = [check(matcher, as_record(item)) for item in train]
            seconds = time.perf_counter() - start
            flagged = [(item, hit) for item, hit in zip(train, matches, strict=True) if hit]
            distinct = sum(
                1
                for item, hit in flagged
                if jaccard(text_of(as_record(item)), text_of(as_record(dev[ids.index(hit[0]["id"])]))) < 0.4
            )
            row = {
                f"recall_n{n}": round(recall / len(dev), 3),
                f"recall_two_words_n{n}": round(recall2 / len(dev), 3),
                f"flagged_n{n}": len(flagged),
                f"flagged_distinct_n{n}": distinct,
                f"filter_records_per_s_n{n}": round(len(train) / seconds),
            }
            print(f"n={n}: " + ", ".join(f"{k.rsplit('_n', 1)[0]} {v}" for k, v in row.items()), flush=True)
            figures.update(row)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
