"""The settings of an evaluation: one dataclass, read like a training recipe.

``EvalArguments`` is parsed by TRL's ``TrlParser`` (transformers' ``HfArgumentParser``), exactly as
``medinjection train`` parses its recipe: a flat YAML file given with ``--config FILE`` sets the
fields, command-line flags (``--key value``) override them, and an unknown key, in the file or on
the command line, fails naming it. So an evaluation is a recipe file a user can keep and rerun::

    medinjection evaluate --config recipes/evaluation/qwen3-4b-instruct-2507.yaml
    python -m medinjection.recipes.evaluate --config recipes/evaluation/tiny.yaml --limit 3 --output_dir scratch

The names are TRL's where TRL has one (``model_name_or_path``, ``model_revision``,
``dataset_name``, ``dataset_config``, ``dataset_split``, ``dataset_revision``, ``output_dir``).
``--config`` also takes the name of a bundled recipe (``recipes/evaluation/<name>.yaml``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

BACKENDS = ("transformers", "vllm")
ENGINES = ("batched", "reference")
DTYPES = ("auto", "float32", "bfloat16", "float16")
JUDGE_BACKENDS = ("openai", "transformers", "vllm")
RECIPE_DIR = "evaluation"
"""Bundled evaluation recipes: ``medinjection.recipes`` / ``evaluation/<name>.yaml``."""


class EvaluationError(RuntimeError):
    """A setting that cannot be honoured (nothing to score, a run folder whose files changed); the
    message says what to change."""


@dataclass
class EvalArguments:
    """What ``medinjection evaluate`` scores, how, and where it writes (every field is a recipe key)."""

    # --- the models --------------------------------------------------------------------------------
    model_name_or_path: str = field(
        metadata={"help": "Base model: a Hub id (pin it with model_revision) or a local folder."}
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "Commit sha or tag of a Hub base model (ignored for a local folder)."}
    )
    adapters: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Run folders of `medinjection train` (adapter files + manifest), or folders of run folders "
            "(runs/); every run found is scored on the base model."
        },
    )
    base: bool = field(
        default=True,
        metadata={
            "help": "Also score the base model (the baseline of the paired comparisons; reused when already "
            "scored). Always scored when no adapter is given."
        },
    )

    # --- what is scored ----------------------------------------------------------------------------
    tasks: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Evaluation tasks: bundled names (`medinjection tasks` lists them) or paths of task YAMLs."
        },
    )
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A built MedInjection-FR folder or Hub dataset repo to score (with dataset_config)."
        },
    )
    dataset_config: str | None = field(
        default=None,
        metadata={"help": "Config of dataset_name: native, translated, synthetic, or a mix (nat_trad, ...)."},
    )
    dataset_split: str = field(default="test", metadata={"help": "Split of dataset_name."})
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Commit sha or tag of a Hub dataset_name (required for a Hub repo)."}
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder that relative paths of the tasks resolve against (default: the current folder; "
            "for a task file of your own, its folder)."
        },
    )
    limit: int | None = field(
        default=None,
        metadata={
            "help": "Only the first N items of each task: a smoke run. Its summaries say `subsample: true` and "
            "are never copied into a run folder."
        },
    )
    skip_bad_rows: bool = field(
        default=False,
        metadata={
            "help": "Score the other rows when some cannot be read (they go to rejected.jsonl). An item whose "
            "gold is irregular (not among the options, empty) is no bad row: it is scored, as the authors did."
        },
    )

    # --- the protocol ------------------------------------------------------------------------------
    permutations: int = field(
        default=0,
        metadata={
            "help": "K seeded option orders per multiple-choice item, beside the original (position bias)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the permutations and of every bootstrap."})
    letters_only: bool = field(
        default=True,
        metadata={
            "help": "Also score the letters-only constrained variant (beside the authors' two predictions)."
        },
    )
    oeq_max_new_tokens: int = field(
        default=512,
        metadata={"help": "New tokens of an open-ended answer (greedy; the paper: 512)."},
    )
    bertscore_model: str | None = field(
        default=None,
        metadata={
            "help": "BERTScore model: a Hub id or a local folder. Default none: BERTScore is reported missing, "
            "with the reason (nothing is fetched unless asked). Offline, a Hub id that is not in the cache fails "
            "before scoring starts."
        },
    )
    bertscore_layers: int | None = field(
        default=None,
        metadata={"help": "BERTScore layer (default: bert-score's for known ids, else the last)."},
    )
    judge: str | None = field(
        default=None,
        metadata={
            "help": "Judge open-ended answers with this model (as `medinjection judge --judge-model`): a model "
            "name at judge_base_url, or a local folder / Hub id with judge_backend transformers or vllm."
        },
    )
    judge_backend: str = field(
        default="openai",
        metadata={"help": "Judge backend: openai (any compatible server), transformers, vllm."},
    )
    judge_base_url: str | None = field(
        default=None, metadata={"help": "Endpoint of an openai judge (default: $OPENAI_BASE_URL)."}
    )
    judge_prompts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Judge prompts: names of medinjection/prompts/judge/ or .yaml files of the same keys "
            "(default: binary-lenient-v1 graded-v1)."
        },
    )
    judge_cache: str | None = field(
        default=None, metadata={"help": "Judge response cache (default: OUTPUT_DIR/judge-cache.sqlite)."}
    )
    judge_max_tokens: int | None = field(
        default=None, metadata={"help": "New tokens of a verdict (default: the prompt's, 1 as in the paper)."}
    )
    judge_concurrency: int = field(
        default=16, metadata={"help": "Judge requests in flight (openai backend)."}
    )

    # --- how it runs -------------------------------------------------------------------------------
    batch_size: int = field(default=64, metadata={"help": "Most prompts per batch."})
    max_batch_tokens: int = field(default=32768, metadata={"help": "Most padded prompt tokens per batch."})
    dtype: str = field(
        default="auto",
        metadata={
            "help": "auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16.",
            "choices": list(DTYPES),
        },
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda, cuda:N."})
    backend: str = field(
        default="transformers",
        metadata={
            "help": "transformers, or vllm (the base as it is, adapters merged after a check; needs vLLM).",
            "choices": list(BACKENDS),
        },
    )
    engine: str = field(
        default="batched",
        metadata={
            "help": "batched (fast), or reference (the authors' per-item loop, for checking; transformers only).",
            "choices": list(ENGINES),
        },
    )
    merge: bool = field(
        default=False,
        metadata={
            "help": "Merge each adapter for speed, after checking that it decodes the same predictions."
        },
    )
    merge_check_items: int = field(default=32, metadata={"help": "Items the merge check compares."})

    # --- statistics --------------------------------------------------------------------------------
    bootstrap_resamples: int = field(
        default=1000, metadata={"help": "Bootstrap resamples of every interval."}
    )
    alpha: float = field(
        default=0.05, metadata={"help": "False discovery rate of the comparisons (Benjamini-Hochberg)."}
    )

    # --- output ------------------------------------------------------------------------------------
    output_dir: str = field(
        default="eval", metadata={"help": "Output folder: OUTPUT_DIR/<model_tag>/<task>/, comparisons.json."}
    )
    overwrite: bool = field(
        default=False, metadata={"help": "Score again even when the same scoring is already there."}
    )

    def __post_init__(self) -> None:
        # None from a YAML `key:` with no value, or a bare string where a list is meant
        for name in ("adapters", "tasks", "judge_prompts"):
            value = getattr(self, name)
            setattr(
                self, name, [] if value is None else [value] if isinstance(value, str | Path) else list(value)
            )
        self.adapters = [str(path) for path in self.adapters]
        if isinstance(self.bertscore_model, str) and self.bertscore_model.strip().lower() in ("", "none"):
            self.bertscore_model = None
        choices = {"backend": BACKENDS, "engine": ENGINES, "dtype": DTYPES, "judge_backend": JUDGE_BACKENDS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} {getattr(self, name)!r}: expected one of {list(allowed)}")
        if self.engine == "reference" and self.backend != "transformers":
            raise ValueError("engine reference runs transformers' generate: use it with backend transformers")
        minimum = {
            "permutations": 0,
            "merge_check_items": 0,
            "batch_size": 1,
            "max_batch_tokens": 1,
            "bootstrap_resamples": 1,
            "oeq_max_new_tokens": 1,
            "judge_concurrency": 1,
        }
        for name, least in minimum.items():
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be {least} or more, got {getattr(self, name)}")
        for name in ("limit", "bertscore_layers", "judge_max_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be 1 or more (or unset), got {getattr(self, name)}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.dataset_name and not self.dataset_config:
            raise ValueError(
                "dataset_name needs dataset_config (native, translated, synthetic or a mix such as nat_trad)"
            )
        if self.dataset_config and not self.dataset_name:
            raise ValueError("dataset_config is the config of dataset_name: give dataset_name too")

    @property
    def full(self) -> bool:
        """Whether every item of every task is scored (no ``limit``): only such a summary goes into a run folder."""
        return self.limit is None


# ---- parsing ---------------------------------------------------------------------------------------
def make_parser(prog: str | None = None):
    """TRL's parser over ``EvalArguments`` (``--config FILE`` plus ``--key value`` overrides)."""
    from trl import TrlParser

    return TrlParser((EvalArguments,), prog=prog)


