"""Evaluation items: records become prompts (system + user messages), option letters and gold letters.

Two ways in, one item shape out:

- a built MedInjection-FR folder or Hub repo: its rows carry ``messages`` already (written by the
  build with the chat format of its ``mixes.json``); the prompt is those messages without the
  assistant turn;
- a task read through a source adapter: each row goes through the build's own mapping,
  normalisation and validation, then ``medinjection.core.chat.to_messages`` with the task's chat
  version, so a task item is prompted exactly like a test item of a built folder.

A row an adapter cannot map fails the run, naming the row, unless the caller lets bad rows through
(then they are kept in ``ItemSet.rejected`` and written beside the predictions, never dropped).

Every multiple-choice item that can be prompted is scored, as the authors' script scores every
item of a file: gold is the ``answer`` string split on commas and white space, whatever the options
and ``correct_letters`` say. An item whose gold is irregular carries the kinds of ``GOLD_ISSUES``
(counted in the summary): a gold letter outside the options can never be predicted, an empty gold
matches only an empty (unparseable) prediction.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medinjection.evaluation.protocol import MC_TYPES, gold_letters

GOLD_ISSUES = {
    "gold_outside_options": "a gold letter of `answer` is not among the option letters (exact match is always 0)",
    "empty_gold": "`answer` gives no gold letter (exact match is 1 only for an empty prediction)",
    "answer_disagrees_with_correct_letters": "the letters of `answer` differ from `correct_letters` "
    "(gold comes from `answer`, as the authors read it)",
    "several_gold_single_answer": "an MCQU item whose `answer` gives several letters (a single-letter "
    "prediction never matches)",
}
"""Kinds of irregular gold an item is scored with (as the authors did), each with what it means."""


class ItemError(ValueError):
    """A record cannot become an evaluation item; the message names the record and what is wrong."""


@dataclass(frozen=True)
class EvalItem:
    id: str
    type: str
    source: str
    messages: tuple[dict[str, str], ...]
    """The prompt: system and user messages (no assistant turn)."""
    letters: tuple[str, ...] = ()
    gold: tuple[str, ...] = ()
    origin: str = ""
    """The record's ``origin`` (the source dataset, as the release names it)."""
    gold_issues: tuple[str, ...] = ()
    """Kinds of ``GOLD_ISSUES`` of this item's gold (none for a regular item)."""
    reference: str = ""
    """The record's ``answer`` (the reference answer of an open-ended item)."""
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    permutation: int = 0
    order: tuple[int, ...] = ()
    """Original option index shown at each position (identity for the original order)."""

    @property
    def is_mc(self) -> bool:
        return self.type in MC_TYPES


@dataclass
class ItemSet:
    items: list[EvalItem]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    """Rows that could not become items: ``{"location", "reason", "detail"}``."""

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(item.type for item in self.items).items()))


