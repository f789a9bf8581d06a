"""
Score the base model and DoRA adapters on MedInjection-FR tasks with the paper's protocol, batched.

The same recipe as `medinjection evaluate`: a flat YAML of `medinjection.evaluation.settings.EvalArguments`
read by TRL's parser (`--config FILE`), any key overridden on the command line, unknown keys refused.
This script is what `accelerate launch` runs for data-parallel scoring (each process scores a shard of
the items on its device; the main process gathers, writes and compares).

# The paper's evaluation: the base and the seven adapters on the MedInjection-FR test splits
```bash
medinjection evaluate --config recipes/evaluation/qwen3-4b-instruct-2507.yaml
python -m medinjection.recipes.evaluate --config recipes/evaluation/qwen3-4b-instruct-2507.yaml
```

# The same over the 8 GPUs of one machine
```bash
accelerate launch --num_processes 8 -m medinjection.recipes.evaluate \
    --config recipes/evaluation/qwen3-4b-instruct-2507.yaml
```

# The demo's evaluation (after `medinjection demo`), and a smoke run that touches no run folder
```bash
medinjection evaluate --config recipes/evaluation/tiny.yaml
medinjection evaluate --config tiny --adapters runs/nat --limit 3 --output_dir scratch
```

# Other keys
```bash
... --tasks frenchmedmcqa mmlu-medical --data_dir data      # bundled tasks (`medinjection tasks`), local copies
... --dataset_name medinjection-fr --dataset_config nat_trad # one config's test split of a built folder
... --permutations 5 --merge true --backend vllm             # position bias; faster scoring, checked
```
"""

from __future__ import annotations


def main(args) -> None:
    from medinjection.evaluation.cli import run

    run(args)


if __name__ == "__main__":
    import sys

    import typer

    from medinjection.core.console import error
    from medinjection.evaluation.settings import parse_args

    try:
        arguments = parse_args(sys.argv[1:], prog="medinjection.recipes.evaluate")
    except ValueError as err:
        error(str(err))
        sys.exit(2)
    try:
        main(arguments)
    except typer.Exit as done:  # an expected error, already printed as one line
        sys.exit(done.exit_code)
