"""Items per second of multiple-choice scoring: ours (batched) vs the authors' per-item protocol.

    python benchmarks/evaluate.py                          # 600 real FrenchMedMCQA items, tiny Qwen3, CPU
    python benchmarks/evaluate.py --items 300 --batch-size 32
    python benchmarks/evaluate.py --arch qwen3-0.6b --device cuda --dtype bfloat16   # a GPU machine

The items are real FrenchMedMCQA questions from ``../shared/data/frenchmedmcqa`` (dev, then train,
read through the source adapter and prompted with chat format v1), both single- (MCQU) and
multi-answer (MCQ). The same model scores them twice:

- *original*: the authors' loop (``medinjection.evaluation.authors_loop``): one item at a time, two
  ``generate`` calls (greedy, then constrained with a -inf-adding LogitsProcessor);
- *ours*: ``medinjection.evaluation.mcq.predict_texts`` (length-sorted right-padded batches, one
  forward for MCQU, the prompt's cache shared by both predictions, batched decoding for MCQ), with
  the same two predictions (the letters-only variant is timed apart, ``items_per_s_ours_with_letters``).

Both include rendering and tokenising the prompts. ``identical_predictions``: every item's decoded
greedy and constrained texts are the same strings. ``agreement``: the fraction of the predictions
(two per item timed by both: greedy and constrained) whose decoded text is the same in both, and
``agreement_by_prediction`` for each; in float32 on a CPU it has been 1.0, while in bfloat16 on a GPU
padding and batch shapes change the order of the sums, so a near tie between two tokens can flip. ``floor_fraction`` (ours and the floor timed
``--repeats`` times, alternating, the least of each kept): the time of one batched
forward pass over all the prompts (``Engine.first_step_logits``: each prompt encoded once, its
next-token logits at its last position; the least any exact method needs on that hardware, since
every prediction starts from those logits) divided by the time of ours; 1.0 would mean decoding
costs nothing beyond reading the prompts once. ``floor_fraction_cpu``: the same ratio of the
process's CPU time, which other jobs on a shared machine disturb far less than the wall time. The model: the tiny random Qwen3 of
``medinjection.models.tiny`` (``--arch tiny``), or random weights in a real Qwen3 architecture
(``--arch qwen3-0.6b``: Qwen3-0.6B's dimensions and 151,936-row vocabulary, the tiny tokenizer) for
a device run. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def load_items(n: int):
    from medinjection.core.chat import to_messages
    from medinjection.core.config import SourceSpec
    from medinjection.core.schema import validate_record
    from medinjection.dataset_builders.sources import get_adapter
    from medinjection.dataset_builders.steps.normalize import normalize_record
    from medinjection.evaluation.items import item_from_record

    items = []
    for name in ("dev.json", "train.json"):
        spec = SourceSpec(adapter="frenchmedmcqa", path=str(SHARED / "frenchmedmcqa" / name))
        adapter = get_adapter("frenchmedmcqa")(spec)
        for raw in adapter.iter_raw():
            record = normalize_record(adapter.map_row(raw))
            validate_record(record)
            items.append(item_from_record(record, to_messages(record)))
            if len(items) == n:
                return items
    return items


def make_model(arch: str, folder: Path, device: str, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, Qwen3ForCausalLM

    from medinjection.models.tiny import make_tiny_model

    tiny = make_tiny_model(folder / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    torch_dtype = getattr(torch, dtype)
    if arch == "tiny":
        model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch_dtype)
    elif arch == "qwen3-0.6b":
        from medinjection.models.tiny import qwen3_config

        config = qwen3_config(arch, tokenizer)
        torch.manual_seed(0)
        with torch.device(device):
            model = Qwen3ForCausalLM(config).to(torch_dtype)
        model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id, do_sample=False)
    else:
        raise SystemExit(f"--arch {arch!r}: use tiny or qwen3-0.6b")
    return model.to(device).eval(), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-batch-tokens", type=int, default=32768)
    parser.add_argument("--arch", default="tiny", help="tiny | qwen3-0.6b")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--original-items", type=int, default=None, help="time the original on the first N only"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timings of ours and of the floor (the least is kept)"
    )
    args = parser.parse_args()
    if not (SHARED / "frenchmedmcqa").is_dir():
        raise SystemExit(f"needs the shared FrenchMedMCQA files in {SHARED / 'frenchmedmcqa'}")

    import torch

    from medinjection.evaluation.authors_loop import reference_predictions
    from medinjection.evaluation.engine import Engine
    from medinjection.evaluation.mcq import predict_texts

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="medinjection-evalbench-"))
    model, tokenizer = make_model(args.arch, workdir, args.device, args.dtype)
    items = load_items(args.items)
    engine = Engine(model, tokenizer, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    # warm-up (first-call costs, kernel selection) on a few items, for both paths
    reference_predictions(model, tokenizer, items[:4])
    predict_texts(engine, items[:8], letters_only=False)
    sync()

    cpu_seconds: dict[str, list[float]] = {"ours": [], "floor": []}

    def timed_call(function, cpu: str | None = None):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        sync()
        if cpu:
            cpu_seconds[cpu].append(time.process_time() - start_cpu)
        return time.perf_counter() - start, result

    # ours and the floor alternate, each timed --repeats times; the least time of each is kept (on a
    # shared machine the other processes only ever add time)
    prompts = engine.encode_many([item.messages for item in items])
    ours_times, floor_times = [], []
    for _ in range(args.repeats):
        seconds, ours = timed_call(lambda: predict_texts(engine, items, letters_only=False), "ours")
        ours_times.append(seconds)
        floor_times.append(timed_call(lambda: engine.first_step_logits(prompts), "floor")[0])
    ours_s, floor_s = min(ours_times), min(floor_times)
    ours_letters_s, ours_letters = timed_call(lambda: predict_texts(engine, items, letters_only=True))

    timed = items[: args.original_items] if args.original_items else items
    start = time.perf_counter()
    original = reference_predictions(model, tokenizer, timed)
    sync()
    original_s = time.perf_counter() - start

    keys = ("greedy_text", "constrained_text")
    compared = list(zip(original, ours, strict=False))  # the items both timed
    differing = [i for i, (a, b) in enumerate(compared) if any(a[k] != b[k] for k in keys)]
    same = {k: sum(a[k] == b[k] for a, b in compared) for k in keys}
    same_with_letters = all(all(a[k] == b[k] for k in keys) for a, b in zip(ours, ours_letters, strict=True))
    n_mcq = sum(item.type == "MCQ" for item in items)
    result = {
        "speedup": round((len(items) / ours_s) / (len(timed) / original_s), 2),
        "identical_predictions": not differing,
        "agreement": round(sum(same.values()) / (len(keys) * len(compared)), 6),
        "agreement_by_prediction": {k.removesuffix("_text"): round(same[k] / len(compared), 6) for k in keys},
        "n_predictions_compared": len(keys) * len(compared),
        "floor_fraction": round(floor_s / ours_s, 3),
        "floor_fraction_cpu": round(min(cpu_seconds["floor"]) / min(cpu_seconds["ours"]), 3),
        "seconds_floor": round(floor_s, 3),
        "seconds_ours": round(ours_s, 3),
        "repeats": args.repeats,
        "items_per_s_ours": round(len(items) / ours_s, 2),
        "items_per_s_original": round(len(timed) / original_s, 2),
        "items_per_s_ours_with_letters": round(len(items) / ours_letters_s, 2),
        "letters_variant_leaves_predictions_unchanged": same_with_letters,
        "n_items": len(items),
        "n_items_original": len(timed),
        "n_mcq": n_mcq,
        "n_mcqu": len(items) - n_mcq,
        "n_differing": len(differing),
        "mean_prompt_tokens": round(sum(len(engine.encode(i.messages)) for i in items) / len(items), 1),
        "arch": args.arch,
        "device": args.device if not args.device.startswith("cuda") else torch.cuda.get_device_name(),
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    if differing:
        first = differing[0]
        print(
            f"first differing item {items[first].id}: original {original[first]} ours {ours[first]}",
            file=sys.stderr,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