def prompt_messages(messages: Iterable[dict[str, str]]) -> tuple[dict[str, str], ...]:
    """The messages without the assistant turn, as the authors prompt."""
    return tuple({"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "assistant")


def gold_issues(
    kind: str, gold: tuple[str, ...], letters: tuple[str, ...], correct: Iterable[str]
) -> tuple[str, ...]:
    """The ``GOLD_ISSUES`` kinds of a multiple-choice item's gold."""
    correct = {str(letter).upper() for letter in correct}
    found = {
        "gold_outside_options": bool(set(gold) - set(letters)),
        "empty_gold": not gold,
        "answer_disagrees_with_correct_letters": bool(correct) and set(gold) != correct,
        "several_gold_single_answer": kind == "MCQU" and len(set(gold)) > 1,
    }
    return tuple(name for name in GOLD_ISSUES if found[name])


def item_from_record(
    record: dict[str, Any], messages: Iterable[dict[str, str]] | None = None, origin: str = ""
) -> EvalItem:
    """An item from a schema record (``messages`` default: the record's own; ``origin``: the one to
    use when the record names none, e.g. the source adapter's)."""
    rid = record.get("id") or "(no id)"
    msgs = prompt_messages(record.get("messages") if messages is None else messages)
    if not msgs or msgs[-1]["role"] != "user":
        raise ItemError(f"record {rid}: its messages have no user turn to prompt with")
    kind = record.get("type")
    origin = record.get("origin") or origin
    if kind == "OEQ":
        return EvalItem(
            rid,
            kind,
            record.get("source") or "",
            msgs,
            reference=record.get("answer") or "",
            origin=origin,
            record=record,
        )
    if kind not in MC_TYPES:
        raise ItemError(f"record {rid}: type {kind!r} is not one of MCQ, MCQU, OEQ")
    letters = tuple(str(opt["letter"]).upper() for opt in record.get("options") or [])
    if len(letters) < 2:
        raise ItemError(f"record {rid}: a {kind} item with {len(letters)} option(s)")
    # Gold comes from `answer`, as the authors read it, and the item is scored whatever its gold.
    gold = tuple(gold_letters(record.get("answer") or ""))
    return EvalItem(
        rid,
        kind,
        record.get("source") or "",
        msgs,
        letters=letters,
        gold=gold,
        origin=origin,
        gold_issues=gold_issues(kind, gold, letters, record.get("correct_letters") or []),
        reference=record.get("answer") or "",
        record=record,
        order=tuple(range(len(letters))),
    )


def check_unique(items: list[EvalItem], where: str) -> None:
    seen: Counter = Counter(item.id for item in items)
    duplicates = [rid for rid, n in seen.items() if n > 1]
    if duplicates:
        raise ItemError(f"{where}: {len(duplicates)} duplicate item id(s), e.g. {duplicates[:3]}")


def items_sha256(items: Iterable[EvalItem]) -> str:
    """Identity of what was scored: ids, prompts, letters, gold and origins of the items, in order."""
    digest = hashlib.sha256()
    for item in items:
        payload = [
            item.id,
            item.type,
            list(item.messages),
            list(item.letters),
            list(item.gold),
            item.permutation,
            item.origin,
        ]
        digest.update(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# ---- loading a task's items ----------------------------------------------------------------------
def load_items(spec, skip_bad_rows: bool = False) -> ItemSet:
    """The items of a ``TaskSpec`` (its split and types), in the source's order.

    Raises ``ItemError`` naming the first rows that cannot become items unless ``skip_bad_rows``
    (then they are returned in ``ItemSet.rejected``).
    """
    if spec.source is not None:
        item_set = _items_from_source(spec)
    else:
        item_set = _items_from_dataset(spec)
    if item_set.rejected and not skip_bad_rows:
        first = "; ".join(f"{r['location']}: {r['reason']}: {r['detail']}" for r in item_set.rejected[:3])
        raise ItemError(
            f"task {spec.name!r}: {len(item_set.rejected)} row(s) cannot be scored ({first}); "
            "fix the source, or set skip_bad_rows to score the others (the bad rows are then written "
            "to rejected.jsonl beside the predictions)"
        )
    if not item_set.items:
        raise ItemError(f"task {spec.name!r}: no {'/'.join(spec.types)} items in split {spec.split!r}")
    check_unique(item_set.items, f"task {spec.name!r}")
    if spec.limit is not None:
        item_set.items = item_set.items[: spec.limit]
    return item_set


def _keep_split(spec, split: str) -> bool:
    return spec.split == "all" or split == spec.split


def _items_from_source(spec) -> ItemSet:
    from medinjection.core.chat import to_messages
    from medinjection.core.schema import RecordError, validate_record
    from medinjection.dataset_builders.sources import get_adapter
    from medinjection.dataset_builders.steps.normalize import normalize_record

    adapter = get_adapter(spec.source.adapter)(spec.source)
    adapter.check_available()
    items, rejected, splits_seen = [], [], Counter()
    for raw in adapter.iter_raw():
        splits_seen[raw.split or "(none)"] += 1
        if not _keep_split(spec, raw.split):
            continue
        try:
            record = normalize_record(adapter.map_row(raw))
            validate_record(record, answer_key=False)  # an irregular answer key is scored, as the authors
        except RecordError as err:
            rejected.append({"location": raw.location, "reason": err.reason, "detail": err.detail})
            continue
        if record["type"] not in spec.types:
            continue
        try:
            items.append(item_from_record(record, to_messages(record, spec.chat_version), adapter.origin))
        except ItemError as err:
            rejected.append({"location": raw.location, "reason": "not_scorable", "detail": str(err)})
    if not items and not rejected:
        raise ItemError(
            f"task {spec.name!r}: no row of split {spec.split!r} in {spec.source.path or spec.source.hub_id} "
            f"(rows by split: {dict(splits_seen)})"
        )
    return ItemSet(items, rejected)


def _items_from_dataset(spec) -> ItemSet:
    ref = spec.dataset
    if ref.path:
        rows = _dataset_rows(Path(ref.path), ref.config, spec.split)
    else:
        import datasets

        rows = list(datasets.load_dataset(ref.hub_id, ref.config, split=spec.split, revision=ref.revision))
    items, rejected = [], []
    for index, row in enumerate(rows):
        if row.get("type") not in spec.types:
            continue
        try:
            items.append(item_from_record(dict(row)))
        except (ItemError, KeyError, TypeError) as err:
            location = f"{ref.path or ref.hub_id}:{ref.config}:{spec.split}:{index}"
            rejected.append({"location": location, "reason": "not_scorable", "detail": str(err)})
    return ItemSet(items, rejected)


def _dataset_rows(root: Path, config: str, split: str) -> list[dict[str, Any]]:
    """The rows of one split of a built folder's config, read through ``Layout`` (its format's owner)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medinjection.core.layout import Layout, LayoutError

    if not root.is_dir():
        raise ItemError(
            f"{root}: no dataset folder (for a Hub repo give its id with a pinned dataset_revision)"
        )
    try:
        files = Layout(root).split_paths(config, split)
    except LayoutError as err:
        raise ItemError(str(err)) from None
    if not files:
        raise ItemError(f"{root}: config {config!r} has no {split} file")
    rows: list[dict[str, Any]] = []
    for path in files:
        try:
            rows.extend(pq.read_table(path).to_pylist())
        except (pa.ArrowException, OSError) as err:
            raise ItemError(f"{path}: not a readable Parquet file ({err})") from None
    return rows


def dataset_chat_version(root: Path) -> str | None:
    """``chat_version`` of a built folder's ``mixes.json`` (None when it does not say)."""
    from medinjection.core.layout import Layout, LayoutError

    try:
        manifest = Layout(root).mixes_manifest()
    except LayoutError as err:
        raise ItemError(str(err)) from None
    return None if manifest is None else manifest.get("chat_version")
