"""Training throughput: the authors' padded setup vs ours (``--speed auto``), same data, same loss.

    python benchmarks/train.py                       # CPU, the tiny Qwen3, one epoch of the data
    python benchmarks/train.py --steps 4             # fewer optimiser steps
    python benchmarks/train.py --gpu                 # GPU: Qwen3-4B's architecture, random weights, bf16

Data: the real items of ../shared/data (FrenchMedMCQA train + dev, MMLU medical) read through the
project's source adapters and rendered in the chat format (``medinjection.core.chat.to_messages``), i.e. the
length distribution of the real multiple-choice mixes. Tokens and labels are those of
``medinjection train`` (``tokens.prepare``, full loss); the model is the tiny Qwen3 of
``medinjection.models.tiny`` on CPU, and on ``--gpu`` a randomly initialised Qwen3-4B (hidden 2560, 36 layers,
32 query / 8 key-value heads, head dim 128, intermediate 9728, vocabulary 151,936; throughput does not
depend on the weights) with the tiny tokenizer's token ids (shorter French words would give Qwen's
tokenizer somewhat shorter sequences).

Setups (both: DoRA r 16 / alpha 16 / dropout 0.05 on the seven projections, per-device batch 12,
effective batch 192 on one process, length-grouped batches, cosine, seed 42):

* ``authors``: the recipe as written (``--speed faithful``): padded batches (pad to a multiple of 8),
  activation checkpointing, AdamW (torch), flash-attention 2 on GPU when installed (else sdpa);
* ``ours``: the same recipe through ``speed.plan_speed("auto")`` (what ``medinjection train`` does on
  this hardware; the changes are printed);
* ``padding_free`` and ``ours_no_checkpointing`` (only with ``--setups``): ``ours`` with padding-free
  batches forced (what ``auto`` leaves out on CPU) or without activation checkpointing (what it keeps
  on GPU; an out-of-memory error is reported, not raised).

The GPU check prepared for a machine with one GPU (about 3 minutes on an H100-class GPU):

    python benchmarks/train.py --gpu --steps 6 --setups authors,ours,ours_no_checkpointing

The first optimiser step is a warm-up and is not timed (it also holds the longest batch: the
length-grouped sampler puts it first). Tokens counted: "real" = non-pad tokens fed to the model,
"computed" = all positions fed (pads included). "Same loss": the mean training loss of the timed steps
of each setup (dropout draws follow the same seeded order in both setups, so they agree to rounding).
On ``--gpu``: tokens/s per GPU, MFU (model FLOPs per token = 4 x linear parameters for the frozen base,
forward and input-gradient, + causal attention 6 x layers x (q heads x head dim) x mean sequence
length; recomputation and the adapter not counted) against the GPU's dense bf16 peak, peak memory.

Last line: one JSON object with ``speedup_real_tokens``, ``padding_fraction_authors``,
``padding_fraction_ours``, ``tokens_per_s_authors``, ``tokens_per_s_ours`` (and the details).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDINJECTION_SHARED_DATA", REPO.parent / "shared" / "data"))
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "L4": 121.0,
}


def shared_messages() -> list[list[dict[str, str]]]:
    from medinjection.core.chat import to_messages
    from medinjection.core.config import SourceSpec
    from medinjection.dataset_builders.sources import get_adapter

    if not (SHARED / "frenchmedmcqa").is_dir():
        sys.exit(f"the shared data is not at {SHARED} (set MEDINJECTION_SHARED_DATA)")
    messages = []
    for adapter, folder in (("frenchmedmcqa", "frenchmedmcqa"), ("mmlu_medical", "mmlu-medical")):
        source = get_adapter(adapter)(SourceSpec(adapter=adapter, path=str(SHARED / folder)))
        for raw in source.iter_raw():
            messages.append(to_messages(source.map_row(raw)))
    return messages


class Meter:
    """Per optimiser step: wall time, real and computed tokens, loss (a TrainerCallback + a counter)."""

    def __init__(self):
        self.real = self.computed = 0
        self.steps: list[dict] = []
        self.start = None

    def count(self, inputs) -> None:
        ids = inputs["input_ids"]
        self.computed += ids.numel()
        # a tensor sum, read at the end of the step: no device sync per micro-batch
        self.real = self.real + (
            inputs["attention_mask"].sum() if "attention_mask" in inputs else ids.numel()
        )

    def callback(self):
        from transformers import TrainerCallback

        meter = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if meter.start is None:
                    meter.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                meter.sync()
                meter.real = int(meter.real)
                meter.steps.append({"t": time.perf_counter(), "real": meter.real, "computed": meter.computed})

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs and meter.steps:
                    meter.steps[-1]["loss"] = float(logs["loss"])

        return _Callback()

    @staticmethod
    def sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def make_trainer(
    setup: str, train_set, tokenizer, model_factory, out: Path, steps: int, device: str, meter: Meter
):
    from trl import ModelConfig, SFTConfig, SFTTrainer, get_peft_config

    from medinjection.training.authors import authors_value
    from medinjection.training.speed import flash_attention_available, plan_speed

    gpu = device == "cuda"
    attn = "flash_attention_2" if gpu and flash_attention_available("flash_attention_2") else "sdpa"
    trainer_keys = (
        "per_device_train_batch_size",
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "max_length",
        "pad_to_multiple_of",
        "activation_checkpointing",
        "train_sampling_strategy",
        "optim",
        "seed",
    )
    args = SFTConfig(
        output_dir=str(out / setup),
        **{key: authors_value(key) for key in trainer_keys},
        # the authors' effective batch on one process
        gradient_accumulation_steps=authors_value("effective_batch")
        // authors_value("per_device_train_batch_size"),
        max_steps=steps,
        bf16=gpu,
        use_cpu=not gpu,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    adapter_keys = ("use_peft", "use_dora", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
    model_args = ModelConfig(attn_implementation=attn, **{key: authors_value(key) for key in adapter_keys})
    plan = plan_speed("faithful" if setup == "authors" else "auto", args, model_args, device=device)
    if (
        setup == "padding_free" and not args.padding_free
    ):  # ours + padding-free forced (what auto leaves out on CPU)
        plan.changes["padding_free"] = {"from": False, "to": True, "why": "forced by --setups padding_free"}
        args.padding_free, args.pad_to_multiple_of = True, None
    if setup == "ours_no_checkpointing" and args.activation_checkpointing:  # what auto keeps on GPU
        plan.changes["activation_checkpointing"] = {"from": True, "to": False, "why": "forced by --setups"}
        args.activation_checkpointing = args.gradient_checkpointing = False
    if args.padding_free:
        args.max_length = None  # the sequences are cut to 2,048 by tokens.prepare, as in medinjection train

    class CountingTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if model.training:
                meter.count(inputs)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    trainer = CountingTrainer(
        model=model_factory(attn),
        args=args,
        train_dataset=train_set,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),  # as medinjection train builds it
        callbacks=[meter.callback()],
    )
    return trainer, plan, attn


def flops_per_token(config, mean_length: float) -> float:
    h, L = config.hidden_size, config.num_hidden_layers
    q, kv, d = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    linear = (
        L * (h * q * d + 2 * h * kv * d + q * d * h + 3 * h * config.intermediate_size)
        + h * config.vocab_size
    )
    attention = 6 * L * q * d * mean_length  # QK^T and AV, forward + backward, causal half
    return 4 * linear + attention


def run_setup(setup, train_set, tokenizer, model_factory, out, steps, device) -> dict:
    import torch

    meter = Meter()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer, plan, attn = make_trainer(setup, train_set, tokenizer, model_factory, out, steps, device, meter)
    try:
        trainer.train()
    except torch.OutOfMemoryError as err:  # reported, not hidden
        return {
            "setup": setup,
            "error": f"out of memory: {str(err).splitlines()[0]}",
            "speed": plan.as_dict(),
        }
    finally:
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
        del trainer
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    timed = meter.steps[1:]
    first = meter.steps[0]
    seconds = timed[-1]["t"] - first["t"]
    real = timed[-1]["real"] - first["real"]
    computed = timed[-1]["computed"] - first["computed"]
    losses = [s["loss"] for s in timed if "loss" in s]
    result = {
        "setup": setup,
        "attn_implementation": attn,
        "speed": plan.as_dict(),
        "timed_steps": len(timed),
        "seconds": round(seconds, 3),
        "real_tokens": real,
        "computed_tokens": computed,
        "tokens_per_s": real / seconds,
        "padding_fraction": 1 - real / computed,
        "mean_loss": sum(losses) / len(losses),
        "step_losses": losses,
    }
    if peak is not None:
        result["peak_memory_gib"] = peak
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default: one epoch)")
    parser.add_argument("--gpu", action="store_true", help="Qwen3-4B architecture in bf16 on CUDA")
    parser.add_argument("--setups", default="authors,ours")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medinjection.models.tiny import make_tiny_model, qwen3_config
    from medinjection.training.tokens import prepare

    datasets.disable_progress_bars()
    device = "cuda" if args.gpu else "cpu"
    if args.gpu and not torch.cuda.is_available():
        sys.exit("--gpu: torch sees no CUDA device")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medinjection-train-bench-"))
    tiny = make_tiny_model(work / "tiny-qwen3")
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    messages = shared_messages()
    train_set, stats = prepare(datasets.Dataset.from_dict({"messages": messages}), tokenizer, "full", 2048)
    steps = args.steps or len(train_set) // 192
    if steps < 2:
        sys.exit("--steps must be at least 2 (the first step is a warm-up)")
    lengths = [len(ids) for ids in train_set["input_ids"]]
    mean_length = sum(lengths) / len(lengths)

    if args.gpu:
        config = qwen3_config("qwen3-4b", tokenizer)

        def model_factory(attn):
            torch.manual_seed(0)
            with torch.device("cuda"):  # random weights, made on the GPU directly in bf16
                return AutoModelForCausalLM.from_config(
                    config, attn_implementation=attn, dtype=torch.bfloat16
                )
    else:
        config = None

        def model_factory(attn):
            return AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32, attn_implementation=attn)

    results = {}
    for setup in args.setups.split(","):
        results[setup] = run_setup(setup, train_set, tokenizer, model_factory, work, steps, device)
        print(json.dumps({k: v for k, v in results[setup].items() if k != "step_losses"}), flush=True)

    authors, ours = results.get("authors", {}), results.get("ours", {})
    summary = {
        "device": torch.cuda.get_device_name(0) if args.gpu else "cpu",
        "model": "Qwen3-4B architecture, random weights, bf16"
        if args.gpu
        else "tiny Qwen3 (medinjection.models.tiny), fp32",
        "examples": len(train_set),
        "truncated_to_2048": stats.truncated,
        "mean_length": round(mean_length, 1),
        "steps": steps,
        "torch_threads": torch.get_num_threads(),
        "speedup_real_tokens": ours.get("tokens_per_s", 0) / authors["tokens_per_s"]
        if "tokens_per_s" in authors
        else None,
        "padding_fraction_authors": authors.get("padding_fraction"),
        "padding_fraction_ours": ours.get("padding_fraction"),
        "tokens_per_s_authors": authors.get("tokens_per_s"),
        "tokens_per_s_ours": ours.get("tokens_per_s"),
        "loss_authors": authors.get("mean_loss"),
        "loss_ours": ours.get("mean_loss"),
        "max_step_loss_diff": max(
            (
                abs(a - b)
                for a, b in zip(authors.get("step_losses", []), ours.get("step_losses", []), strict=False)
            ),
            default=None,
        ),
        "speed_changes_ours": (ours.get("speed") or {}).get("changes"),
    }
    if args.gpu:
        name = summary["device"]
        peak = args.peak_tflops or next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
        fpt = flops_per_token(config, mean_length)
        for setup, result in results.items():
            if "tokens_per_s" in result:
                summary[f"mfu_{setup}"] = fpt * result["tokens_per_s"] / (peak * 1e12) if peak else None
                summary[f"peak_memory_gib_{setup}"] = result.get("peak_memory_gib")
            else:
                summary[f"error_{setup}"] = result.get("error")
        summary["peak_bf16_tflops"] = peak
        summary["model_flops_per_token"] = fpt
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
