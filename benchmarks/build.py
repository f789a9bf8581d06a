"""Benchmark of the whole build at scale, with planted duplicates of known kinds.

Usage:
    python benchmarks/build.py --records 571436            # the full MedInjection-FR scale
    python benchmarks/build.py --records 20000 --tasks 2

The shared data (``../shared/data``: FrenchMedMCQA train+dev, MMLU medical, PubMedQA) is replicated
and perturbed to ``--records`` source rows, written once to ``--cache`` in FrenchMedMCQA's format
(one folder per provenance, ``train_NN.json`` / ``dev_NN.json`` / ``test_NN.json`` shards):

* distinct items: a FrenchMedMCQA item with 40 % of its words replaced by other words of the corpus
  (two such variants of one item share about 7 % of their word 2-grams: distinct questions);
* planted twins of some distinct items, in another provenance and often another split, of four
  kinds: ``exact`` copy, ``reordered`` options, ``reworded`` (a few words replaced or dropped) and
  ``retranslated`` (a fixed paraphrase table, swapped words and one dropped word, standing in for a
  second translation of the same English item; mechanical, not a real translation);
* English rows (MMLU medical, PubMedQA questions with yes/no/maybe options, 1 %) for the language filter.

Then the real ``build()`` runs over it. ``planted_duplicate_recall``: share of planted pairs of which
one copy was removed as ``exact_duplicate``/``near_duplicate``/``contamination`` naming the other
copy. ``wrongly_merged``: near-duplicate or contamination rejects that pair items made from two
different shared-data questions that are not themselves the same item (FrenchMedMCQA asks some
questions again across years: two bases whose question + options pass the build's own check are one
item, and merges across them are counted apart as ``same_item_bases_merged``);
``same_base_merged``: those pairing two random variants of the same question (an artifact of replicating 2,483 questions 230 times: short items with one-word options
can come out nearly alike), reported apart.
``peak_rss_gib``: the largest sum of RSS over the whole process tree (this process and datatrove's
workers), sampled every 0.2 s with psutil; also the largest single process, and ``ru_maxrss`` of
this process and of its reaped children. ``cpu_s``: CPU seconds of the tree (a wall time that
other load on the machine does not inflate; with 2 cores the wall time cannot go below cpu_s / 2).
Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SHARD = 20000
KINDS = ("exact", "reordered", "reworded", "retranslated")
PARAPHRASES = [
    ("parmi les propositions suivantes", "parmi les affirmations suivantes"),
    ("indiquer", "cocher"),
    ("laquelle", "celle qui"),
    ("est exacte", "est juste"),
    ("est fausse", "est inexacte"),
    ("une seule", "une unique"),
    ("concernant", "à propos de"),
    ("quelle est", "quelle serait"),
    ("le traitement", "la prise en charge"),
    ("peut", "pourrait"),
]


def base_items() -> list[dict]:
    items = []
    for name in ("train", "dev"):
        items += json.loads((SHARED / "frenchmedmcqa" / f"{name}.json").read_text(encoding="utf-8"))
    return items


def base_groups(threshold: float) -> list[int]:
    """The group of each base question: FrenchMedMCQA asks some questions again across years (37 pairs
    in train+dev, benchmarks/dedup_precision.py), so variants of two such questions are variants of one
    item. Bases are grouped when their question + options pass the build's own check (Jaccard of word
    1-grams >= threshold and the same correct options)."""
    from medinjection.dataset_builders.steps.minhash_text import simplify
    from medinjection.dataset_builders.steps.near_dedup import same_answer, shingle_jaccard, shingles
    from medinjection.dataset_builders.steps.normalize import normalize_text

    rows = []
    for item in base_items():
        answers = {letter: normalize_text(text) for letter, text in item["answers"].items()}
        texts = sorted(answers.values(), key=str.casefold)
        rows.append(
            {
                "grams": shingles(
                    simplify(" ".join([normalize_text(item["question"]), *texts]).casefold()), 1
                ),
                "type": "MCQ",
                "correct": sorted(answers[x].casefold() for x in item["correct_answers"]),
            }
        )
    group = list(range(len(rows)))

    def find(x: int) -> int:
        while group[x] != x:
            group[x] = group[group[x]]
            x = group[x]
        return x

    for i, a in enumerate(rows):
        for j in range(i + 1, len(rows)):
            b = rows[j]
            if shingle_jaccard(a["grams"], b["grams"]) >= threshold and same_answer(a, b):
                group[find(i)] = find(j)
    return [find(i) for i in range(len(rows))]


def english_items() -> list[dict]:
    rows = []
    for path in sorted((SHARED / "mmlu-medical").glob("*.csv")):
        for row in csv.reader(path.open(encoding="utf-8")):
            rows.append(
                {
                    "question": row[0],
                    "answers": dict(zip("abcd", row[1:5], strict=True)),
                    "correct": [row[5].lower()],
                }
            )
    for item in json.loads((SHARED / "pubmedqa" / "ori_pqal.json").read_text()).values():
        rows.append(
            {
                "question": item["QUESTION"],
                "answers": {"a": "yes", "b": "no", "c": "maybe"},
                "correct": ["abc"["yes no maybe".split().index(item["final_decision"])]],
            }
        )
    return rows


def mutate_words(text: str, rng: random.Random, vocab: list[str], share: float) -> str:
    return " ".join(rng.choice(vocab) if rng.random() < share else w for w in text.split())


def distinct(base: dict, k: int, rng: random.Random, vocab: list[str]) -> dict:
    answers = {letter: mutate_words(text, rng, vocab, 0.4) for letter, text in base["answers"].items()}
    return {
        "id": f"d{k}",
        "question": mutate_words(base["question"], rng, vocab, 0.4),
        "answers": answers,
        "correct_answers": list(base["correct_answers"]),
        "type": base["type"],
        "subject_name": base.get("subject_name", ""),
        "nbr_correct_answers": base.get("nbr_correct_answers"),
    }


def reorder(item: dict, rng: random.Random) -> dict:
    letters = sorted(item["answers"])
    texts = [item["answers"][letter] for letter in letters]
    order = list(range(len(texts)))
    while len(order) > 1 and order == sorted(order):
        rng.shuffle(order)
    new = {letters[i]: texts[j] for i, j in enumerate(order)}
    correct = [letters[i] for i, j in enumerate(order) if letters[j] in item["correct_answers"]]
    return {**item, "answers": new, "correct_answers": correct}


def reword(text: str, rng: random.Random, vocab: list[str]) -> str:
    words = text.split()
    if len(words) > 6:
        words[rng.randrange(len(words))] = rng.choice(vocab)
        del words[rng.randrange(len(words))]
    return " ".join(words)


def retranslate(text: str, rng: random.Random) -> str:
    lowered = text
    for a, b in PARAPHRASES:
        lowered = lowered.replace(a, b).replace(a.capitalize(), b.capitalize())
    words = lowered.split()
    if len(words) > 5:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        del words[rng.randrange(len(words))]
    return " ".join(words)


def twin(item: dict, kind: str, rng: random.Random, vocab: list[str]) -> dict:
    if kind == "exact":
        return dict(item)
    if kind == "reordered":
        return reorder(item, rng)
    if kind == "reworded":
        return {**item, "question": reword(item["question"], rng, vocab)}
    return {
        **item,
        "question": retranslate(item["question"], rng),
        "answers": {letter: retranslate(text, rng) for letter, text in item["answers"].items()},
    }


def make_sources(records: int, cache: Path, seed: int = 0, planted_share: float = 0.05) -> dict:
    """Write the source shards once; return the manifest (planted pairs by source id)."""
    manifest_path = cache / "manifest.json"
    if manifest_path.exists():
        return json.loads(manifest_path.read_text())
    rng = random.Random(seed)
    bases = base_items()
    vocab = sorted({w for item in bases for w in item["question"].split() if w.isalpha() and len(w) > 3})
    english = english_items()
    n_english = records // 100
    n_planted = int(records * planted_share)
    n_distinct = records - n_english - n_planted
    rows: dict[tuple[str, str], list[dict]] = {}
    provenances = ("native", "translated", "synthetic")
    splits = ("train", "dev", "test")
    distinct_rows = []
    for k in range(n_distinct):
        item = distinct(bases[k % len(bases)], k, rng, vocab)
        place = (rng.choices(provenances, (0.15, 0.72, 0.13))[0], rng.choices(splits, (0.88, 0.07, 0.05))[0])
        rows.setdefault(place, []).append(item)
        distinct_rows.append((item, place))
    planted = []
    for k, index in enumerate(rng.sample(range(n_distinct), n_planted)):
        item, (prov, split) = distinct_rows[index]
        kind = KINDS[k % len(KINDS)]
        copy = {**twin(item, kind, rng, vocab), "id": f"p{k}-{kind}"}
        place = (rng.choice([p for p in provenances if p != prov]), rng.choices(splits, (0.8, 0.1, 0.1))[0])
        rows.setdefault(place, []).append(copy)
        planted.append({"original": item["id"], "twin": copy["id"], "kind": kind})
    for k in range(n_english):
        row = english[k % len(english)]
        rows.setdefault(("translated", "train"), []).append(
            {
                "id": f"e{k}",
                "question": row["question"],
                "answers": row["answers"],
                "correct_answers": row["correct"],
                "type": "single",
                "subject_name": "english",
            }
        )
    for (prov, split), items in rows.items():
        folder = cache / prov
        folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(items), SHARD):
            (folder / f"{split}_{start // SHARD:03d}.json").write_text(
                json.dumps(items[start : start + SHARD], ensure_ascii=False), encoding="utf-8"
            )
    manifest = {
        "records": records,
        "planted": planted,
        "english": n_english,
        "distinct": n_distinct,
        "bases": len(bases),
    }
    manifest_path.write_text(json.dumps(manifest))
    return manifest


class TreeSampler(threading.Thread):
    """Every 0.2 s over this process and all its descendants (datatrove's forkserver workers are not
    our direct children, so ``RUSAGE_CHILDREN`` misses them): the largest sum of RSS, the largest
    single RSS, and the CPU seconds (user + system) each process used, summed at the end."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak = 0
        self.peak_single = 0
        self.cpu: dict[tuple[int, float], float] = {}
        self.done = threading.Event()

    def run(self):
        import psutil

        me = psutil.Process()
        while not self.done.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                    times = proc.cpu_times()
                    self.cpu[(proc.pid, proc.create_time())] = times.user + times.system
                except psutil.Error:
                    continue
                total += rss
                self.peak_single = max(self.peak_single, rss)
            self.peak = max(self.peak, total)
            self.done.wait(0.2)


