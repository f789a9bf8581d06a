"""PubMedQA (expert-labelled PQA-L, Jin et al., 2019): 1,000 English research questions, each on a
PubMed abstract, with a yes/no/maybe decision and a long answer. A source to translate
(provenance ``translated``, language ``en``).

Local: ``ori_pqal.json`` (a JSON object keyed by PMID: ``QUESTION``, ``CONTEXTS`` [..],
``final_decision``, ``LONG_ANSWER``, ...). Hub: ``qiaojin/PubMedQA`` config ``pqa_labeled``
(``pubid``, ``question``, ``context.contexts``, ``final_decision``, ``long_answer``).

The spec option ``format`` chooses what an item becomes:

- ``oeq`` (default): open-ended; context = the abstract's paragraphs, answer = ``LONG_ANSWER``;
- ``yes_no``: MCQU with options A yes, B no, C maybe (English, like the rest of the row: the
  translation step translates options too), correct letter from ``final_decision``;
- ``both``: one item of each kind per question (source ids ``<PMID>`` and ``<PMID>:yes_no``).

PQA-L ships without splits (its official 500-question test set is a list of PMIDs outside this
file): items get the build's hashed split. The Hub's ``pqa_labeled`` puts all 1,000 questions in
one split named ``train``; that is the whole labelled set, not a training split, so it gets the
same hashed split as the local file (a build or an evaluation set reads both alike).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from medinjection.core.schema import RecordError
from medinjection.dataset_builders.sources.base import RawRow, SourceAdapter

DECISIONS = {"yes": "A", "no": "B", "maybe": "C"}
YES_NO_OPTIONS = [{"letter": letter, "text": text} for text, letter in DECISIONS.items()]
FORMATS = {"oeq": ("oeq",), "yes_no": ("yes_no",), "both": ("oeq", "yes_no")}


class PubMedQA(SourceAdapter):
    name = "pubmedqa"
    origin = "PubMedQA"
    provenance = "translated"
    language = "en"
    license = "mit"
    homepage = "https://pubmedqa.github.io"
    hub_id = "qiaojin/PubMedQA"
    hub_configs = ("pqa_labeled",)
    citation = "Jin et al., PubMedQA: A Dataset for Biomedical Research Question Answering, EMNLP 2019"
    file_patterns = ("*.json", "*.jsonl", "*.parquet")
    option_names = {
        "format": "oeq (default) | yes_no | both: open-ended items, yes/no/maybe MCQU items, or both"
    }

    @property
    def variants(self) -> tuple[str, ...]:
        value = str(self.spec.options.get("format", "oeq"))
        if value not in FORMATS:
            from medinjection.core.config import ConfigError

            raise ConfigError(f"source {self.name!r}: option format={value!r}; allowed: {sorted(FORMATS)}")
        return FORMATS[value]

    def hub_split(self, name: str) -> str:
        return ""  # pqa_labeled's only split, "train", is the whole labelled set

    def read_local(self) -> Iterator[RawRow]:
        yield from self._expand(super().read_local())

    def read_hub(self) -> Iterator[RawRow]:
        yield from self._expand(super().read_hub())

    def _expand(self, rows: Iterator[RawRow]) -> Iterator[RawRow]:
        variants = self.variants
        for raw in rows:
            for variant in variants:
                yield RawRow({**raw.row, "_variant": variant}, raw.split, raw.location)

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        if "QUESTION" in row:  # ori_pqal.json
            pmid, question = row["_key"], row["QUESTION"]
            contexts, decision, long_answer = row["CONTEXTS"], row["final_decision"], row["LONG_ANSWER"]
        else:  # the Hub's pqa_labeled
            pmid, question = row["pubid"], row["question"]
            contexts, decision, long_answer = (
                row["context"]["contexts"],
                row["final_decision"],
                row["long_answer"],
            )
        if not isinstance(contexts, list):
            raise RecordError("malformed_row", f"{raw.location}: CONTEXTS is not a list of paragraphs")
        common = dict(
            instruction=question, context="\n\n".join(str(c) for c in contexts), language=self.language
        )
        if row.get("_variant", "oeq") == "oeq":
            return self.record(pmid, raw.split, type="OEQ", answer=long_answer, **common)
        letter = DECISIONS.get(str(decision).strip().lower())
        if letter is None:
            raise RecordError(
                "malformed_row", f"{raw.location}: final_decision {decision!r} is not yes/no/maybe"
            )
        return self.record(
            f"{pmid}:yes_no",
            raw.split,
            type="MCQU",
            options=[dict(opt) for opt in YES_NO_OPTIONS],
            correct_letters=[letter],
            answer=letter,
            **common,
        )
