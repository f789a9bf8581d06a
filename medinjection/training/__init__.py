"""Training: the TRL SFT recipe logic behind ``recipes/train.py`` and ``medinjection train``.

``train(script_args, training_args, model_args) -> RunLayout`` runs one mix in-process (None with
``--dump_tokens``: the examples are written, nothing is trained);
``parse_args(argv)`` reads a recipe YAML plus overrides into those three; ``recipe_path(family, mix)``
names the bundled recipe files (``trl_configs/<family>/<mix>.yaml``). Importing this package is
cheap: TRL and torch load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["parse_args", "recipe_path", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from medinjection.training.run import train

        return train
    if name == "parse_args":
        from medinjection.training.arguments import parse_args

        return parse_args
    if name == "recipe_path":
        from medinjection.training.recipe_files import recipe_path

        return recipe_path
    raise AttributeError(f"module 'medinjection.training' has no attribute {name!r}")
