"""The deduplication and decontamination stages of the build and the filters that apply their decisions.

``dedup_stages`` are the global stages that run between ``prepare`` and ``write`` (each reads
``_build/prepared`` or the previous stage's files and writes its decisions under ``_build/<stage>``);
``dedup_filters`` are the matching filters of the ``write`` stage, in order:

1. ``exact_dedup_index`` (1 task): exact duplicates and conflicting answers (steps/exact_dedup.py)
2. ``minhash_signatures`` (N tasks): near-dedup text + key files (steps/minhash_text.py), then
   datatrove's ``MinhashDedupSignature``
3. ``minhash_buckets`` (as many tasks as the other stages, at most one per band): datatrove's
   ``MinhashDedupBuckets``, vectorised, several bands per task (steps/minhash_buckets.py; same files
   in and out)
4. ``minhash_clusters`` (1 task): every candidate pair checked (Jaccard, same answer), checked pairs
   grouped, the kept twin chosen by split and provenance priority (steps/near_dedup.py)
5. ``decontamination_index`` (1 task): n-gram index of the evaluation sets (steps/decontaminate.py)

Write-stage filters: exact dedup, near dedup, decontamination (each rejects into ``rejects/<step>/``).
"""

from __future__ import annotations

from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
)
from datatrove.pipeline.readers import JsonlReader
from datatrove.utils.hashing import HashConfig

from medinjection.core.config import BuildConfig
from medinjection.core.layout import Layout, Stage
from medinjection.dataset_builders.sources import get_adapter
from medinjection.dataset_builders.steps.decontaminate import DecontaminationFilter, DecontaminationIndex
from medinjection.dataset_builders.steps.exact_dedup import ExactDedupFilter, ExactDedupIndex
from medinjection.dataset_builders.steps.minhash_buckets import MinhashBuckets, bucket_tasks
from medinjection.dataset_builders.steps.minhash_text import (
    WORD_TOKENIZER,
    MinhashSignature,
    MinhashText,
    signature_config,
)
from medinjection.dataset_builders.steps.near_dedup import NearDedupFilter, NearDedupResolve


def minhash_config(config: BuildConfig) -> MinhashConfig:
    dedup = config.dedup
    return MinhashConfig(
        n_grams=dedup.n_grams,
        num_buckets=dedup.num_buckets,
        hashes_per_bucket=dedup.hashes_per_bucket,
        seed=dedup.seed,
        hash_config=HashConfig(precision=dedup.hash_precision),
    )


def second_hand_sources(config: BuildConfig) -> list[str]:
    """The build's sources that republish other sources' items (``SourceAdapter.republished``): an item
    also read from its own source is kept in that copy by the exact and the near dedup."""
    return sorted({spec.adapter for spec in config.sources if get_adapter(spec.adapter).republished})


def dedup_stages(config: BuildConfig, layout: Layout, tasks: int) -> list[Stage]:
    near, decont = config.dedup.enabled, config.decontamination.enabled
    work = layout.work("near_dedup")
    stages = [
        Stage(
            "exact_dedup_index",
            [
                ExactDedupIndex(
                    str(layout.work("exact_dedup")), config.provenance_priority, second_hand_sources(config)
                )
            ],  # reads the key files
            1,
        ),
    ]
    own_eval = decont and config.decontamination.own_test_splits
    if near or own_eval:
        keys = [
            JsonlReader(str(layout.prepared)),
            MinhashText(str(work), write_keys=near, write_eval=own_eval),
        ]
        if near:
            keys.append(
                MinhashSignature(
                    str(work / "signatures"),
                    config=signature_config(minhash_config(config)),
                    language=WORD_TOKENIZER,
                )
            )
        stages.append(Stage("minhash_signatures", keys, tasks))
    if near:
        mh = minhash_config(config)
        stages += [
            Stage(
                "minhash_buckets",
                [MinhashBuckets(str(work / "signatures"), str(work / "buckets"), config=mh)],
                bucket_tasks(mh.num_buckets, tasks),
            ),
            Stage(
                "minhash_clusters",
                [
                    NearDedupResolve(
                        str(work / "buckets"),
                        str(work),
                        str(layout.work("exact_dedup")),
                        str(work),
                        config.provenance_priority,
                        config.dedup.n_grams,
                        config.dedup.threshold,
                        signatures_folder=str(work / "signatures"),
                        hashes_per_bucket=mh.hashes_per_bucket,
                        second_hand_sources=second_hand_sources(config),
                    ),
                ],
                1,
            ),
        ]
    if decont:
        dc = config.decontamination
        stages.append(
            Stage(
                "decontamination_index",
                [
                    DecontaminationIndex(
                        str(layout.work("decontamination")),
                        dc.n_grams,
                        dc.eval_sets,
                        str(config.base_dir),
                        str(work) if own_eval else None,
                        [str(layout.work("exact_dedup")), *([str(work)] if near else [])],
                        split=config.split,
                        seed=config.seed,
                    )
                ],
                1,
            )
        )
    return stages


def dedup_filters(config: BuildConfig, layout: Layout) -> list:
    rejects = str(layout.rejects)
    filters = [ExactDedupFilter(str(layout.work("exact_dedup")), rejects_dir=rejects)]
    if config.dedup.enabled:
        filters.append(NearDedupFilter(str(layout.work("near_dedup")), rejects_dir=rejects))
    if config.decontamination.enabled:
        dc = config.decontamination
        filters.append(
            DecontaminationFilter(
                str(layout.work("decontamination")), dc.n_grams, dc.threshold, dc.splits, rejects_dir=rejects
            )
        )
    return filters
