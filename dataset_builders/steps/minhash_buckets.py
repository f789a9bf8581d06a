"""MinHash stage 2 (candidate pairs per LSH band), vectorised, several bands per task.

Datatrove's ``MinhashDedupBuckets`` merges the sorted signature files of a band with a Python heap,
one ``HashSig`` object per record and band: about 2 µs each, 1.2 s per band at 571K records.
``MinhashBuckets`` reads the same ``bucket_NNN/*.minhash.sig`` files, sorts the band's signatures
with numpy and writes the same ``NNNNN_00.dups`` pairs in 0.3 s per band (the stage: 13.7 s against
3.3 s; ``benchmarks/minhash_buckets.py``, docs/benchmarks.md). Datatrove pairs each record with
the previous one of equal signature, enough for its transitive clustering; ``NearDedupResolve`` checks
each pair instead (contexts, answers), so here a record is paired with up to ``PAIR_WINDOW`` earlier
records of equal signature: with a chain only, "the same question over case 1, case 2, case 1 told
again" would never compare the two tellings of case 1.

Datatrove runs one task per band (or several per band). Here a task takes the bands
``rank, rank + world_size, ...``, so the stage runs with as many tasks as the build's other stages
(``bucket_tasks``): one task per band meant 20 worker processes for the demo's few hundred
records, each paying for its start and imports (most of the demo build's time). With an index
folder, or more tasks than bands, it defers to datatrove.
"""

from __future__ import annotations

import numpy as np
from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets

PAIR_WINDOW = 8
"""How many earlier records of equal band signature each record is paired with."""


def bucket_tasks(num_buckets: int, tasks: int) -> int:
    """Tasks of the bucket stage: the build's task count, at most one per band."""
    return max(1, min(num_buckets, tasks))


class MinhashBuckets(MinhashDedupBuckets):
    name = "🎯 MinHash stage 2 (numpy)"

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if self.index_folder is not None or world_size > self.config.num_buckets:
            yield from super().run(data, rank, world_size) or ()
            return
        assert data is None, "MinhashBuckets takes no input documents"
        with self.track_time():
            for bucket in range(rank, self.config.num_buckets, world_size):
                self.stat_update("buckets")
                self.find_pairs(bucket)

    def find_pairs(self, bucket: int) -> None:
        fmt = f"<{self.config.hash_config.struct_format}"
        dtype = np.dtype([(f"h{i}", fmt) for i in range(self.config.hashes_per_bucket)] + [("doc", "<u4")])
        sigs, files = [], []
        for name in sorted(self.input_folder.list_files(subdirectory=f"bucket_{bucket:03d}")):
            with self.input_folder.open(name, "rb") as handle:
                records = np.frombuffer(handle.read(), dtype=dtype)
            sigs.append(records)
            # the signature file of task N is NNNNN.minhash.sig; its records are numbered from 0 in that task
            files.append(np.full(len(records), int(name.rsplit("/", 1)[-1].split(".")[0]), dtype=np.uint32))
        with self.output_folder.open(f"{bucket:05d}_00.dups", mode="wb") as out:
            if not sigs:
                return
            records, file_ids = np.concatenate(sigs), np.concatenate(files)
            hashes = [records[f"h{i}"] for i in range(self.config.hashes_per_bucket)]
            order = np.lexsort([records["doc"], file_ids, *reversed(hashes)])
            # a record is paired with up to PAIR_WINDOW earlier records of equal band signature, not
            # only the previous one: the pairs are checked one by one (contexts, answers) and never
            # joined transitively, so a chain a-b-c where a-b fails its check must still offer a-c
            ordered = [column[order] for column in hashes]
            chunks = []
            for k in range(1, PAIR_WINDOW + 1):
                if len(order) <= k:
                    break
                same = np.ones(len(order) - k, dtype=bool)
                for column in ordered:
                    same &= column[k:] == column[:-k]
                if not same.any():
                    break
                later, earlier = order[k:][same], order[:-k][same]
                chunks.append(
                    np.stack(
                        [file_ids[earlier], records["doc"][earlier], file_ids[later], records["doc"][later]],
                        axis=1,
                    )
                )
            pairs = np.concatenate(chunks) if chunks else np.empty((0, 4), dtype=np.uint32)
            out.write(pairs.astype("<u4").tobytes())
            self.stat_update("total_matches", value=int(len(pairs)))
