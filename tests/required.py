"""The one rule for tests that need something outside Python (Node, Chromium, PostgreSQL, Redis):
skipped with the reason where it is missing, a failure instead under ``MASKMILL_REQUIRE_SERVICES=1``
(as in CI), so a layer of tests cannot vanish silently there."""

from __future__ import annotations

import os

import pytest


def required() -> bool:
    return os.environ.get("MASKMILL_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str, must_run: bool | None = None) -> None:
    """Skip the test with ``reason``, or fail it when the environment says these tests must run."""
    if required() if must_run is None else must_run:
        pytest.fail(f"{reason} (MASKMILL_REQUIRE_SERVICES=1)")
    pytest.skip(reason)
