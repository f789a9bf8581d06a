"""Which models an evaluation scores, and loading them once: the base, then each adapter on it.

``models_to_score`` lists the base model (tag ``base``) and every run folder found under the
``adapters`` paths (tag: the folder's name, the mix), each identified by the hash of its adapter
files. A run folder whose files no longer match the hash its manifest recorded (another adapter
copied in, or a training run over it) is refused: its name and manifest would describe other weights.

``ModelCache`` loads the base once, puts each adapter on it (merged after a check when asked) and
gives it back afterwards; it also tells which base model was loaded (``identity``: Hub id, commit,
and for a local folder the hash of its files).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medinjection.core.outputs import BASE_TAG
from medinjection.core.runs import find_runs
from medinjection.evaluation.settings import EvalArguments, EvaluationError

if TYPE_CHECKING:
    from medinjection.evaluation.prepare import PreparedTask
    from medinjection.evaluation.processes import Processes


@dataclass
class ScoredModel:
    """One model of the run: the base (``adapter`` None) or an adapter on it."""

    tag: str
    adapter: Path | None
    adapter_sha256: str | None
    mix: Any = None  # the run manifest's ``mix``, as it is (None for the base)


def models_to_score(args: EvalArguments) -> list[ScoredModel]:
    models = [ScoredModel(BASE_TAG, None, None)] if args.base or not args.adapters else []
    seen: dict[str, Path] = {}
    for path in args.adapters:
        for layout in find_runs(path):
            if layout.name == BASE_TAG:
                raise EvaluationError(
                    f"{layout.root}: a run folder cannot be named {BASE_TAG!r} (the base model's tag)"
                )
            if layout.name in seen and seen[layout.name] != layout.root.resolve():
                raise EvaluationError(
                    f"two run folders named {layout.name!r} ({seen[layout.name]}, {layout.root}): outputs are named by the folder"
                )
            seen[layout.name] = layout.root.resolve()
            files = layout.adapter_sha256()
            recorded = layout.manifest_adapter_sha256()
            if recorded is not None and recorded != files:
                raise EvaluationError(
                    f"{layout.root}: its adapter files hash to {files} but its manifest.json recorded {recorded}: "
                    "the files were replaced after training (another adapter copied in, or a training over the "
                    "folder), so the folder's name and manifest describe other weights; score the run folder that "
                    "trained these files, or train this one again"
                )
            models.append(ScoredModel(layout.name, layout.root, files, layout.manifest_mix()))
    return models


class ModelCache:
    """Loads the base once and each adapter on it (or merged copies), and builds engines."""

    def __init__(self, args: EvalArguments, processes: Processes):
        self.args = args
        self.processes = processes
        self.loaded_base = None
        self.tokenizer = None
        self.base_info: dict[str, Any] = {}
        self._identity: dict[str, str | None] | None = None

    def model_settings(self):
        from medinjection.evaluation.models import ModelSettings

        device = self.args.device
        if device == "auto" and self.processes.device:
            device = self.processes.device
        return ModelSettings(self.args.model_name_or_path, self.args.model_revision, self.args.dtype, device)

    @property
    def identity(self) -> dict[str, str | None]:
        """``{"hub_id", "revision", "source", "files_sha256"}`` of the base, found once
        (``medinjection.models.identity.base_identity``)."""
        if self._identity is None:
            from medinjection.models.identity import base_identity

            self._identity = base_identity(self.args.model_name_or_path, self.args.model_revision)
        return self._identity

    def base(self):
        if self.loaded_base is None:
            from medinjection.evaluation.models import load_base

            self.loaded_base, self.tokenizer, self.base_info = load_base(self.model_settings())
        return self.loaded_base

    def fresh_base(self):
        from medinjection.evaluation.models import load_base

        model, _, _ = load_base(self.model_settings())
        return model

    def tokenizer_only(self):
        if self.tokenizer is None:
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(
                self.args.model_name_or_path, revision=self.args.model_revision
            )
        return self.tokenizer

    def give_back(self, loaded) -> None:
        """The base model back from an adapter that was put on it (``LoadedAdapter.release``)."""
        if loaded is not None:
            self.loaded_base = loaded.release()

    def close(self) -> None:
        """Drop the base model and give its memory back (before vLLM takes the GPU, and at the end)."""
        import gc

        self.loaded_base = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass


def merge_check_items(todo: list[PreparedTask], args: EvalArguments):
    """The first ``merge_check_items`` multiple-choice items, and a few open-ended ones."""
    from medinjection.evaluation.models import MERGE_CHECK_OEQ_ITEMS

    originals = [item for task in todo for item in task.originals]
    mc = [item for item in originals if item.is_mc][: args.merge_check_items]
    oeq = [item for item in originals if item.type == "OEQ"][
        : min(MERGE_CHECK_OEQ_ITEMS, args.merge_check_items)
    ]
    return mc, oeq


def adapter_on_base(model: ScoredModel, todo: list[PreparedTask], cache: ModelCache, merge: bool, log):
    """The adapter loaded on the base (merged after the check when ``merge``), and what to record."""
    from medinjection.evaluation.models import load_adapter, merge_checked

    args = cache.args
    loaded = load_adapter(cache.base(), model.adapter)
    if loaded.info["adapter_sha256"] != model.adapter_sha256:
        raise EvaluationError(f"{model.adapter}: the adapter files changed while the run was starting")
    if merge:
        mc, oeq = merge_check_items(todo, args)
        loaded = merge_checked(
            loaded, cache.fresh_base(), cache.tokenizer, mc, oeq, letters_only=args.letters_only
        )
    base_hint = loaded.info.get("adapter_base_model")
    if base_hint and base_hint not in (args.model_name_or_path, cache.identity["hub_id"]):
        log(f"note: {model.adapter} was trained on {base_hint!r}; scoring it on {args.model_name_or_path!r}")
    recorded = ("merged", "dora_caching", "merge_check", "use_dora", "peft_type")
    return loaded, {k: v for k, v in loaded.info.items() if k in recorded}


def transformers_engine(model: ScoredModel, todo: list[PreparedTask], cache: ModelCache, log):
    """``(engine, backend info, loaded adapter or None)`` for one model (transformers backend)."""
    from medinjection.evaluation.engine import Engine

    args = cache.args
    scored = cache.base()
    info: dict[str, Any] = {"name": args.backend, **cache.base_info, "merged": False, "dora_caching": False}
    loaded = None
    if model.adapter is not None:
        loaded, recorded = adapter_on_base(model, todo, cache, args.merge, log)
        scored = loaded.model
        info.update(recorded)
    engine = Engine(
        scored, cache.tokenizer, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens
    )
    return engine, info, loaded