def field_names() -> list[str]:
    return sorted(f.name for f in fields(EvalArguments))


def recipes_dir() -> Path:
    """The bundled evaluation recipes (``recipes/evaluation/`` of the package)."""
    return Path(str(resources.files("medinjection.recipes") / RECIPE_DIR))


def known_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file: a path that exists, else a bundled recipe by name (``tiny``, ``qwen3-4b-instruct-2507``)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    bundled = recipes_dir() / f"{path.stem if path.suffix in ('.yaml', '.yml') else path.name}.yaml"
    if bundled.is_file() and (
        path.suffix not in (".yaml", ".yml") or path.parts[-3:-1] == ("recipes", RECIPE_DIR)
    ):
        return bundled
    raise ValueError(f"{name_or_path}: no such recipe file; bundled recipes: {known_recipes()}")


def _check_recipe(path: Path) -> None:
    """Fail on a recipe that is not a mapping of known keys, naming the file, the key and the allowed ones."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not a readable YAML recipe ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping of evaluate settings")
    unknown = sorted(set(data) - set(field_names()) - {"env"})
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {field_names()}")


def parse_args(argv: Sequence[str] | None = None, prog: str | None = None) -> EvalArguments:
    """``EvalArguments`` from ``--config FILE`` and command-line overrides (which win).

    Raises ``ValueError`` naming an unknown key (in the file or on the command line) or a bad value.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args:
        index = args.index("--config")
        if index + 1 >= len(args):
            raise ValueError("--config needs a recipe file (or a bundled recipe name)")
        path = recipe_path(args[index + 1])
        _check_recipe(path)
        args[index + 1] = str(path)
    try:
        (parsed,) = make_parser(prog).parse_args_and_config(args)
    except ValueError as err:
        if "not used by the HfArgumentParser" in str(err):
            raise ValueError(f"{err}; allowed: {['--' + name for name in field_names()]}") from None
        raise
    return parsed


