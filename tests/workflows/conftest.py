"""Fixtures shared by the workflow tests."""

from __future__ import annotations

import pytest

from tests.postgres import Backend


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sqlite":
        return Backend(None)
    return Backend(request.getfixturevalue("postgres_server_url"))
