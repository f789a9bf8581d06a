"""Score the base model and DoRA adapters with the paper's multiple-choice protocol, batched.

The same command as ``medinjection evaluate``; this script is what ``accelerate launch`` runs for
data-parallel scoring (each process scores a shard of the items on its GPU; the main process
gathers, writes and compares).

Usage:

    # the base model on FrenchMedMCQA and MMLU medical (local copies under ./data)
    python recipes/evaluate.py --model Qwen/Qwen3-4B-Instruct-2507 --revision <sha> \
        --benchmark frenchmedmcqa --benchmark mmlu-medical --data-dir data --output eval

    # every adapter of runs/ (and the base, reused if already scored), with 5 option permutations
    accelerate launch --num_processes 8 recipes/evaluate.py --model Qwen/Qwen3-4B-Instruct-2507 \
        --revision <sha> --adapter runs --benchmark frenchmedmcqa --permutations 5 --output eval

    # a built dataset's native test split
    python recipes/evaluate.py --model ./tiny-qwen3 --dataset medinjection-fr --config native --split test
"""

from __future__ import annotations

import typer

from medinjection.evaluation.cli import evaluate_command


def main() -> None:
    typer.run(evaluate_command)


if __name__ == "__main__":
    main()
