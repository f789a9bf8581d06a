"""A local Argilla server for reviews on one machine (``LocalArgilla``), and ``connect()`` to any Argilla.

``connect()`` (from ``medinjection.quality.connection``) is what the review commands call: it reads
``ARGILLA_API_URL`` and ``ARGILLA_API_KEY`` and returns an ``argilla.Argilla`` client or raises
``ArgillaConnectionError`` naming the variable at fault. ``LocalArgilla`` (``manager.py``) installs,
starts and stops the local server; ``launcher.py`` and ``search_engine.py`` run inside its own venv.
"""

from __future__ import annotations

from medinjection.quality.connection import ArgillaConnectionError, connect
from medinjection.quality.server.manager import (
    Annotator,
    LocalArgilla,
    ServerError,
    default_home,
    install,
    is_installed,
)

__all__ = [
    "Annotator",
    "ArgillaConnectionError",
    "LocalArgilla",
    "ServerError",
    "connect",
    "default_home",
    "install",
    "is_installed",
]
