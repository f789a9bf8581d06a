"""Precision check of the near-duplicate defaults on real data: FrenchMedMCQA train + dev.

    python benchmarks/dedup_precision.py                        # ../shared/data, thresholds 0.4 .. 0.9
    python benchmarks/dedup_precision.py --pairs pairs.md       # also write every pair for inspection

Builds the real FrenchMedMCQA files with the near-dedup threshold lowered to ``--floor`` (exact
dedup and the language filter as usual, no decontamination), so that every pair LSH proposes and the
checks (same correct options, same context) accept at ``--floor`` or above is in ``rejects/``. Each
such pair is listed with the exact Jaccard similarity of its word n-gram sets, so the pairs a higher
threshold would merge are the pairs above it. The last line counts the pairs at each threshold.

Labelling a pair (same item / distinct items) is done by reading ``--pairs``: what was found for the
defaults is in docs/architecture.md (Near-duplicates), with the labels and the command.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from medinjection.core.config import load_build_config
from medinjection.core.layout import Layout
from medinjection.dataset_builders.build import build
from medinjection.dataset_builders.steps.minhash_text import near_dedup_text, simplify
from medinjection.dataset_builders.steps.near_dedup import shingle_jaccard, shingles

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def item_text(record: dict) -> str:
    options = " / ".join(f"{o['letter']}. {o['text']}" for o in record.get("options") or [])
    return f"{record['instruction']} [{options}] -> {record.get('answer', '')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED / "frenchmedmcqa")
    parser.add_argument("--floor", type=float, default=0.4, help="the lowered threshold of the check build")
    parser.add_argument("--n-grams", type=int, default=1)
    parser.add_argument("--pairs", type=Path, default=None, help="write the pairs as Markdown here")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: not found (the FrenchMedMCQA files of ../shared/data)")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = {
            "name": "dedup-precision",
            "sources": [{"adapter": "frenchmedmcqa", "path": str(args.data)}],
            "dedup": {"threshold": args.floor, "n_grams": args.n_grams},
            "decontamination": {"enabled": False},
            "executor": {"type": "local", "tasks": 2, "workers": 2},
        }
        (folder / "build.yaml").write_text(yaml.safe_dump(config))
        layout = Layout(build(load_build_config(folder / "build.yaml"), folder / "out", progress=False))
        kept = {
            row["id"]: row
            for shard in layout.provenance_shards()
            for row in pq.read_table(shard.path).to_pylist()
        }
        rejects = list(layout.iter_rejects())
        removed = {r["id"]: r for r in rejects}
        records = {**kept, **{i: r["record"] for i, r in removed.items() if r.get("record")}}
        stats = layout.stats()

    pairs = []
    for reject in rejects:
        if reject["reason"] != "near_duplicate":
            continue
        a, b = reject["record"], records[reject["kept_id"]]
        similarity = shingle_jaccard(
            shingles(simplify(near_dedup_text(a)), args.n_grams),
            shingles(simplify(near_dedup_text(b)), args.n_grams),
        )
        pairs.append((round(similarity, 3), a, b))
    pairs.sort(key=lambda p: -p[0])
    if args.pairs:
        lines = [f"# Near-duplicate pairs of FrenchMedMCQA train+dev at threshold >= {args.floor}", ""]
        for k, (similarity, a, b) in enumerate(pairs, 1):
            lines += [
                f"## {k}. Jaccard {similarity} ({a['source_split']} {a['source_id']} vs {b['source_split']} {b['source_id']})",
                "",
                f"- removed: {item_text(a)}",
                f"- kept: {item_text(b)}",
                "",
            ]
        args.pairs.write_text("\n".join(lines), encoding="utf-8")
        print(f"wrote {len(pairs)} pairs to {args.pairs}")
    thresholds = [t / 10 for t in range(int(args.floor * 10), 10)]
    by_threshold = {f"{t:.1f}": sum(s >= t for s, _, _ in pairs) for t in thresholds}
    for t, n in by_threshold.items():
        print(f"threshold {t}: {n} near-duplicate pairs")
    exact = stats["removed"].get("exact_dedup", {}).get("total", None)
    print(
        json.dumps(
            {
                "records": stats["records"]["in"],
                "exact_duplicates": exact,
                "near_pairs_by_threshold": by_threshold,
                "n_grams": args.n_grams,
                "floor": args.floor,
            }
        )
    )


if __name__ == "__main__":
    main()
