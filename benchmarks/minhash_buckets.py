"""The MinHash bucket stage alone: datatrove's ``MinhashDedupBuckets`` against ours (``MinhashBuckets``,
numpy), on the same signature files, band by band.

Usage:
    python benchmarks/minhash_buckets.py                      # 571,436 records, 2 of the 20 bands
    python benchmarks/minhash_buckets.py --stage              # + the whole stage as the build runs it
    python benchmarks/minhash_buckets.py --records 100000 --bands 20

The input is what the build's signature stage writes (``bucket_NNN/NNNNN.minhash.sig``: per record
and band, 4 hashes of 32 bits and the record's number, sorted), made directly with numpy so that the
stage is measured alone: ``--records`` random signatures split over ``--tasks`` files (as the build's
tasks write them), with ``--dup-share`` of the records given the band hashes of another record
(candidate pairs, as near-duplicates produce; the default 0.8 gives about 275K pairs per band at
571K records, near the 350K per band of the full-scale build in docs/benchmarks.md). The work of a band does not depend on which band it
is, so ``--bands`` of the build's 20 are timed and the figures are per band.

Both steps run in this process on the same files, one band after the other: datatrove's as the
build would run it with one task per band (``rank = band``, ``world_size = 20``), ours with
``find_pairs(band)``. The pairs are compared: every pair datatrove writes must be among ours (ours
also pairs a record with up to 8 earlier equal signatures, not only the previous one).

With ``--stage``, the whole stage (all 20 bands) also runs as a build runs it, through datatrove's
``LocalPipelineExecutor`` with ``--workers`` workers and the build's forkserver preload: datatrove's
step with one task per band (20 tasks, as datatrove requires), ours with the build's task count
(``--tasks``, several bands per task). That is the figure a build sees (process starts included).

Last line: one JSON object: records, bands_timed, datatrove_s_per_band, numpy_s_per_band, speedup,
pairs per band of each, datatrove_pairs_all_found; with ``--stage``: datatrove_stage_s,
numpy_stage_s, stage_speedup.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

NUM_BUCKETS = 20
HASHES_PER_BUCKET = 4


def write_signatures(folder: Path, records: int, tasks: int, bands: int, dup_share: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dtype = np.dtype([(f"h{i}", "<u4") for i in range(HASHES_PER_BUCKET)] + [("doc", "<u4")])
    per_task = [len(part) for part in np.array_split(np.arange(records), tasks)]
    for band in range(bands):
        # every record's band hashes, below 2**32 - 1 (datatrove stops at the maximum hash value)
        hashes = rng.integers(0, 2**32 - 1, size=(records, HASHES_PER_BUCKET), dtype=np.uint32)
        twins = rng.choice(records, size=int(records * dup_share), replace=False)
        hashes[twins] = hashes[rng.integers(0, records, size=len(twins))]
        start = 0
        for task, count in enumerate(per_task):
            rows = np.zeros(count, dtype=dtype)
            for i in range(HASHES_PER_BUCKET):
                rows[f"h{i}"] = hashes[start : start + count, i]
            rows["doc"] = np.arange(count, dtype=np.uint32)
            rows.sort(order=dtype.names)
            out = folder / f"bucket_{band:03d}" / f"{task:05d}.minhash.sig"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(rows.tobytes())
            start += count


def time_stage(root: Path, args, config) -> dict:
    """The 20 bands under datatrove's local executor, as the build would run each step."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets

    from medinjection.dataset_builders.build import preload_workers
    from medinjection.dataset_builders.steps.minhash_buckets import MinhashBuckets, bucket_tasks

    write_signatures(root / "all", args.records, args.tasks, NUM_BUCKETS, args.dup_share, args.seed)
    preload_workers()
    result = {}
    for name, step, tasks in (
        ("datatrove", MinhashDedupBuckets, NUM_BUCKETS),
        ("numpy", MinhashBuckets, bucket_tasks(NUM_BUCKETS, args.tasks)),
    ):
        executor = LocalPipelineExecutor(
            pipeline=[step(str(root / "all"), str(root / f"stage-{name}"), config=config)],
            tasks=tasks,
            workers=min(args.workers, tasks),
            logging_dir=str(root / f"logs-{name}"),
        )
        started = time.perf_counter()
        executor.run()
        result[f"{name}_stage_s"] = round(time.perf_counter() - started, 2)
        result[f"{name}_stage_tasks"] = tasks
    result["stage_speedup"] = round(result["datatrove_stage_s"] / result["numpy_stage_s"], 1)
    result["stage_workers"] = args.workers
    return result


def read_pairs(path: Path) -> set[tuple[int, int, int, int]]:
    data = np.frombuffer(path.read_bytes(), dtype="<u4").reshape(-1, 4)
    return {tuple(int(x) for x in row) for row in data}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=571436)
    parser.add_argument("--bands", type=int, default=2, help=f"how many of the {NUM_BUCKETS} bands to time")
    parser.add_argument("--tasks", type=int, default=2, help="signature files per band (the build's tasks)")
    parser.add_argument("--dup-share", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", action="store_true", help="also time the whole stage under the executor")
    parser.add_argument("--workers", type=int, default=2, help="executor workers for --stage")
    args = parser.parse_args()

    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets
    from datatrove.utils.hashing import HashConfig

    from medinjection.dataset_builders.steps.minhash_buckets import MinhashBuckets

    config = MinhashConfig(
        num_buckets=NUM_BUCKETS, hashes_per_bucket=HASHES_PER_BUCKET, hash_config=HashConfig(precision=32)
    )
    with tempfile.TemporaryDirectory(prefix="medinjection-buckets-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        write_signatures(root / "sigs", args.records, args.tasks, args.bands, args.dup_share, args.seed)
        make_s = time.perf_counter() - started
        theirs = MinhashDedupBuckets(str(root / "sigs"), str(root / "datatrove"), config=config)
        ours = MinhashBuckets(str(root / "sigs"), str(root / "numpy"), config=config)
        times = {"datatrove": [], "numpy": []}
        pairs = {"datatrove": [], "numpy": []}
        all_found = True
        for band in range(args.bands):
            started = time.perf_counter()
            for _ in theirs.run(rank=band, world_size=NUM_BUCKETS) or ():
                pass
            times["datatrove"].append(time.perf_counter() - started)
            started = time.perf_counter()
            ours.find_pairs(band)
            times["numpy"].append(time.perf_counter() - started)
            a = read_pairs(root / "datatrove" / f"{band:05d}_00.dups")
            b = read_pairs(root / "numpy" / f"{band:05d}_00.dups")
            pairs["datatrove"].append(len(a))
            pairs["numpy"].append(len(b))
            all_found &= a <= b
        stage = time_stage(root, args, config) if args.stage else {}
    theirs_s = sum(times["datatrove"]) / args.bands
    ours_s = sum(times["numpy"]) / args.bands
    print(
        json.dumps(
            {
                **stage,
                "records": args.records,
                "tasks": args.tasks,
                "bands_timed": args.bands,
                "datatrove_s_per_band": round(theirs_s, 3),
                "numpy_s_per_band": round(ours_s, 3),
                "speedup": round(theirs_s / ours_s, 1),
                "datatrove_us_per_record_and_band": round(theirs_s / args.records * 1e6, 2),
                "datatrove_pairs_per_band": pairs["datatrove"],
                "numpy_pairs_per_band": pairs["numpy"],
                "datatrove_pairs_all_found": all_found,
                "make_signatures_s": round(make_s, 1),
                "machine": f"{platform.machine()}, Python {platform.python_version()}",
            }
        )
    )


if __name__ == "__main__":
    main()
