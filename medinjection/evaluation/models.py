"""Loading what is scored: the base model, and each adapter on top of it.

- Base: ``AutoModelForCausalLM`` from a Hub id (pinned ``revision``) or a local folder, in the asked
  dtype, on the asked device; the tokenizer from the same place.
- Adapter (a run folder, ``RunLayout``): PEFT's ``PeftModel.from_pretrained`` on the base, in eval
  mode. DoRA recomputes the weight norm of every adapted layer at each forward unless PEFT's DoRA
  caching is on (``peft.helpers.DoraCaching``, eval mode only): scoring runs inside it. After an
  adapter the base is restored with ``unload()`` (no merge), so the next adapter starts from the
  same base weights.
- ``merge=True``: the adapter is merged into a fresh copy of the base for speed, and only after a
  check on the first items: the merged model must give the same first-token predictions (greedy
  and constrained) as the unmerged one, and the largest logit difference is recorded. What was
  scored is still identified by the adapter files' hash.
- vLLM (``backend="vllm"``) needs merged weights (it cannot load DoRA adapters): see ``vllm_backend``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DTYPES = ("auto", "float32", "bfloat16", "float16")


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


def load_base(settings: ModelSettings):
    """``(model, tokenizer, info)`` for the base model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medinjection.tiny import model_marker

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
    marker = model_marker(settings.model) if Path(settings.model).is_dir() else None
    info = {
        "model": settings.model,
        "revision": settings.revision,
        "hub_id": (marker or {}).get("hub_id")
        or (settings.model if not Path(settings.model).is_dir() else None),
        "dtype": str(dtype).removeprefix("torch."),
        "device": device,
    }
    return model, tokenizer, info


def adapter_info(adapter_dir: Path) -> dict[str, Any]:
    """What the summary says about an adapter: its folder, files' hash, PEFT type, base, DoRA."""
    from medinjection.runs import RunLayout

    layout = RunLayout(adapter_dir)
    layout.require_adapter()
    config = json.loads((layout.root / "adapter_config.json").read_text(encoding="utf-8"))
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
    check_prompts: list[list[int]],
    allowed: list[tuple[int, ...]],
) -> LoadedAdapter:
    """Merge the adapter into ``fresh_base`` (a second copy of the base) if it predicts the same.

    Compares the first-token logits of the unmerged and the merged model on ``check_prompts``: the
    greedy argmax and the argmax over each prompt's ``allowed`` ids must agree on every prompt.
    """
    import torch
    from peft import PeftModel

    from medinjection.evaluation.engine import Engine

    with loaded.caching():
        reference = Engine(loaded.model, tokenizer).first_step_logits(check_prompts)
    merged_peft = PeftModel.from_pretrained(fresh_base, loaded.info["adapter"], is_trainable=False)
    merged = merged_peft.merge_and_unload().eval()
    logits = Engine(merged, tokenizer).first_step_logits(check_prompts)
    mismatches = 0
    for row, ids in enumerate(allowed):
        index = torch.as_tensor(ids)
        same_greedy = int(torch.argmax(reference[row])) == int(torch.argmax(logits[row]))
        same_constrained = int(index[torch.argmax(reference[row][index])]) == int(
            index[torch.argmax(logits[row][index])]
        )
        mismatches += not (same_greedy and same_constrained)
    max_diff = float((reference - logits).abs().max()) if len(check_prompts) else 0.0
    if mismatches:
        raise ModelLoadError(
            f"adapter {loaded.info['adapter']}: the merged model predicts differently on {mismatches} of "
            f"{len(check_prompts)} check items (largest logit difference {max_diff:.3g}); score it unmerged"
        )
    info = dict(loaded.info)
    info.update(
        merged=True,
        dora_caching=False,
        merge_check={"items": len(check_prompts), "max_abs_logit_diff": max_diff},
    )
    base = loaded.model.unload()
    return LoadedAdapter(merged, info, merged=True, _base=base)
