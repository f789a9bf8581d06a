"""``medinjection quality server ...``: a local Argilla server on this machine.

    medinjection quality server install          # once: argilla-server 2.8.0 in its own venv
    medinjection quality server start            # prints the ARGILLA_API_URL / ARGILLA_API_KEY to export
    medinjection quality server status
    medinjection quality server stop

For tests and for one reviewer (or a few) on one machine: SQLite, Debian's Redis, and a search engine
that answers from the database (no Elasticsearch). For a team, use a hosted Argilla.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medinjection.core.console import fail as _fail

server_app = typer.Typer(help="A local Argilla server (install, start, status, stop).", no_args_is_help=True)

Home = Annotated[
    Path | None,
    typer.Option(
        help="Where the server venv lives (default: $MEDINJECTION_ARGILLA_HOME or ~/.cache/medinjection/argilla-server)."
    ),
]
InstanceDir = Annotated[
    Path | None,
    typer.Option(
        help="The server's data folder: database, logs, credentials, state (default: HOME/instances/default)."
    ),
]


def _instance_dir(home: Path | None, instance_dir: Path | None) -> Path:
    from medinjection.quality.server.manager import default_home

    return instance_dir or (home or default_home()) / "instances" / "default"


@server_app.command("install")
def install_command(
    home: Home = None,
    python: Annotated[
        str | None,
        typer.Option(
            help="Python to base the venv on (default: the one running medinjection; tested with 3.11)."
        ),
    ] = None,
) -> None:
    """Create the server venv and pip install argilla-server 2.8.0 into it (does nothing when done)."""
    from medinjection.quality.server.manager import (
        SERVER_REQUIREMENTS,
        ServerError,
        default_home,
        install,
        is_installed,
    )

    home = home or default_home()
    if is_installed(home):
        typer.echo(f"already installed: {home / 'venv'} ({', '.join(SERVER_REQUIREMENTS)})")
        return
    typer.echo(f"installing {', '.join(SERVER_REQUIREMENTS)} into {home / 'venv'} ...")
    try:
        install(home, python=python, quiet=False)
    except ServerError as err:
        _fail(str(err))
    typer.echo("installed")


@server_app.command("start")
def start_command(
    home: Home = None,
    instance_dir: InstanceDir = None,
    annotators: Annotated[int, typer.Option(help="Annotator users to create on the first start.")] = 2,
    workspace: Annotated[str, typer.Option(help="Workspace of the owner and the annotators.")] = "review",
    install: Annotated[bool, typer.Option(help="Install the server venv first when it is missing.")] = True,
) -> None:
    """Start Redis, the Argilla server and its worker on free local ports; print the credentials."""
    from medinjection.quality.server.manager import LocalArgilla, ServerError

    server = LocalArgilla(
        _instance_dir(home, instance_dir),
        n_annotators=annotators,
        workspace=workspace,
        home=home,
        install_if_missing=install,
    )
    try:
        server.start()
    except ServerError as err:
        _fail(str(err))
    state = server.state
    typer.echo(
        f"Argilla is running at {state.url} (started in {state.start_seconds:.1f} s; data in {state.instance_dir})"
    )
    typer.echo("# for the medinjection quality commands and the argilla SDK:")
    typer.echo(f"export ARGILLA_API_URL={state.url}")
    typer.echo(f"export ARGILLA_API_KEY={state.owner_api_key}")
    typer.echo(f"# web UI: {state.url}  (workspace {state.workspace!r})")
    typer.echo(f"#   owner        {state.owner_username:<12} password {state.owner_password}")
    for annotator in state.annotators:
        typer.echo(
            f"#   annotator    {annotator.username:<12} password {annotator.password}  api key {annotator.api_key}"
        )
    typer.echo("# stop it with: medinjection quality server stop")


@server_app.command("stop")
def stop_command(home: Home = None, instance_dir: InstanceDir = None) -> None:
    """Stop the server, its worker and Redis (the data stays in the instance folder)."""
    from medinjection.quality.server.manager import LocalArgilla

    folder = _instance_dir(home, instance_dir)
    server = LocalArgilla(folder, home=home)
    if not server.state_file.exists():
        typer.echo(f"no local Argilla server is running for {folder}")
        return
    server.stop()
    typer.echo(f"stopped the local Argilla server of {folder}")


@server_app.command("status")
def status_command(
    home: Home = None,
    instance_dir: InstanceDir = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the state as JSON (with the credentials).")
    ] = False,
) -> None:
    """Say whether the local server runs and answers; print its URL and credentials."""
    from medinjection.quality.server.manager import ServerState, status

    folder = _instance_dir(home, instance_dir)
    info = status(folder)
    if as_json:
        if info["running"]:
            info["state"] = json.loads((folder / "state.json").read_text())
        typer.echo(json.dumps(info, indent=2))
    elif not (folder / "state.json").exists():
        typer.echo(f"not running (no state in {folder}); start it with: medinjection quality server start")
    else:
        state = ServerState.read(folder / "state.json")
        word = "running" if info["running"] else "NOT answering"
        typer.echo(f"{word}: {state.url} processes {info['processes']}")
        typer.echo(f"export ARGILLA_API_URL={state.url}")
        typer.echo(f"export ARGILLA_API_KEY={state.owner_api_key}")
        for annotator in state.annotators:
            typer.echo(f"#   annotator    {annotator.username:<12} password {annotator.password}")
    if not info["running"]:
        raise typer.Exit(1)
