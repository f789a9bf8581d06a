"""Connect to an Argilla server, local or hosted: ``connect()`` returns an ``argilla.Argilla`` client.

It reads ``ARGILLA_API_URL`` and ``ARGILLA_API_KEY`` (the argilla SDK's own variables), checks them
against the server (the SDK calls ``GET /api/v1/me``), and raises ``ArgillaConnectionError`` naming
the variable at fault and how to start the local server (``medinjection quality server start``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argilla as rg

HOW_TO_START = (
    "start a local server with `medinjection quality server start` and export the ARGILLA_API_URL and "
    "ARGILLA_API_KEY it prints, or set them to your hosted Argilla (e.g. https://USER-SPACE.hf.space and "
    "the owner's API key from its settings page)"
)


class ArgillaConnectionError(RuntimeError):
    """No usable Argilla server: the message names the variable at fault and what to do."""


def connect(
    api_url: str | None = None, api_key: str | None = None, timeout: int = 60, retries: int | None = None
) -> rg.Argilla:
    """An ``argilla.Argilla`` client for ``api_url``/``api_key`` (default: ``ARGILLA_API_URL``/``ARGILLA_API_KEY``).

    ``retries`` is the SDK's connection retries (default: the SDK's, which rides out a waking Hub Space).

    Raises:
        ArgillaConnectionError: a variable is missing, the server cannot be reached or is not an
            Argilla server, or the API key is refused.
    """
    import argilla as rg
    import httpx
    from argilla._exceptions import ArgillaCredentialsError

    api_url = api_url or os.environ.get("ARGILLA_API_URL")
    api_key = api_key or os.environ.get("ARGILLA_API_KEY")
    if not api_url:
        raise ArgillaConnectionError(f"ARGILLA_API_URL is not set: {HOW_TO_START}")
    if not api_key:
        raise ArgillaConnectionError(
            f"ARGILLA_API_KEY is not set (the Argilla server is {api_url}): {HOW_TO_START}"
        )
    if not api_url.startswith(("http://", "https://")):
        raise ArgillaConnectionError(f"ARGILLA_API_URL={api_url!r} is not an http(s) URL: {HOW_TO_START}")
    try:
        extra = {} if retries is None else {"retries": retries}
        client = rg.Argilla(api_url=api_url, api_key=api_key, timeout=timeout, **extra)
    except ArgillaCredentialsError as err:
        raise ArgillaConnectionError(
            f"ARGILLA_API_KEY is refused by the Argilla server at {api_url} (ARGILLA_API_URL): use an owner or "
            f"admin API key of that server; for the local server, `medinjection quality server status` prints it"
        ) from err
    except httpx.HTTPError as err:
        raise ArgillaConnectionError(
            f"cannot reach an Argilla server at ARGILLA_API_URL={api_url} ({err}): is it running? {HOW_TO_START}"
        ) from err
    except ValueError as err:  # a web server that answers /api/v1/me with something else than JSON
        raise ArgillaConnectionError(
            f"ARGILLA_API_URL={api_url} does not answer like an Argilla server (give the server root, without /api)"
        ) from err
    return client
