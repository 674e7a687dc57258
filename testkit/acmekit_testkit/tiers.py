"""The test tiers (README, Tests): `interop` tests run third-party peers, `postgres` tests
need the PostgreSQL server. A `postgres` test is skipped when nothing listens where the
server should be, unless ACMEKIT_REQUIRE_POSTGRES=1 (as CI sets it): then it fails."""

from __future__ import annotations

import os
from functools import cache

import pytest

from acmekit_testkit.databases import BACKENDS, POSTGRES_HOST, POSTGRES_PORT, postgres_reachable

REQUIRE_POSTGRES = "ACMEKIT_REQUIRE_POSTGRES"

# Fixtures parametrized over the database backends take these: the PostgreSQL case
# carries the `postgres` marker, so it is selected, skipped or required like the rest.
BACKEND_PARAMS = [
    pytest.param(backend, marks=pytest.mark.postgres) if backend == "postgresql" else backend
    for backend in BACKENDS
]


@cache
def _postgres_up() -> bool:
    return postgres_reachable()


def require_postgres_or_skip() -> None:
    """Skip the running test when the PostgreSQL server is not reachable, or fail it when
    the environment requires the server."""
    if _postgres_up():
        return
    reason = f"PostgreSQL not reachable at {POSTGRES_HOST}:{POSTGRES_PORT}"
    if os.environ.get(REQUIRE_POSTGRES) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_POSTGRES}=1 requires it", pytrace=False)
    pytest.skip(reason)
