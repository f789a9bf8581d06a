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

The option ``origins: {exclude: [...]}`` (or ``{include: [...]}``) selects rows by their ``origin``
(compared without case, spaces or punctuation): the full build takes from the Native release only
the origins that have no public source of their own, and reads the others through their adapters.
The rows taken and left out are counted per origin (``reading_report``); a name of the option that
no row carries is a warning of the build (a misspelt origin would otherwise let its rows through,
or keep them out, without a word). The release is a republication (``republished``): an item also
read from its own source is kept in that copy by deduplication.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medinjection.core.config import ConfigError, SourceSpec
from medinjection.core.schema import PROVENANCES, RELEASE_COLUMNS, TYPES, RecordError, format_letters
from medinjection.dataset_builders.sources.base import (
    RawRow,
    SourceAdapter,
    SourceUnavailable,
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
# The own licence of each native origin the Native card names, as its publisher states it (README.md,
# "What the adapters assume"): the release's rows of these origins keep it. "unknown": no licence is
# stated (such rows block `publish` until the user checks them). Other origins: the release's licence.
ORIGIN_LICENSES = {
    "MediQAl": "cc-by-4.0",
    "FrenchMedMCQA": "apache-2.0",
    "FrBMedQA": "cc-by-4.0",
    "mlabonne/medical-cases-fr": "unknown",
    "mlabonne/medical-mcqa-fr": "unknown",
    "S-Editions": "unknown",
}
ORIGIN_FILTERS = ("include", "exclude")


def origin_key(origin: str) -> str:
    """An origin name compared without case, spaces or punctuation ("S-Editions" = "s editions")."""
    return re.sub(r"[^0-9a-z]", "", str(origin).casefold())


_LICENSE_BY_KEY = {origin_key(name): value for name, value in ORIGIN_LICENSES.items()}


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
    option_names = {
        "origins": "rows to take by their `origin`: {exclude: [names]} or {include: [names]}",
    }
    republished = True

    def __init__(self, spec: SourceSpec, base_dir: Path | None = None):
        super().__init__(spec, base_dir)
        self.provenance_value = spec.provenance or self._provenance_from_location()
        self.origin_filter = self._origin_filter(spec.options.get("origins"))
        self.origin_counts: dict[str, Counter] = {"taken": Counter(), "left_out": Counter()}

    def _origin_filter(self, value) -> tuple[str, dict[str, str]] | None:
        """(``include`` | ``exclude``, {key: name as written}) of the ``origins`` option, checked."""
        if value is None:
            return None
        if (
            not isinstance(value, dict)
            or len(value) != 1
            or next(iter(value)) not in ORIGIN_FILTERS
            or not isinstance(next(iter(value.values())), list)
            or not next(iter(value.values()))
        ):
            raise ConfigError(
                f"source {self.name!r}: option origins={value!r}; give {{exclude: [origin, ...]}} or "
                "{include: [origin, ...]} (a non-empty list of origin names)"
            )
        mode, names = next(iter(value.items()))
        return mode, {origin_key(name): str(name) for name in names}

    def takes(self, origin: str) -> bool:
        """Whether a row of ``origin`` is read (the ``origins`` option)."""
        if self.origin_filter is None:
            return True
        mode, names = self.origin_filter
        return (origin_key(origin) in names) == (mode == "include")

    @classmethod
    def origin_license(cls, origin: str) -> str:
        return _LICENSE_BY_KEY.get(origin_key(origin), cls.license)

    def reading_report(self) -> dict:
        report = super().reading_report()
        if self.origin_filter is not None:
            report["origins"] = {
                kind: dict(sorted(counts.items())) for kind, counts in self.origin_counts.items()
            }
        return report

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
        for kind in self.origin_counts.values():
            kind.clear()
        for path in files:
            parents = path.relative_to(root).parts[:-1] if root.is_dir() else ()
            split = split_from_name(path.stem) or next(
                (split_from_name(part) for part in reversed(parents) if split_from_name(part)), ""
            )
            for index, row in self.rows_of(path):
                origin = row.get("origin")
                if origin is not None and self.origin_filter is not None:
                    taken = self.takes(origin)
                    self.origin_counts["taken" if taken else "left_out"][str(origin)] += 1
                    if not taken:
                        continue
                yield RawRow(row, split, f"{path}:{index}")
        self._note_unused_origin_names()

    def _note_unused_origin_names(self) -> None:
        """A name of the ``origins`` option that no row carries (after a complete reading)."""
        if self.origin_filter is None:
            return
        mode, names = self.origin_filter
        seen = {origin_key(o) for counts in self.origin_counts.values() for o in counts}
        unused = [name for key, name in names.items() if key not in seen]
        if unused:
            present = sorted({o for counts in self.origin_counts.values() for o in counts})
            self.notes.append(
                f"source {self.name!r} ({self.spec.hub_id or self.spec.path}): origins.{mode} names "
                f"{unused}, which no row carries (origins present: {present})"
            )

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
