"""What an evaluation scores: its tasks, their items routed to scorers, permuted copies, identities.

Tasks are read once (``load_items``); items are routed by type to the scorers of
``scorers.SCORERS`` (types no available scorer scores are counted in the summary, never scored as 0),
and the items of a permutable scorer (multiple choice) are copied under ``permutations`` seeded
option orders. ``items_sha256`` of the original items is the identity of what was scored.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from medinjection.evaluation.items import EvalItem, dataset_chat_version, items_sha256, load_items
from medinjection.evaluation.permutations import permuted_items
from medinjection.evaluation.scorers import Scorer, route
from medinjection.evaluation.settings import EvalArguments, EvaluationError
from medinjection.evaluation.tasks import TaskSpec, dataset_task, load_task


@dataclass
class PreparedTask:
    spec: TaskSpec
    originals: list[EvalItem]
    by_scorer: dict[str, list[EvalItem]]
    scorers: dict[str, Scorer]
    rejected: list[dict]
    skipped_types: dict[str, dict]
    chat_version: str
    items_sha256: str


def resolve_tasks(args: EvalArguments) -> list[TaskSpec]:
    """The tasks of ``args.tasks`` and the one of ``dataset_name`` / ``dataset_config``, ``limit`` applied."""
    specs = [load_task(name, args.data_dir) for name in args.tasks]
    if args.dataset_name:
        specs.append(
            dataset_task(args.dataset_name, args.dataset_config, args.dataset_split, args.dataset_revision)
        )
    if not specs:
        raise EvaluationError(
            "nothing to score: give tasks (bundled names or task YAMLs; `medinjection tasks` lists them) "
            "or dataset_name with dataset_config"
        )
    names = Counter(spec.name for spec in specs)
    if any(n > 1 for n in names.values()):
        raise EvaluationError(f"task names must differ (outputs are named by them): {dict(names)}")
    if args.limit is not None:
        specs = [spec.model_copy(update={"limit": args.limit}) for spec in specs]
    return specs


def prepare(spec: TaskSpec, args: EvalArguments) -> PreparedTask:
    """The items of one task, routed to their scorers, with the permuted copies."""
    item_set = load_items(spec, skip_bad_rows=args.skip_bad_rows)
    chat_version = spec.chat_version
    if spec.dataset is not None and spec.dataset.path:
        chat_version = dataset_chat_version(Path(spec.dataset.path)) or chat_version
    by_type, reasons = route({item.type for item in item_set.items})
    counts = Counter(item.type for item in item_set.items)
    skipped = {t: {"n": counts[t], "reason": reasons[t]} for t in sorted(reasons)}
    by_scorer: dict[str, list[EvalItem]] = {}
    scorers: dict[str, Scorer] = {}
    originals = [item for item in item_set.items if item.type in by_type]
    for item in originals:
        scorer = by_type[item.type]
        scorers[scorer.name] = scorer
        bucket = by_scorer.setdefault(scorer.name, [])
        bucket.append(item)
        if scorer.permutable:
            bucket.extend(permuted_items([item], args.permutations, args.seed, chat_version))
    return PreparedTask(
        spec, originals, by_scorer, scorers, item_set.rejected, skipped, chat_version, items_sha256(originals)
    )
