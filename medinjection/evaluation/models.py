"""Loading what is scored: the base model, and each adapter on top of it.

- Base: ``AutoModelForCausalLM`` from a Hub id (pinned ``revision``) or a local folder, in the asked
  dtype, on the asked device; the tokenizer from the same place.
- Adapter (a run folder, ``RunLayout``): PEFT's ``PeftModel.from_pretrained`` on the base, in eval
  mode. DoRA recomputes the weight norm of every adapted layer at each forward unless PEFT's DoRA
  caching is on (``peft.helpers.DoraCaching``, eval mode only): scoring runs inside it. After an
  adapter the base is restored with ``unload()`` (no merge), so the next adapter starts from the
  same base weights.
- ``merge=True``: the adapter is merged into a fresh copy of the base for speed, and only after a
  check on the first items: the merged model must decode exactly what the unmerged one decodes
  (every multiple-choice prediction, every token; a few short open-ended generations), and the
  largest first-step logit difference is recorded. What was scored is still identified by the
  adapter files' hash.
- vLLM (``backend="vllm"``) needs merged weights (it cannot load DoRA adapters): see ``vllm_backend``.
- Which Hub model and commit the base is: ``medinjection.models.identity.base_identity``, as a training
  manifest records its base, so that a summary can be matched to an adapter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medinjection.evaluation.items import EvalItem

DTYPES = ("auto", "float32", "bfloat16", "float16")
MERGE_CHECK_OEQ_ITEMS = 4
"""Open-ended check items of a merge (each a short greedy generation)."""
MERGE_CHECK_OEQ_TOKENS = 32
"""Tokens generated per open-ended check item."""


class ModelLoadError(RuntimeError):
    """A model or adapter that cannot be loaded or scored as asked; the message says why."""


@dataclass(frozen=True)
class ModelSettings:
    model: str
    revision: str | None = None
    dtype: str = "auto"
    """``auto``: bfloat16 on a GPU, float32 on a CPU (as the authors' script)."""
    device: str = "auto"
    """``auto``: the accelerate process's device (cuda:N) when a GPU is there, else cpu."""


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    try:
        from accelerate import PartialState

        return str(PartialState().device)
    except Exception:  # accelerate absent or not initialisable: plain torch
        return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype {dtype!r}; allowed: {list(DTYPES)}")
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def backend_info(settings: ModelSettings, device: str) -> dict[str, Any]:
    """What the summary's ``backend`` says about the base weights (without loading them)."""
    return {
        "model": settings.model,
        "revision": settings.revision,
        "dtype": str(resolve_dtype(settings.dtype, device)).removeprefix("torch."),
        "device": device,
    }


def load_base(settings: ModelSettings):
    """``(model, tokenizer, info)`` for the base model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(settings.model, revision=settings.revision)
        model = AutoModelForCausalLM.from_pretrained(settings.model, revision=settings.revision, dtype=dtype)
    except OSError as err:
        raise ModelLoadError(
            f"model {settings.model!r}: cannot load it ({str(err).splitlines()[0]})"
        ) from err
    if tokenizer.chat_template is None:
        raise ModelLoadError(
            f"model {settings.model!r}: its tokenizer has no chat template (the prompt needs one)"
        )
    model.to(device).eval()
    return model, tokenizer, backend_info(settings, device)


def adapter_info(adapter_dir: Path) -> dict[str, Any]:
    """What the summary says about an adapter: its folder, files' hash, PEFT type, base, DoRA."""
    from medinjection.core.outputs import read_json
    from medinjection.core.runs import RunLayout

    layout = RunLayout(adapter_dir)
    layout.require_adapter()
    config = read_json(layout.root / "adapter_config.json", ModelLoadError)
    return {
        "adapter": str(layout.root.resolve()),
        "adapter_sha256": layout.adapter_sha256(),
        "peft_type": config.get("peft_type"),
        "use_dora": bool(config.get("use_dora")),
        "adapter_base_model": config.get("base_model_name_or_path"),
    }


@dataclass
class LoadedAdapter:
    model: Any
    """What to score: a ``PeftModel`` (unmerged) or a merged plain model."""
    info: dict[str, Any]
    merged: bool = False
    _base: Any = field(default=None, repr=False)

    def caching(self):
        """PEFT's DoRA caching for an unmerged DoRA adapter in eval mode (a no-op otherwise)."""
        if self.merged or not self.info.get("use_dora"):
            return contextlib.nullcontext()
        from peft.helpers import DoraCaching

        return DoraCaching()

    def release(self):
        """The base model back (adapter layers removed, base weights untouched) for the next adapter."""
        if self.merged:
            return self._base
        return self.model.unload()


def load_adapter(base, adapter_dir: Path) -> LoadedAdapter:
    """``base`` wrapped by the adapter's PEFT layers, in eval mode."""
    from peft import PeftModel

    info = adapter_info(adapter_dir)
    try:
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    except Exception as err:  # a wrong base (shape mismatch), a broken file: say which adapter
        raise ModelLoadError(f"adapter {adapter_dir}: PEFT cannot load it on this base ({err})") from err
    model.eval()
    info["dora_caching"] = bool(info["use_dora"])
    return LoadedAdapter(model, info)


def merge_checked(
    loaded: LoadedAdapter,
    fresh_base,
    tokenizer,
    mc_items: Sequence[EvalItem],
    oeq_items: Sequence[EvalItem] = (),
    *,
    letters_only: bool = True,
    oeq_tokens: int = MERGE_CHECK_OEQ_TOKENS,
) -> LoadedAdapter:
    """Merge the adapter into ``fresh_base`` (a second copy of the base) if it decodes the same.

    The unmerged model (DoRA caching on, as it is scored) and the merged one decode the check items:
    every multiple-choice prediction of ``mcq.predict_texts`` (greedy, constrained, letters-only,
    every token up to the stop id or the budget) and ``oeq_tokens`` greedy tokens of each open-ended
    item must be identical, or the merge is refused. The largest first-step logit difference over
    all check prompts is recorded beside (``merge_check``).
    """
    import torch
    from peft import PeftModel

    from medinjection.evaluation.engine import Engine
    from medinjection.evaluation.mcq import predict_texts

    adapter = loaded.info["adapter"]
    if not mc_items and not oeq_items:
        raise ModelLoadError(
            f"adapter {adapter}: the merge check has no item to compare the merged and unmerged models on "
            "(merge_check_items must be at least 1 and the tasks must hold items)"
        )

    def decode(model) -> tuple[list, list, torch.Tensor]:
        engine = Engine(model, tokenizer)
        mc = predict_texts(engine, mc_items, letters_only) if mc_items else []
        oeq_prompts = engine.encode_many([item.messages for item in oeq_items])
        oeq = engine.generate_greedy(oeq_prompts, oeq_tokens) if oeq_items else []
        prompts = engine.encode_many([item.messages for item in mc_items]) + oeq_prompts
        return mc, oeq, engine.first_step_logits(prompts)

    with loaded.caching():
        reference = decode(loaded.model)
    merged_peft = PeftModel.from_pretrained(fresh_base, adapter, is_trainable=False)
    merged = merged_peft.merge_and_unload().eval()
    found = decode(merged)
    differing = [
        item.id
        for item, ours, theirs in zip(
            list(mc_items) + list(oeq_items), reference[0] + reference[1], found[0] + found[1], strict=True
        )
        if ours != theirs
    ]
    max_diff = float((reference[2] - found[2]).abs().max())
    n_items = len(mc_items) + len(oeq_items)
    if differing:
        raise ModelLoadError(
            f"adapter {adapter}: the merged model decodes differently from the unmerged one on "
            f"{len(differing)} of {n_items} check items (e.g. {', '.join(differing[:3])}; largest "
            f"first-step logit difference {max_diff:.3g}); score it unmerged"
        )
    info = dict(loaded.info)
    info.update(
        merged=True,
        dora_caching=False,
        merge_check={
            "items": n_items,
            "mc_items": len(mc_items),
            "oeq_items": len(oeq_items),
            "oeq_tokens": oeq_tokens if oeq_items else 0,
            "compared": "decoded predictions (all tokens)",
            "max_abs_logit_diff": max_diff,
        },
    )
    base = loaded.model.unload()
    return LoadedAdapter(merged, info, merged=True, _base=base)
