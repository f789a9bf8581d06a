"""Wall time of ``medinjection calibrate`` on a labelled set of hundreds of answers, metrics only.

    python benchmarks/calibrate.py                          # 600 answers, 2 annotators each
    python benchmarks/calibrate.py --answers 2000 --workdir /tmp/calbench

The labelled set is made from the test fixture ``tests/fixtures/calibration/answers.jsonl`` (12
French medical questions, answers of three generators, two annotators): its answers are replicated
under new ids and generators (``gen-0`` ... ``gen-3``), a seeded share of their words dropped (so
the metrics vary), and labels drawn around the fixture's (each annotator off by one now and then).
Then the real command runs in a fresh process (start-up included):
``medinjection calibrate answers.jsonl --output calib/`` (BLEU, ROUGE-2, METEOR; 1,000 bootstrap
resamples and permutations). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "calibration" / "answers.jsonl"


def labelled_set(path: Path, answers: int, generators: int, seed: int) -> int:
    """Write ``answers`` labelled answers (two annotator rows each) to ``path``; returns the rows."""
    rng = random.Random(seed)
    base = {}
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        base.setdefault((row["id"], row["model"]), row)
    bases = sorted(base.values(), key=lambda r: (r["id"], r["model"]))
    rows = 0
    with path.open("w", encoding="utf-8") as handle:
        for number in range(answers):
            source = bases[number % len(bases)]
            words = source["answer"].split()
            kept = [w for w in words if rng.random() > 0.25] or words[:1]
            rating = int(source["human_rating"])
            for annotator in ("dr_a", "dr_b"):
                given = min(5, max(1, rating + (rng.choice((-1, 1)) if rng.random() < 0.2 else 0)))
                row = {
                    "id": f"{source['id']}-{number // len(bases)}",
                    "question": source["question"],
                    "reference": source["reference"],
                    "answer": " ".join(kept),
                    "model": f"gen-{number % generators}",
                    "annotator": annotator,
                    "human_equivalent": "oui" if given >= 4 else "non",
                    "human_rating": given,
                }
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                rows += 1
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--answers", type=int, default=600)
    parser.add_argument("--generators", type=int, default=4)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/medinjection-calibrate-bench"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    source = args.workdir / "answers.jsonl"
    rows = labelled_set(source, args.answers, args.generators, args.seed)
    output = args.workdir / "calib"
    command = [
        sys.executable,
        "-m",
        "medinjection.cli",
        "calibrate",
        str(source),
        "--output",
        str(output),
        "--resamples",
        str(args.resamples),
        "--seed",
        str(args.seed),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(done.stdout + done.stderr)
    print(done.stdout.strip())
    result = json.loads((output / "calibration.json").read_text(encoding="utf-8"))
    rouge = next(e for e in result["metrics"] if e["name"] == "rouge2" and e["label"] == "human_rating")
    print(
        json.dumps(
            {
                "answers": result["n"],
                "rows": rows,
                "generators": args.generators,
                "resamples": args.resamples,
                "score_label_pairs": len(result["metrics"]) + len(result["judges"]),
                "wall_s": round(wall, 2),
                "rouge2_pearson_rating": round(rouge["pearson"]["value"], 4),
            }
        )
    )


if __name__ == "__main__":
    main()
