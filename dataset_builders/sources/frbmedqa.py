"""FrBMedQA (Kaddari & Bouchentouf, 2022): cloze-style questions built automatically from French
biomedical Wikipedia articles, "41k+" passage-question instances; native French, CC-BY-4.0.

The rows, in the shape the authors' generation code writes them (``annotate_generate/mapEntities.py``
of github.com/kadzaki/FrBMedQA; no data file could be read, see README.md, "What the adapters
assume"):

* ``passage``: the article text without the question's sentence, each biomedical entity replaced
  by a token ``@entityN`` (the whole whitespace-delimited word: attached punctuation and elided
  articles went with it);
* ``question``: one sentence of the article with one entity occurrence replaced by ``@placeholder``;
* ``entities_list``: the candidates, a list of one-key objects ``{"@entityN": "<UMLS preferred
  label>"}`` (a later file of theirs adds ``semantic_groups`` to each object);
* ``answer``: the ``@entityN`` the placeholder hides.

Files: ``train.json``, ``val.json``, ``test.json``, each a JSON list (their random 80/10/10 split);
the split comes from the file name. On the Hub the files are fetched at the pinned revision and read
as JSON, not through ``datasets``: Arrow would turn the corpus-wide ``@entityN`` keys of
``entities_list`` into one struct column per entity.

Each row becomes an MCQU item: the candidates are the options (lettered in the order of
``entities_list``), the answer's candidate the one correct letter, the question (``@placeholder``
shown as a blank) the instruction and the passage the context, with every ``@entityN`` of both
replaced by its label so that they read as French. A row that cannot be mapped so is rejected as
``malformed_row``, naming it: a question without ``@placeholder``, an answer that is not a
candidate, a token that ``entities_list`` does not name, fewer than two candidates or more than the
26 option letters. The rows have no id: the source id is a hash of the row.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medinjection.core.schema import LETTERS, RecordError, format_letters
from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter, lettered_options
from medinjection.dataset_builders.sources.textparse import hashed_id, number_repeats

ENTITY = re.compile(r"@entity\d+")
PLACEHOLDER = "@placeholder"
BLANK = "____"
# The instruction of every item: the cloze question follows it.
CLOZE_PROMPT = "Quelle entité biomédicale complète le blanc ({blank}) de la phrase suivante ?\n{question}"
ROW_KEYS = ("passage", "question", "entities_list", "answer")


class FrBMedQA(SourceAdapter):
    name = "frbmedqa"
    origin = "FrBMedQA"
    provenance = "native"
    license = "cc-by-4.0"
    homepage = "https://github.com/kadzaki/FrBMedQA"
    hub_id = "kadzaki/FrBMedQA"
    citation = (
        "Kaddari, Bouchentouf, FrBMedQA: the first French biomedical question answering dataset, "
        "IAES International Journal of Artificial Intelligence 11(4), 2022"
    )
    file_patterns = ("*.json", "*.jsonl", "*.parquet")

    def iter_raw(self) -> Iterator[RawRow]:
        yield from number_repeats(super().iter_raw(), ROW_KEYS)

    def read_hub(self) -> Iterator[RawRow]:
        from huggingface_hub import snapshot_download

        hub_id = self.spec.hub_id or self.hub_id
        folder = Path(
            snapshot_download(
                hub_id,
                repo_type="dataset",
                revision=self.spec.revision,
                allow_patterns=[*self.file_patterns, *(f"**/{p}" for p in self.file_patterns)],
            )
        )
        files = sorted({f for p in self.file_patterns for f in (*folder.glob(p), *folder.glob(f"**/{p}"))})
        if not files:
            raise RuntimeError(f"source {self.name!r}: no data file in {hub_id}@{self.spec.revision}")
        for path in files:
            split = self.hub_split(path.stem)
            for index, row in self.rows_of(path):
                yield RawRow(row, split, f"{hub_id}@{self.spec.revision}:{path.name}:{index}")

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        candidates = candidate_entities(row["entities_list"], raw.location)
        labels = dict(candidates)
        answer = str(row["answer"]).strip()
        if answer not in labels:
            raise RecordError(
                "malformed_row",
                f"{raw.location}: answer {answer!r} is not among the candidates {list(labels)[:8]}",
            )
        if not 2 <= len(candidates) <= len(LETTERS):
            raise RecordError(
                "malformed_row",
                f"{raw.location}: {len(candidates)} candidate entities (an item needs 2 to {len(LETTERS)} options)",
            )
        question = str(row["question"])
        if PLACEHOLDER not in question:
            raise RecordError("malformed_row", f"{raw.location}: the question has no {PLACEHOLDER}")
        letter = LETTERS[[key for key, _ in candidates].index(answer)]
        groups = next(
            (item.get("semantic_groups") for item in _items(row["entities_list"]) if answer in item), None
        )
        return self.record(
            hashed_id(row, ROW_KEYS),
            raw.split,
            type="MCQU",
            instruction=CLOZE_PROMPT.format(
                blank=BLANK,
                question=resolve_entities(question.replace(PLACEHOLDER, BLANK), labels, raw.location),
            ),
            context=resolve_entities(str(row["passage"]), labels, raw.location),
            options=lettered_options([label for _, label in candidates]),
            correct_letters=[letter],
            answer=format_letters([letter]),
            subject=", ".join(str(g) for g in groups) if isinstance(groups, list) else "",
        )


def _items(entities: Any) -> list[dict]:
    if isinstance(entities, dict):  # a mapping token -> label, as a variant of the list
        return [{key: value} for key, value in entities.items()]
    if not isinstance(entities, list) or not all(isinstance(item, dict) for item in entities):
        raise TypeError(f"entities_list is a {type(entities).__name__}, not a list of objects")
    return entities


def candidate_entities(entities: Any, location: str) -> list[tuple[str, str]]:
    """(``@entityN``, label) of each candidate, in the row's order (``semantic_groups`` and empty keys
    that a columnar copy may add are skipped); a token listed twice is a malformed row."""
    found: list[tuple[str, str]] = []
    for item in _items(entities):
        for key, value in item.items():
            if ENTITY.fullmatch(str(key)) and value is not None and str(value).strip():
                found.append((str(key), str(value).strip()))
    keys = [key for key, _ in found]
    if len(set(keys)) != len(keys):
        raise RecordError("malformed_row", f"{location}: entities_list names a token twice")
    return found


def resolve_entities(text: str, labels: dict[str, str], location: str) -> str:
    """``text`` with every ``@entityN`` replaced by its label; a token without one is a malformed row."""
    unknown = sorted({token for token in ENTITY.findall(text) if token not in labels})
    if unknown:
        raise RecordError("malformed_row", f"{location}: {unknown[:5]} in the text but not in entities_list")
    return ENTITY.sub(lambda match: labels[match.group(0)], text)
