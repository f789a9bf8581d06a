"""``--speed auto``: what computes the same loss in less time on this hardware.

Every change keeps the maths of the recipe: the same examples in each optimiser step (the plan never
touches the per-device batch or the accumulation, whose product is what the length-grouped sampler sorts
together), the same tokens and labels, the same per-token loss normalised by the number of label tokens
of the whole step, the same dropout probability. What changes is only how it is computed, so a change is
either of the same maths (no recomputation) or of different numerics (other kernels, other tensor shapes);
the manifest lists each against the authors' run with its kind (``authors.py``, ``run.label_run``):

* **padding-free batches** (CUDA, flash-attention 2/3 installed and requested): the micro-batch is one
  flattened sequence with restarting ``position_ids``; flash-attention's varlen kernel keeps the
  sequences apart, and no pad token goes through the model. Not on CPU: there transformers keeps
  sequences apart with a block-diagonal mask over the whole flattened batch (``masking_utils``
  builds it from the ``position_ids`` when no KV cache is used, as in training; the per-sequence
  losses are then the padded ones, a test checks it), whose attention cost is quadratic in the
  batch's total length. Measured here it was
  slower than padding (benchmarks/train.py, docs/benchmarks.md).
* **Liger kernels** (CUDA, ``liger-kernel`` installed): fused RMSNorm, SwiGLU and RoPE.
* **fused AdamW** (CUDA): ``adamw_torch_fused`` for ``adamw_torch``, the same update in one kernel.
* **no activation recomputation on CPU**: gradient checkpointing trades compute for accelerator
  memory; on CPU the recomputation only costs time (the same dropout masks are replayed either way,
  so the gradients are those of the run without it). Kept on GPU, where a 4B model at 2,048 tokens
  needs it.
* **no pad-to-multiple-of-8 on CPU**: the multiple of 8 aligns tensor-core tiles; on CPU the extra pad
  tokens are computed for nothing.

``faithful`` changes nothing. ``packing`` is never switched on here: it changes the number of
sequences per optimiser step (pass ``--packing true`` to ask for it; the manifest then lists it among
the deviations from the paper).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

FLASH_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3")


@dataclass
class SpeedPlan:
    mode: str
    device: str
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "device": self.device, "changes": self.changes, "not_applied": self.kept}


def flash_attention_available(implementation: str | None) -> bool:
    from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

    if implementation == "flash_attention_2":
        return is_flash_attn_2_available()
    if implementation == "flash_attention_3":
        return is_flash_attn_3_available()
    return False


def plan_speed(mode: str, training_args, model_args, device: str | None = None) -> SpeedPlan:
    """Decide (and apply to ``training_args``) the same-maths speed-ups for ``device`` (default: detected)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() and not training_args.use_cpu else "cpu")
    plan = SpeedPlan(mode=mode, device=device)
    if mode == "faithful":
        return plan

    def change(name: str, new: Any, why: str) -> None:
        old = getattr(training_args, name)
        if old != new:
            plan.changes[name] = {"from": old, "to": new, "why": why}
            setattr(training_args, name, new)

    packing = bool(training_args.packing)
    if device == "cuda":
        attn = model_args.attn_implementation
        if packing:
            plan.kept["padding_free"] = "packing is on (TRL's packed batches are already padding-free)"
        elif attn in FLASH_IMPLEMENTATIONS and flash_attention_available(attn):
            change("padding_free", True, f"{attn} keeps the flattened sequences apart (varlen kernel)")
            if training_args.pad_to_multiple_of not in (None, 1):
                change("pad_to_multiple_of", None, "a padding-free batch has no padding to align")
        else:
            plan.kept["padding_free"] = (
                f"attn_implementation {attn!r} with flash-attention not installed"
                if attn in FLASH_IMPLEMENTATIONS
                else f"attn_implementation {attn!r} is not flash-attention"
            )
        if importlib.util.find_spec("liger_kernel") is not None:
            change(
                "use_liger_kernel", True, "Liger's fused RMSNorm/SwiGLU/RoPE kernels (liger-kernel installed)"
            )
        else:
            plan.kept["use_liger_kernel"] = "liger-kernel is not installed (pip install liger-kernel)"
        if training_args.optim == "adamw_torch":  # OptimizerNames is a str enum
            from transformers.training_args import OptimizerNames

            change("optim", OptimizerNames.ADAMW_TORCH_FUSED, "the same AdamW update in one fused kernel")
    else:
        plan.kept["padding_free"] = (
            "on CPU only a block-diagonal mask keeps flattened sequences apart, which costs more than padding"
        )
        if training_args.activation_checkpointing:
            change("activation_checkpointing", False, "on CPU recomputing activations only costs time")
            training_args.gradient_checkpointing = False  # TRL reads the old name
        if training_args.pad_to_multiple_of not in (None, 1):
            change("pad_to_multiple_of", None, "multiples of 8 align GPU tensor cores; on CPU they are waste")
    return plan
