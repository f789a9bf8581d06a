"""Entry point run by the server venv's Python (never imported by ``medinjection``).

    python launcher.py setup USERS.json   # migrate the SQLite database, create the users (one process)
    python launcher.py serve --host 127.0.0.1 --port 6900
    python launcher.py worker             # the rq worker for the server's background jobs

Each command first registers the ``medinjection-sql`` search engine (``search_engine.py`` beside this
file) with ``argilla_server.search_engine.SearchEngine``; the settings come from the ``ARGILLA_*``
environment variables that ``manager.py`` sets (``ARGILLA_SEARCH_ENGINE=medinjection-sql``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def register_search_engine() -> None:
    spec = importlib.util.spec_from_file_location(
        "medinjection_argilla_search_engine", HERE / "search_engine.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


def setup(args: argparse.Namespace) -> None:
    """Migrate the database to head, then create the users listed in the JSON file (existing ones are kept)."""
    from argilla_server.cli.database.migrate import migrate_db
    from argilla_server.cli.database.users.create import _create
    from argilla_server.models import UserRole

    migrate_db(revision="head")
    users = json.loads(Path(args.users).read_text())

    async def create_all() -> None:
        for user in users:
            await _create(
                first_name=user["username"],
                username=user["username"],
                role=UserRole(user["role"]),
                password=user["password"],
                api_key=user["api_key"],
                workspace=[user["workspace"]],
            )

    asyncio.run(create_all())


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run("argilla_server:app", host=args.host, port=args.port, access_log=False, log_level="warning")


def worker(args: argparse.Namespace) -> None:
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
    from rq import Worker

    # One worker; it forks a work horse per job, which inherits the registered search engine.
    Worker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION).work(with_scheduler=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="launcher.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True)
    setup_parser = commands.add_parser("setup", help="migrate the database and create users")
    setup_parser.add_argument("users", help="JSON list of {username, role, password, api_key, workspace}")
    setup_parser.set_defaults(run=setup)
    serve_parser = commands.add_parser("serve", help="run the Argilla server (uvicorn argilla_server:app)")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, required=True)
    serve_parser.set_defaults(run=serve)
    commands.add_parser("worker", help="run the rq worker for background jobs").set_defaults(run=worker)
    args = parser.parse_args(argv)
    register_search_engine()
    args.run(args)


if __name__ == "__main__":
    main()
