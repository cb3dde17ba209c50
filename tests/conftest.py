"""Test-wide guards: offline, and no remote model may ever be called."""

from __future__ import annotations

import atexit
import os
import warnings

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["THRIFTY_BLOCK_REMOTE"] = "1"  # the Gateway refuses every non-local, non-scripted model

# Sockets the HTTP client pool of the remote-path tests leaves to the garbage collector are reported at
# interpreter exit, after pytest's summary; they are closed by then and say nothing about thrifty.
# pytest restores the warning filters when the session ends, so the filter is set again at exit too.
warnings.filterwarnings("ignore", category=ResourceWarning)
atexit.register(warnings.filterwarnings, "ignore", category=ResourceWarning)


# ---------------------------------------------------------------------------------------- PostgreSQL
from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from tests.postgres import INSTALL_HINT, REQUIRE_ENV, create_database, postgres_server  # noqa: E402


@pytest.fixture
def fake_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OPENAI_API_KEY for tests of openai/ models on a loopback server (or refused before the call):
    without one the Gateway refuses the model, as a run would fail on its first call."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (see tests/postgres.py). Skipped when PostgreSQL is not
    installed, unless THRIFTY_REQUIRE_POSTGRES=1 (CI), where that fails."""
    with postgres_server() as url:
        if url is None:
            if os.environ.get(REQUIRE_ENV) == "1":
                pytest.fail(f"{REQUIRE_ENV}=1 but no PostgreSQL server binaries were found: {INSTALL_HINT}")
            pytest.skip(f"no PostgreSQL server binaries: {INSTALL_HINT}")
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """The URL of a new, empty database on the session's PostgreSQL server."""
    return create_database(postgres_server_url)
