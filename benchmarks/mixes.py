"""Time and peak memory of building the seven training mixes from a full-size (571K-record) build.

    python benchmarks/mixes.py                       # 571,427 records, mixes of 33,493
    python benchmarks/mixes.py --records 50000 --size 3000 --workdir /tmp/mixbench

The build folder is made quickly by writing schema-shaped Parquet directly (no pipeline run): the
real rows of ``../shared/data`` (FrenchMedMCQA MCQ/MCQU, MMLU medical MCQU, PubMedQA open-ended),
replicated and perturbed (a numbered suffix on the question, a fresh id) to the paper's counts per
provenance (native 77,247, translated 417,674, synthetic 76,506) and its split proportions
(500,439 / 43,066 / 27,931), in shards of at most 100,000 rows like a multi-task build. When
``../shared/data`` is absent, generated French rows are used instead (``"base"`` says which).

The mixes are built in a fresh child process (``build_mixes(..., write_card=False)``); its wall time
and peak RSS (``getrusage(RUSAGE_CHILDREN)``) are reported. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
PAPER = {"native": 77_247, "translated": 417_674, "synthetic": 76_506}
SPLIT_SHARE = {"train": 500_439, "validation": 43_066, "test": 27_931}
SHARD_ROWS = 100_000


def base_records() -> tuple[list[dict], str]:
    """Real rows of ../shared/data as schema fields (or generated ones when it is absent)."""
    from medinjection.core.schema import format_letters

    base = []
    if (SHARED / "frenchmedmcqa").is_dir():
        for split in ("train", "dev"):
            for item in json.loads((SHARED / "frenchmedmcqa" / f"{split}.json").read_text()):
                correct = [c.upper() for c in item["correct_answers"]]
                base.append(
                    {
                        "type": "MCQU" if item["type"] == "simple" else "MCQ",
                        "instruction": item["question"],
                        "options": [
                            {"letter": k.upper(), "text": v} for k, v in sorted(item["answers"].items())
                        ],
                        "correct_letters": correct,
                        "answer": format_letters(correct),
                        "subject": item.get("subject_name") or "",
                    }
                )
        for path in sorted((SHARED / "mmlu-medical").glob("*.csv")):
            with path.open(encoding="utf-8", newline="") as handle:
                for row in csv.reader(handle):
                    base.append(
                        {
                            "type": "MCQU",
                            "instruction": row[0],
                            "options": [
                                {"letter": letter, "text": text}
                                for letter, text in zip("ABCD", row[1:5], strict=True)
                            ],
                            "correct_letters": [row[5]],
                            "answer": row[5],
                            "subject": path.stem,
                        }
                    )
        for item in json.loads((SHARED / "pubmedqa" / "ori_pqal.json").read_text()).values():
            base.append(
                {
                    "type": "OEQ",
                    "instruction": item["QUESTION"],
                    "context": " ".join(item["CONTEXTS"]),
                    "answer": item["LONG_ANSWER"],
                }
            )
        return base, "shared-data"
    rng = random.Random(0)
    for i in range(3000):
        kind = ("MCQ", "MCQU", "OEQ")[i % 3]
        text = f"Cas clinique {i} : quelle est la conduite à tenir devant une douleur thoracique aiguë ?"
        if kind == "OEQ":
            base.append(
                {
                    "type": kind,
                    "instruction": text,
                    "answer": "Un électrocardiogramme en urgence." * rng.randint(1, 4),
                }
            )
        else:
            correct = ["A", "C"] if kind == "MCQ" else ["B"]
            base.append(
                {
                    "type": kind,
                    "instruction": text,
                    "options": [{"letter": x, "text": f"Réponse {x} {i}"} for x in "ABCDE"],
                    "correct_letters": correct,
                    "answer": ", ".join(correct),
                }
            )
    return base, "generated"


def make_build(root: Path, records: int, seed: int = 0) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medinjection.core.chat import DEFAULT_CHAT_VERSION, to_messages
    from medinjection.core.layout import shard_schema
    from medinjection.core.schema import new_record

    base, kind = base_records()
    total_paper = sum(PAPER.values())
    total_split = sum(SPLIT_SHARE.values())
    rng = random.Random(seed)
    written = 0
    for p_index, (provenance, n_paper) in enumerate(PAPER.items()):
        n_prov = round(records * n_paper / total_paper) if p_index < 2 else records - written
        written += n_prov
        split_sizes = {s: round(n_prov * n / total_split) for s, n in SPLIT_SHARE.items()}
        split_sizes["train"] = n_prov - split_sizes["validation"] - split_sizes["test"]
        for split, n in split_sizes.items():
            folder = root / "data" / provenance
            folder.mkdir(parents=True, exist_ok=True)
            for shard, start in enumerate(range(0, n, SHARD_ROWS)):
                rows = []
                for k in range(start, min(n, start + SHARD_ROWS)):
                    item = base[rng.randrange(len(base))]
                    generation = (
                        None
                        if provenance == "native"
                        else {"model": "gpt-4o", "prompt_version": "v1", "seed_id": str(k)}
                    )
                    record = new_record(
                        provenance=provenance,
                        source=f"bench_{provenance}",
                        source_id=f"{split}-{k}",
                        source_split=split,
                        origin="benchmark",
                        language="fr",
                        language_score=0.99,
                        generation=generation,
                        **{**item, "instruction": f"{item['instruction']} (variante {k})"},
                    )
                    record["messages"] = to_messages(record)
                    rows.append(record)
                pq.write_table(  # as the build writes shards: the chat format version in the footer
                    pa.Table.from_pylist(rows, schema=shard_schema(DEFAULT_CHAT_VERSION)),
                    folder / f"{split}-{shard:05d}.parquet",
                )
    (root / "bench.json").write_text(json.dumps({"records": records, "base": kind, "footer": "chat_version"}))
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=sum(PAPER.values()))
    parser.add_argument("--size", type=int, default=33_493)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--types", default="paper", help="task types of the mixes (medinjection mix --types)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/medinjection-bench-mixes"))
    args = parser.parse_args()

    root = args.workdir / f"build-{args.records}"
    marker = root / "bench.json"
    started = time.perf_counter()
    previous = json.loads(marker.read_text()) if marker.exists() else {}
    if previous.get("records") == args.records and previous.get("footer") == "chat_version":
        kind, make_s = json.loads(marker.read_text())["base"], 0.0
    else:
        kind = make_build(root, args.records)
        make_s = time.perf_counter() - started
    print(f"build folder {root} ({kind}) ready in {make_s:.1f} s", file=sys.stderr)
    code = (
        "from medinjection.dataset_builders.mixes import build_mixes; "
        f"r = build_mixes({str(root)!r}, size={args.size}, seed={args.seed}, write_card=False, "
        f"types={args.types!r}); print(r.size)"
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    mix_bytes = sum(
        p.stat().st_size for p in (root / "data").glob("*/train-*.parquet") if p.parent.name not in PAPER
    )
    print(
        json.dumps(
            {
                "records": args.records,
                "base": kind,
                "mixes": 7,
                "size": int(done.stdout.strip().splitlines()[-1]),
                "seed": args.seed,
                "types": args.types,
                "wall_s": round(wall, 2),
                "peak_rss_gib": round(peak_kib / 2**20, 3),
                "mix_files_mib": round(mix_bytes / 2**20, 1),
                "make_build_s": round(make_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