def stage_seconds(root: Path) -> dict[str, float]:
    """Wall time of each stage: first log line of its first task to last log line of its last task."""
    from datetime import datetime

    from medinjection.core.layout import Layout

    times = {}
    for folder in sorted((Layout(root).build / "logs").iterdir()):
        stamps = []
        for log in (folder / "logs").glob("*.log"):
            lines = [line for line in log.read_text().splitlines() if line[:2] == "20" and " | " in line]
            stamps += (
                [
                    datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
                    for line in (lines[0], lines[-1])
                ]
                if lines
                else []
            )
        if stamps:
            times[folder.name] = round(max(stamps) - min(stamps), 1)
    return times


def evaluate(root: Path, manifest: dict, threshold: float) -> dict:
    from medinjection.core.layout import Layout
    from medinjection.core.schema import make_id

    groups = base_groups(threshold)

    source_of = {}
    pairs = {}
    for pair in manifest["planted"]:
        a, b = make_id("frenchmedmcqa", pair["original"]), make_id("frenchmedmcqa", pair["twin"])
        pairs[frozenset((a, b))] = pair["kind"]
        source_of[a], source_of[b] = pair["original"], pair["twin"]
    # the base item of every generated row: d<k> is a variant of base k % n, a twin is its original's
    base = {make_id("frenchmedmcqa", f"d{k}"): k % manifest["bases"] for k in range(manifest["distinct"])}
    for pair in manifest["planted"]:
        base[make_id("frenchmedmcqa", pair["twin"])] = base[make_id("frenchmedmcqa", pair["original"])]
    found: dict[frozenset, str] = {}
    wrong, same_base, same_item = [], 0, 0
    for row in Layout(root).iter_rejects():
        if row["reason"] not in ("exact_duplicate", "near_duplicate", "contamination"):
            continue
        key = frozenset((row["id"], row["kept_id"]))
        if key in pairs:
            found[key] = pairs[key]
        elif row["reason"] == "exact_duplicate":
            continue
        elif base.get(row["id"], -1) == base.get(row["kept_id"], -2):
            same_base += 1
        elif (
            row["id"] in base
            and row["kept_id"] in base
            and (groups[base[row["id"]]] == groups[base[row["kept_id"]]])
        ):
            same_item += 1
        else:
            wrong.append(
                {
                    "id": row["id"],
                    "kept_id": row["kept_id"],
                    "reason": row["reason"],
                    "detail": row["detail"],
                }
            )
    total = Counter(pairs.values())
    found = Counter(found.values())
    return {
        "planted": sum(total.values()),
        "planted_found": sum(found.values()),
        "recall_by_kind": {kind: round(found[kind] / total[kind], 4) for kind in KINDS if total[kind]},
        "wrongly_merged": len(wrong),
        "same_base_merged": same_base,
        "same_item_bases_merged": same_item,
        "wrong_examples": wrong[:5],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=571436)
    parser.add_argument("--cache", type=Path, default=None, help="where the source shards are written once")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only-sources", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import yaml

    from medinjection.core.config import load_build_config
    from medinjection.core.layout import Layout
    from medinjection.dataset_builders.build import build

    cache = args.cache or Path(f"/tmp/medinjection-bench/sources-{args.records}")
    output = args.output or Path(f"/tmp/medinjection-bench/build-{args.records}")
    started = time.time()
    if args.only_sources:
        make_sources(args.records, cache)
        return
    if not (cache / "manifest.json").exists():  # in a child process, so its memory is not this build's
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--records",
                str(args.records),
                "--cache",
                str(cache),
                "--only-sources",
            ],
            check=True,
        )
    manifest = json.loads((cache / "manifest.json").read_text())
    print(f"sources ready in {time.time() - started:.1f}s at {cache}", file=sys.stderr)
    config_path = cache / "bench.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "name": "bench",
                "sources": [
                    {"adapter": "frenchmedmcqa", "path": prov, "provenance": prov}
                    for prov in ("native", "translated", "synthetic")
                ],
                "executor": {"type": "local", "tasks": args.tasks, "workers": args.workers},
            }
        )
    )
    config = load_build_config(config_path)
    shutil.rmtree(output, ignore_errors=True)
    load_before = os.getloadavg()[0]
    sampler = TreeSampler()
    sampler.start()
    started = time.time()
    build(config, output, overwrite=True, progress=False)
    wall = time.time() - started
    sampler.done.set()
    sampler.join()
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    stats = Layout(output).stats()
    quality = evaluate(output, manifest, config.dedup.threshold)
    result = {
        "records": args.records,
        "wall_s": round(wall, 1),
        "records_per_s": round(args.records / wall, 1),
        "cpu_s": round(sum(sampler.cpu.values()), 1),
        "load_avg_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "peak_rss_gib": round(sampler.peak / 2**30, 3),
        "peak_rss_single_process_gib": round(sampler.peak_single / 2**30, 3),
        "peak_rss_self_gib": round(self_rss, 3),
        "peak_rss_largest_child_gib": round(child_rss, 3),
    }
    for stage, seconds in stage_seconds(output).items():
        result[f"{stage}_s"] = seconds
    result.update(
        {
            "kept": stats["records"]["kept"],
            "rejects": stats["rejects"],
            "planted": quality["planted"],
            "planted_found": quality["planted_found"],
            "recall_by_kind": quality["recall_by_kind"],
            "planted_duplicate_recall": round(quality["planted_found"] / max(quality["planted"], 1), 4),
            "wrongly_merged": quality["wrongly_merged"],
            "same_base_merged": quality["same_base_merged"],
            "same_item_bases_merged": quality["same_item_bases_merged"],
        }
    )
    if quality["wrong_examples"]:
        print(
            "wrongly merged (first 5):",
            json.dumps(quality["wrong_examples"], ensure_ascii=False, indent=1),
            file=sys.stderr,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