def settings_from(values: dict[str, Any] | None = None, recipe: str | Path | None = None) -> EvalArguments:
    """``EvalArguments`` of a recipe (read by ``parse_args``) with ``values`` replacing some keys.

    What the demo uses to run the tiny recipe with the few keys it changes (its folders): the recipe
    is parsed exactly as ``medinjection evaluate --config`` parses it, and the result validated again.
    """
    import dataclasses

    unknown = sorted(set(values or {}) - set(field_names()))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; allowed: {field_names()}")
    if recipe is None:
        return EvalArguments(**(values or {}))
    return dataclasses.replace(parse_args(["--config", str(recipe)]), **(values or {}))


def _local(path: str | None) -> str | None:
    """A local folder or file as an absolute path (so that ``./tiny-qwen3`` and its absolute path are one
    setting); anything else (a Hub id, a model name at a server) as given."""
    if path is None or not Path(path).expanduser().exists():
        return path
    return str(Path(path).expanduser().resolve())


def scorer_options(args: EvalArguments) -> dict[str, dict[str, Any]]:
    """The options of each scorer, as plain JSON (recorded in every summary and its fingerprint)."""
    from medinjection.evaluation.open_ended import scorer_options as oeq_options

    return {
        "oeq": oeq_options(
            Path(args.output_dir).expanduser().resolve(),
            max_new_tokens=args.oeq_max_new_tokens,
            bertscore_model=_local(args.bertscore_model),
            bertscore_layers=args.bertscore_layers,
            judge=_local(args.judge),
            judge_backend=args.judge_backend,
            judge_base_url=args.judge_base_url,
            judge_prompts=args.judge_prompts or None,
            judge_cache=str(Path(args.judge_cache).expanduser().resolve()) if args.judge_cache else None,
            judge_max_tokens=args.judge_max_tokens,
            judge_concurrency=args.judge_concurrency,
        )
    }
