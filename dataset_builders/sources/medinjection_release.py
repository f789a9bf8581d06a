"""The published MedInjection-FR subsets (``MedInjection-FR/Native``, ``/Translated``,
``/Synthetic``; Belmadani et al., 2026), so the released data can be re-processed (normalised,
validated, deduplicated, carded) without generating it again.

Release rows have five columns: ``instruction``, ``context``, ``answer``, ``type`` (MCQ, MCQU,
OEQ) and ``origin`` (the source dataset). The subsets are stored as JSON files
``Train|Validation|Test/<type>/<type>_<split>.json``; the split comes from the file name (or its
folder), the provenance from the spec's ``provenance``, else from the subset name in the Hub id or
the local path. The release has no option or letter columns: for MCQ/MCQU rows the options are read
out of the instruction (or the context), one per line (``A. …``, ``(A) …``) or inline (``(A) … (B) …``),
and the correct letters out of ``answer`` (``"A"``, ``"A, C"``, ``"B. texte"``, or the exact text of
one option). A row where either cannot be read is rejected as ``malformed_row``, never guessed.
``origin`` keeps the release's value; the row id is ``<origin>:<hash of the five columns>`` (``#n``
added to the n-th repeat of an identical row, which exact deduplication then rejects).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medinjection.core.config import SourceSpec
from medinjection.core.schema import PROVENANCES, RELEASE_COLUMNS, TYPES, RecordError, format_letters
from medinjection.dataset_builders.sources.base import (
    RawRow,
    SourceAdapter,
    SourceUnavailable,
    read_table,
    split_from_name,
)
from medinjection.dataset_builders.sources.textparse import (
    hashed_id,
    number_repeats,
    parse_answer_letters,
    split_options,
)

SUBSETS = {
    "native": "MedInjection-FR/Native",
    "translated": "MedInjection-FR/Translated",
    "synthetic": "MedInjection-FR/Synthetic",
}


class MedInjectionRelease(SourceAdapter):
    name = "medinjection_release"
    origin = "MedInjection-FR"
    provenance = "by subset"  # each instance takes the spec's or the subset's provenance, see __init__
    license = "mit"
    homepage = "https://github.com/ikram28/MedInjection-FR"
    hub_id = None  # one of SUBSETS, named by the spec
    citation = (
        "Belmadani, El Khettari, Constant dit Beaufils, Favre, Dufour, MedInjection-FR: Exploring the Role of Native, "
        "Synthetic, and Translated Data in Biomedical Instruction Tuning, arXiv 2603.06905, 2026"
    )
    file_patterns = ("**/*.json", "**/*.jsonl", "**/*.parquet")

    def __init__(self, spec: SourceSpec, base_dir: Path | None = None):
        super().__init__(spec, base_dir)
        self.provenance_value = spec.provenance or self._provenance_from_location()

    def _provenance_from_location(self) -> str:
        where = (self.spec.hub_id or self.spec.path or "").replace("\\", "/").lower()
        found = [p for p in PROVENANCES if any(part.startswith(p) for part in where.split("/"))]
        if len(found) != 1:
            raise SourceUnavailable(
                f"source {self.name!r}: cannot tell the provenance of {where or '(no path)'!r}; "
                f"set `provenance:` (one of {list(PROVENANCES)}) or name a subset: {sorted(SUBSETS.values())}"
            )
        return found[0]

    def iter_raw(self) -> Iterator[RawRow]:
        yield from number_repeats(super().iter_raw(), RELEASE_COLUMNS)

    def read_local(self) -> Iterator[RawRow]:
        yield from self._read_files(self.local_path, self.local_files())

    def read_hub(self) -> Iterator[RawRow]:
        # The subsets are folders of JSON files, not a `datasets` builder layout: fetch them at the
        # pinned revision and read them like a local copy.
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(
                self.spec.hub_id,
                repo_type="dataset",
                revision=self.spec.revision,
                allow_patterns=["*.json", "*.jsonl", "*.parquet", "**/*.json", "**/*.jsonl", "**/*.parquet"],
            )
        )
        yield from self._read_files(folder, self.files_in(folder))

    def _read_files(self, root: Path, files: list[Path]) -> Iterator[RawRow]:
        for path in files:
            parents = path.relative_to(root).parts[:-1] if root.is_dir() else ()
            split = split_from_name(path.stem) or next(
                (split_from_name(part) for part in reversed(parents) if split_from_name(part)), ""
            )
            for index, row in read_table(path):
                yield RawRow(row, split, f"{path}:{index}")

    def to_record(self, raw: RawRow) -> dict[str, Any]:
        row = raw.row
        missing = [key for key in RELEASE_COLUMNS if key not in row]
        if missing:
            raise RecordError("malformed_row", f"{raw.location}: release column(s) {missing} missing")
        kind = str(row["type"]).strip().upper()
        origin = str(row["origin"] or "").strip() or self.origin
        source_id = hashed_id(row, RELEASE_COLUMNS, origin)
        instruction, context = str(row["instruction"] or ""), str(row["context"] or "")
        if kind not in TYPES:
            raise RecordError(
                "malformed_row", f"{raw.location}: type {row['type']!r} is not one of {list(TYPES)}"
            )
        if kind == "OEQ":
            return self.record(
                source_id,
                raw.split,
                origin=origin,
                type=kind,
                instruction=instruction,
                context=context,
                answer=row["answer"],
            )
        question, options = split_options(instruction)
        if not options:
            context, options = split_options(context)
        if not options:
            raise RecordError(
                "malformed_row",
                f"{raw.location}: {kind} row without lettered options (looked for 'A. …' lines or '(A) …' in instruction and context)",
            )
        try:
            correct = parse_answer_letters(row["answer"], options)
        except RecordError as err:
            raise RecordError("malformed_row", f"{raw.location}: {err.detail}") from err
        return self.record(
            source_id,
            raw.split,
            origin=origin,
            type=kind,
            instruction=question,
            context=context,
            options=options,
            correct_letters=correct,
            answer=format_letters(correct),
        )
