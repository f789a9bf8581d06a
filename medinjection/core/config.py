"""The build config: one YAML file, validated at load by pydantic.

A key that is not part of the config fails with a message naming it and the allowed keys.
Relative paths in a config are relative to the config file's folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medinjection.core.schema import PROVENANCES, TYPES

MUTABLE_REVISIONS = {"main", "master", "HEAD", "refs/heads/main"}


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(StrictModel):
    """One source of a build: an adapter and where to read it (a local path, or a Hub id at a revision)."""

    adapter: str
    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    hub_config: str | None = None
    provenance: Literal["native", "translated", "synthetic"] | None = None
    limit: int | None = Field(default=None, ge=1)
    # Adapter-specific settings (e.g. pubmedqa `format: oeq | yes_no | both`, medinjection_release
    # `origins: {exclude: [...]}`); the adapter refuses unknown ones and checks their values.
    options: dict[str, str | int | float | bool | list[str] | dict[str, list[str]]] = {}

    @model_validator(mode="after")
    def _one_location(self) -> SourceSpec:
        if self.path and self.hub_id:
            raise ValueError(f"source {self.adapter!r}: give either path or hub_id, not both")
        if self.hub_id and not self.revision:
            raise ValueError(
                f"source {self.adapter!r}: hub_id {self.hub_id!r} needs a pinned revision (a commit sha or tag)"
            )
        if self.revision in MUTABLE_REVISIONS:
            raise ValueError(
                f"source {self.adapter!r}: revision {self.revision!r} is a branch that moves; pin a commit sha or a tag"
            )
        return self


class LanguageFilterConfig(StrictModel):
    languages: list[str] = ["fr"]
    # Measured: at 0.5, 3 of 2,483 FrenchMedMCQA items fall below (Latin species names in the options;
    # 9 at 0.8) and none of 573 English MMLU medical items passes.
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    backend: Literal["auto", "langdetect", "langdetect_rs"] = "auto"
    seed: int = 0


class FiltersConfig(StrictModel):
    language: LanguageFilterConfig = LanguageFilterConfig()
    # Exclusion lists from `medinjection quality review pull` (excluded_ids.txt or review_report.json).
    review: list[str] = []
    # A source row with a text field longer than this (characters) is rejected at reading
    # (`field_too_long`) before any work on it. The longest field of the shared real data is 1,582
    # characters (a PubMedQA context); the paper trains on 2,048 tokens, about 8,000 characters of French.
    max_field_chars: int = Field(default=100_000, ge=1)


class DedupConfig(StrictModel):
    """Near-duplicate removal: datatrove's MinHash (LSH) finds candidate pairs, then each pair is checked.

    The text hashed is the question, the options in sorted order (so reordered options still match)
    and, for open questions, the answer; words are lower-cased and punctuation dropped (datatrove's
    ``simplify_text``), then cut into word ``n_grams``. LSH with ``num_buckets`` bands of
    ``hashes_per_bucket`` rows proposes pairs around a similarity of (1/b)^(1/r); a pair is merged
    only when the exact Jaccard similarity of the n-gram sets reaches ``threshold`` and the correct
    options agree. Defaults measured on the shared data: docs/architecture.md (Near-duplicates).
    """

    enabled: bool = True
    n_grams: int = Field(default=1, ge=1)
    num_buckets: int = Field(default=20, ge=1)
    hashes_per_bucket: int = Field(default=4, ge=1)
    threshold: float = Field(default=0.6, gt=0.0, le=1.0)
    # 64-bit signatures trip datatrove 0.10's "Hash order error" in the bucket stage (datatrove #157, #397).
    hash_precision: Literal[32] = 32
    seed: int = 1


class EvalSetSpec(SourceSpec):
    """An evaluation set read through a source adapter; only its ``splits`` are used.

    A set whose rows carry no split (PubMedQA's ``ori_pqal.json``) gets the same hashed split as a
    build source would (``split`` and ``seed`` of the build); ``splits: all`` takes every row.
    ``name`` (default: the adapter's name) names the set in the dedup report and the card.
    """

    name: str | None = None
    splits: list[Literal["train", "validation", "test"]] | Literal["all"] = ["test"]

    @field_validator("splits")
    @classmethod
    def _some_splits(cls, value: list[str] | str) -> list[str] | str:
        if not value:
            raise ValueError("give at least one split (train, validation, test) or `all`")
        return value

    @property
    def label(self) -> str:
        return self.name or self.adapter

    def wants(self, split: str) -> bool:
        """Whether the set's items of ``split`` are evaluation items."""
        return self.splits == "all" or split in self.splits


class DecontaminationConfig(StrictModel):
    """Training items sharing enough word n-grams with an evaluation item are removed.

    ``threshold``: the fraction of an evaluation item's n-grams (question + options) found in the
    training item. ``splits``: the splits of the build that are checked (the evaluation sets are
    the build's own test splits when ``own_test_splits``, plus ``eval_sets``). ``n_grams`` 3, not the
    8 of long-document recipes (Tulu): exam items are 15-50 words, and on FrenchMedMCQA (dev items
    reworded by one dropped word and one changed option) 8-grams at 0.5 catch 76 % of the copies,
    3-grams 100 % (``benchmarks/decontamination.py``; docs/benchmarks.md).
    """

    enabled: bool = True
    own_test_splits: bool = True
    eval_sets: list[EvalSetSpec] = []
    n_grams: int = Field(default=3, ge=1)
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    splits: list[Literal["train", "validation"]] = ["train", "validation"]

    @field_validator("eval_sets")
    @classmethod
    def _unique_names(cls, value: list[EvalSetSpec]) -> list[EvalSetSpec]:
        # the report counts items and removals per set name: two sets under one name would merge
        labels = [spec.label for spec in value]
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"evaluation sets share the name(s) {repeated}: give each a distinct `name`")
        return value


class SplitConfig(StrictModel):
    """Fractions for sources without their own splits (a deterministic split by hashed id)."""

    validation: float = Field(default=0.05, ge=0.0, lt=1.0)
    test: float = Field(default=0.05, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if self.validation + self.test >= 1.0:
            raise ValueError("split.validation + split.test must be below 1")
        return self


class SlurmOptions(StrictModel):
    partition: str
    time: str = "24:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    qos: str | None = None
    job_name: str = "medinjection"
    sbatch_args: dict[str, Any] = {}
    env_command: str | None = None


class RayOptions(StrictModel):
    address: str | None = None
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2


class ExecutorConfig(StrictModel):
    type: Literal["local", "slurm", "ray"] = "local"
    tasks: int = Field(default=2, ge=1)
    workers: int = Field(default=-1, ge=-1)
    slurm: SlurmOptions | None = None
    ray: RayOptions | None = None

    @model_validator(mode="after")
    def _options_match(self) -> ExecutorConfig:
        if self.type == "slurm" and self.slurm is None:
            raise ValueError("executor.type slurm needs an executor.slurm section (at least `partition`)")
        return self


class ModelPrice(StrictModel):
    """USD per million tokens, for the cost estimate of a generation run."""

    input: float = Field(default=0.0, ge=0.0)
    output: float = Field(default=0.0, ge=0.0)


class GenerationBackendConfig(StrictModel):
    """Which LLM answers: an OpenAI-compatible chat API (OpenAI, vLLM serve, TGI, ``transformers
    serve``), or an in-process model (``transformers``; ``vllm`` offline when installed)."""

    type: Literal["openai", "transformers", "vllm"] = "openai"
    model: str
    # openai: the endpoint is explicit, never a silent default: `base_url`, else $OPENAI_BASE_URL (the
    # variable named by `base_url_env`); a build with neither stops before any work. The key: $OPENAI_API_KEY.
    base_url: str | None = None
    base_url_env: str = "OPENAI_BASE_URL"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(default=16, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=6, ge=0)
    backoff_s: float = Field(default=1.0, ge=0)
    max_backoff_s: float = Field(default=60.0, ge=0)
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=2048, ge=1)
    seed: int | None = 0
    json_mode: bool = True  # ask for response_format json_object (servers that lack it: false)
    prices: dict[str, ModelPrice] = {}


class GenerationConfig(StrictModel):
    backend: GenerationBackendConfig
    prompt_version: str = "v1"
    # The SQLite response cache. Default: $MEDINJECTION_GENERATION_CACHE, else
    # ${XDG_CACHE_HOME:-~/.cache}/medinjection/generation-cache.sqlite: outside the build folder, so
    # `build --overwrite` (or deleting the folder) never throws paid answers away.
    cache: str | None = None
    # JSONL files of answers loaded into the cache before the run (the demo's pre-filled cache).
    cache_seed: list[str] = []
    batch_size: int = Field(default=256, ge=1)
    limit: int | None = Field(default=None, ge=1)
    # Stop the stage once more than this share of its requests failed for good (checked from the
    # 20th finished request on): a broken endpoint is not asked thousands of times. Below it, a task
    # with failed requests still ends in error, unmarked, so that a rerun asks exactly those again.
    max_failure_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    language_threshold: float = Field(default=0.5, ge=0.0, le=1.0)


class TranslateConfig(GenerationConfig):
    """English sources translated into French (``translated`` rows)."""

    sources: list[SourceSpec]
    min_length_ratio: float = Field(default=0.6, gt=0)
    max_length_ratio: float = Field(default=2.0, gt=0)


class SynthesizeConfig(GenerationConfig):
    """French seed texts (clinical cases, abstracts) turned into new items (``synthetic`` rows)."""

    seeds: list[SourceSpec]
    types: list[Literal["MCQ", "MCQU", "OEQ"]] = ["MCQU", "MCQ", "OEQ"]
    n_options: int = Field(default=5, ge=2, le=26)
    origin: str = "MedInjection-FR synthetic"
    # Not a copy of the seed: longest common run of characters and share of word 8-grams found in it.
    max_common_chars: int = Field(default=120, ge=1)
    max_ngram_overlap: float = Field(default=0.5, ge=0.0, le=1.0)
    expected_output_tokens: int = Field(default=400, ge=1)


class QualityScreenConfig(GenerationConfig):
    """An LLM grades each translated and synthetic item 1-5 (``medinjection/prompts/quality/``); the
    grade and its reason are columns of the record (``quality``). Items are labelled, never dropped:
    a mix file's ``min_quality`` decides what a mix uses, so one screening serves every threshold."""

    provenances: list[Literal["native", "translated", "synthetic"]] = ["translated", "synthetic"]
    max_failure_rate: float = Field(default=0.05, ge=0.0, le=1.0)


class BuildConfig(StrictModel):
    name: str
    description: str = ""
    output: str = "medinjection-fr"
    seed: int = 0
    provenance_priority: list[Literal["native", "translated", "synthetic"]] = list(PROVENANCES)
    sources: list[SourceSpec]
    filters: FiltersConfig = FiltersConfig()
    dedup: DedupConfig = DedupConfig()
    decontamination: DecontaminationConfig = DecontaminationConfig()
    split: SplitConfig = SplitConfig()
    executor: ExecutorConfig = ExecutorConfig()
    translate: TranslateConfig | None = None
    synthesize: SynthesizeConfig | None = None
    quality_screen: QualityScreenConfig | None = None
    # Reports of `medinjection translation-check` (a file or its folder): the card states each
    # translation backend's BLEU / chrF / COMET on its parallel test file.
    translation_checks: list[str] = []
    # Where the config file lives; relative paths are resolved against it.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("provenance_priority")
    @classmethod
    def _all_provenances(cls, value: list[str]) -> list[str]:
        if sorted(value) != sorted(PROVENANCES):
            raise ValueError(f"provenance_priority must order exactly {list(PROVENANCES)}")
        return value

    def resolve(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()


def bundled_configs() -> dict[str, Path]:
    folder = resources.files("medinjection.dataset_builders") / "configs"
    return {p.name.removesuffix(".yaml"): Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


class ConfigError(ValueError):
    pass


def read_yaml_file(
    path_or_name: str | Path, bundled: dict[str, Path], what: str, error: type[Exception]
) -> tuple[Path, Any]:
    """``(path, parsed YAML)`` of a file given by its path or by the name of a bundled one; a missing
    file or invalid YAML is an ``error`` naming it (and the bundled names)."""
    path = Path(path_or_name)
    if not path.exists():
        if str(path_or_name) not in bundled:
            raise error(
                f"no {what} {str(path)!r} and no bundled {what} of that name; bundled: {sorted(bundled)}"
            )
        path = bundled[str(path_or_name)]
    try:
        return path, yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML: {err}") from err


def load_build_config(path_or_name: str | Path) -> BuildConfig:
    """Load a build config from a YAML path or a bundled name (``demo``, ``full``)."""
    path, raw = read_yaml_file(path_or_name, bundled_configs(), "config file", ConfigError)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a build config is a YAML mapping")
    try:
        config = BuildConfig(**raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: {_explain(err)}") from err
    config.base_dir = path.resolve().parent
    return config


def _explain(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    lines = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(model or BuildConfig, item["loc"][:-1])
            lines.append(f"unknown key {where!r} (allowed there: {allowed})")
        else:
            lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the model found at ``loc`` (list indexes skipped)."""
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for candidate in candidates:
            inner = [candidate, *getattr(candidate, "__args__", ())]
            found = next((c for c in inner if isinstance(c, type) and issubclass(c, BaseModel)), None)
            if found:
                model = found
                break
    return [name for name, field in model.model_fields.items() if not field.exclude]


# ---- mix files -------------------------------------------------------------------------------------

TYPE_PRESETS: dict[str, tuple[str, ...]] = {
    "paper": ("MCQ", "MCQU"),
    "multiple-choice": ("MCQ", "MCQU"),
    "all": TYPES,
}
"""Named task-type sets of a mix. ``paper``: the released models were trained on multiple-choice items
only (their model cards); open-ended items were evaluated, not trained on."""
MIX_NAME = r"^[a-z][a-z0-9_]*$"


def parse_types(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Task types from a preset name (``paper``, ``multiple-choice``, ``all``) or a list (or a
    comma-separated string) of ``MCQ``, ``MCQU``, ``OEQ``; in the schema's order."""
    if isinstance(value, str):
        if value.strip().lower() in TYPE_PRESETS:
            return TYPE_PRESETS[value.strip().lower()]
        value = value.split(",")
    chosen = {part.strip().upper() for part in value if part.strip()}
    unknown = sorted(chosen - set(TYPES))
    if unknown or not chosen:
        given = value if isinstance(value, str) else ",".join(value)
        raise ValueError(
            f"types {given!r}: "
            + (f"unknown type(s) {unknown}; " if unknown else "no type given; ")
            + f"give a preset ({', '.join(TYPE_PRESETS)}) or types among {', '.join(TYPES)}"
        )
    return tuple(t for t in TYPES if t in chosen)


def preset_name(types: tuple[str, ...] | list[str]) -> str | None:
    """The first preset with exactly these types (``paper`` for MCQ + MCQU), or None."""
    return next((name for name, preset in TYPE_PRESETS.items() if preset == tuple(types)), None)


class OriginFilter(StrictModel):
    """Which ``origin`` values (source datasets) a mix draws from: only ``include``, or all but ``exclude``."""

    include: list[str] | None = None
    exclude: list[str] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> OriginFilter:
        if (self.include is None) == (self.exclude is None):
            raise ValueError("origins: give either include or exclude (a list of origin names)")
        return self

    def keeps(self, origin: str) -> bool:
        return origin in self.include if self.include is not None else origin not in (self.exclude or [])


class MixSpec(StrictModel):
    """One mix of a mix file: provenance weights, one or several (nested) sizes, task types, filters."""

    name: str = Field(pattern=MIX_NAME)
    weights: dict[Literal["native", "translated", "synthetic"], float]
    size: int | list[int]
    types: str | list[str] = "paper"
    origins: OriginFilter | None = None
    min_quality: int | None = Field(default=None, ge=1, le=5)
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _not_a_provenance(cls, name: str) -> str:
        if name in PROVENANCES:
            raise ValueError(f"mix name {name!r} is a provenance's config name; choose another")
        return name

    @field_validator("weights")
    @classmethod
    def _positive(cls, weights: dict) -> dict:
        if not weights:
            raise ValueError("weights: give at least one provenance (e.g. {native: 1, translated: 1})")
        bad = {p: w for p, w in weights.items() if not w > 0}
        if bad:
            raise ValueError(f"weights must be positive (leave a provenance out instead): {bad}")
        return {p: weights[p] for p in PROVENANCES if p in weights}  # canonical order

    @field_validator("size")
    @classmethod
    def _sizes(cls, size: int | list[int]) -> int | list[int]:
        sizes = size if isinstance(size, list) else [size]
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError(f"size: one positive number or a list of them, got {size}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"size: a size is repeated in {size}")
        return size

    @field_validator("types")
    @classmethod
    def _types(cls, types: str | list[str]) -> str | list[str]:
        parse_types(types)
        return types

    @property
    def type_set(self) -> tuple[str, ...]:
        return parse_types(self.types)

    @property
    def sizes(self) -> list[int]:
        """The sizes, largest first (each smaller set is drawn inside the next larger one)."""
        return sorted(self.size if isinstance(self.size, list) else [self.size], reverse=True)

    def config_name(self, size: int) -> str:
        """``<name>`` for a mix of one size, ``<name>_<size>`` for each of several."""
        return self.name if not isinstance(self.size, list) or len(self.size) == 1 else f"{self.name}_{size}"


class MixFileError(ConfigError):
    pass


def bundled_mix_files() -> dict[str, Path]:
    folder = resources.files("medinjection.dataset_builders") / "configs" / "mixes"
    return {p.name.removesuffix(".yaml"): Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def load_mix_file(path_or_name: str | Path) -> list[MixSpec]:
    """The mixes of a mix file (a YAML list of mixes), from a path or a bundled name (``paper``)."""
    path, raw = read_yaml_file(path_or_name, bundled_mix_files(), "mix file", MixFileError)
    if not isinstance(raw, list) or not raw:
        raise MixFileError(f"{path}: a mix file is a non-empty YAML list of mixes (name, weights, size, ...)")
    specs = []
    for index, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise MixFileError(f"{path}: mix {index} is not a mapping (name, weights, size, ...)")
        try:
            specs.append(MixSpec(**entry))
        except ValidationError as err:
            raise MixFileError(f"{path}: mix {entry.get('name', index)!r}: {_explain(err, MixSpec)}") from err
    configs: dict[str, str] = {}
    for spec in specs:
        for size in spec.sizes:
            config = spec.config_name(size)
            if config in configs:
                raise MixFileError(
                    f"{path}: config {config!r} comes from two mixes ({configs[config]}, {spec.name})"
                )
            configs[config] = spec.name
    return specs
