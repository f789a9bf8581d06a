"""``medinjection train``: the recipe entry point on the project's command line.

Every option is TRL's (``--config FILE`` plus any ``SFTConfig`` / ``ModelConfig`` / ``ScriptArguments``
field) or one of ``medinjection.training.arguments.TrainArguments``; ``medinjection train --help``
lists them all. The arguments are handed untouched to ``TrlParser``, so the command and
``python -m medinjection.recipes.train`` accept exactly the same things.
"""

from __future__ import annotations

import typer

from medinjection.core.console import fail

TRAIN_COMMAND = {
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    "add_help_option": False,
}


def train_command(ctx: typer.Context) -> None:
    """Train a DoRA adapter on one mix: medinjection train --config trl_configs/<model>/<mix>.yaml [TRL options]."""
    args = list(ctx.args)
    from medinjection.training.arguments import make_parser, parse_args

    if not args or "--help" in args or "-h" in args:
        typer.echo("Usage: medinjection train --config trl_configs/<model>/<mix>.yaml [options]\n")
        typer.echo(train_command.__doc__.strip() + "\n")
        typer.echo(make_parser(prog="medinjection train").format_help())
        raise typer.Exit(0 if args else 2)

    try:
        script_args, training_args, model_args = parse_args(args, prog="medinjection train")
    except ValueError as err:
        fail(str(err), 2)
    from medinjection.core.runs import RunError
    from medinjection.models.identity import BaseModelError
    from medinjection.training.data import DataError
    from medinjection.training.recipe_files import RecipeError
    from medinjection.training.resume import ResumeError
    from medinjection.training.run import TrainError, train

    try:
        layout = train(script_args, training_args, model_args, argv=["medinjection", "train", *args])
    except (DataError, BaseModelError, RecipeError, ResumeError, RunError, TrainError) as err:
        fail(str(err))
    if layout is None:  # --dump_tokens
        with open(script_args.dump_tokens, encoding="utf-8") as dumped:
            count = sum(1 for _ in dumped)
        typer.echo(f"wrote {count} training examples to {script_args.dump_tokens} (nothing trained)")
        return
    manifest = layout.manifest()
    val = (manifest["metrics"].get("validation") or {}).get("eval_loss")
    typer.echo(
        f"trained {layout.root}: {manifest['mix']['name']} ({manifest['mix']['size']} examples), "
        f"last train loss {manifest['metrics']['train']['last_logged_loss']}"
        + (f", validation loss {val:.4f}" if isinstance(val, float) else "")
    )
