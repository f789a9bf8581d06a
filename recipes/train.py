"""
Train a DoRA adapter on one MedInjection-FR mix (TRL SFT), in the style of TRL's `trl/scripts/sft.py`.

The recipe YAMLs hold only TRL keys, so `trl sft --config FILE` runs them too; this script adds the
provenance manifest, resume from the last complete checkpoint, the loss modes and the same-maths
speed-ups (see medinjection/training/).

# One mix, the authors' setup (2 GPUs; effective batch 12 x 2 x 8 = 192; a recipe that trains what they
# trained keeps 192 on any number of GPUs: the accumulation is set from it unless --effective_batch or
# --gradient_accumulation_steps says otherwise, and a run at another effective batch is warned about and
# recorded in the manifest)
```bash
accelerate launch --config_file trl_configs/accelerate/ddp.yaml \
    -m medinjection.recipes.train --config trl_configs/qwen3-4b-instruct-2507/nat.yaml
```

# Any number of GPUs, the same effective batch
```bash
accelerate launch --config_file trl_configs/accelerate/ddp.yaml --num_processes 4 \
    -m medinjection.recipes.train --config trl_configs/qwen3-4b-instruct-2507/nat.yaml --effective_batch 192
```

# The tiny CPU recipe (a random Qwen3 made on the fly, the demo dataset)
```bash
medinjection demo && python -m medinjection.models.tiny tiny-qwen3
python -m medinjection.recipes.train --config trl_configs/tiny/nat.yaml
```

# Options beyond TRL's
```bash
... --loss assistant           # loss on the answer and its end-of-turn token only (default: full, as the authors)
... --speed faithful           # the recipe exactly as written (default: auto, same maths faster)
... --dataset_revision SHA     # pin a Hub dataset
... --base_model_id ORG/NAME   # the Hub id of a local copy of the base model
... --base_model_revision SHA  # the Hub commit that local copy was taken at
... --resume_from_checkpoint runs/qwen3-4b-instruct-2507/nat/checkpoint-200  # not the last one
... --dump_tokens tokens.jsonl  # every example as it enters the trainer (id, input_ids, labels); no training
```
"""

from __future__ import annotations


def main(script_args, training_args, model_args, argv: list[str] | None = None):
    from medinjection.training.run import train

    layout = train(script_args, training_args, model_args, argv=argv)
    if layout is None:
        print(f"training examples written to {script_args.dump_tokens} (nothing trained)")
    else:
        print(f"adapter and manifest in {layout.root}")
    return layout


if __name__ == "__main__":
    import sys

    from medinjection.core.console import error
    from medinjection.core.runs import RunError
    from medinjection.models.identity import BaseModelError
    from medinjection.training.arguments import parse_args
    from medinjection.training.data import DataError
    from medinjection.training.recipe_files import RecipeError
    from medinjection.training.resume import ResumeError
    from medinjection.training.run import TrainError

    try:
        main(*parse_args(sys.argv[1:]), argv=["medinjection.recipes.train", *sys.argv[1:]])
    except (DataError, BaseModelError, RecipeError, ResumeError, RunError, TrainError) as err:
        error(str(err))  # one line, as `medinjection train` says it
        sys.exit(1)
