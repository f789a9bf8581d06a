"""Shared test helpers.

Tests that need the real data in ``../shared/data`` or a system service skip with a clear reason
where it is absent (a user's clone). CI sets ``MEDINJECTION_REQUIRE_ALL=1``: there a missing
resource fails the test instead, so nothing skips silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDINJECTION_SHARED_DATA", REPO.parent / "shared" / "data"))
REQUIRE_ALL = os.environ.get("MEDINJECTION_REQUIRE_ALL") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip (fail in CI) unless ``condition``; ``reason`` says what is missing and how to get it."""
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required resource missing in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    require(
        (SHARED_DATA / "frenchmedmcqa").is_dir(),
        f"real shared data not found at {SHARED_DATA} (clone beside ../shared/data or set MEDINJECTION_SHARED_DATA)",
    )
    return SHARED_DATA
