"""Reviewers' verdicts back into the data: records on an exclusion list go to ``rejects/review/``.

The lists are those named in the build config (``filters.review``), written by
``medinjection quality review pull`` (``excluded_ids.txt``: one record id per line, ``#`` comments).
A review report JSON (``review_report.json``, its ``excluded`` key) is read as well.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from datatrove.data import Document

from medinjection.core.config import ConfigError
from medinjection.dataset_builders.steps.rejects import RecordFilter


def read_exclusion_list(path: str | Path) -> list[str]:
    """The ids of one exclusion list (``.txt``: one id a line; ``.json``: a review report's ``excluded``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"filters.review: exclusion list {str(path)!r} not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            ids = json.loads(text)["excluded"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ConfigError(
                f"filters.review: {path} is not a review report with an 'excluded' list ({err})"
            ) from err
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ConfigError(f"filters.review: {path}: 'excluded' must be a list of record ids")
        return ids
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def exclusion_digest(paths: list[str]) -> str:
    """A digest of the ids the lists exclude: part of the build fingerprint, so a new pull is not ignored."""
    ids = sorted({record_id for path in paths for record_id in read_exclusion_list(path)})
    return hashlib.sha256("\n".join(ids).encode()).hexdigest() if paths else ""


class ReviewExclusionFilter(RecordFilter):
    name = "review"
    step_name = "review"

    def __init__(self, paths: list[str], rejects_dir: str | None = None):
        super().__init__(rejects_dir=rejects_dir)
        self.paths = [str(p) for p in paths]
        # Read now, so a missing or bad list fails before any work is done.
        self.excluded: dict[str, str] = {}
        for path in self.paths:
            for record_id in read_exclusion_list(path):
                self.excluded.setdefault(record_id, path)

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        where = self.excluded.get(doc.id)
        if where is not None:
            return self.reject(doc, "review", f"judged incorrect by reviewers (exclusion list {where})")
        return True
