"""The `postgres` tier: skipped where no server listens, an error where one is required."""

from __future__ import annotations

import socket

import pytest

from acmekit_testkit import tiers
from acmekit_testkit.databases import postgres_reachable


def test_probe_tells_a_listening_port_from_a_closed_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert postgres_reachable("127.0.0.1", port)
    assert not postgres_reachable("127.0.0.1", port)


def test_unreachable_server_skips_unless_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiers, "_postgres_up", lambda: False)
    monkeypatch.delenv(tiers.REQUIRE_POSTGRES, raising=False)
    skipped = r"PostgreSQL not reachable at 127\.0\.0\.1:5432"
    with pytest.raises(pytest.skip.Exception, match=skipped):
        tiers.require_postgres_or_skip()
    monkeypatch.setenv(tiers.REQUIRE_POSTGRES, "1")
    with pytest.raises(pytest.fail.Exception, match="ACMEKIT_REQUIRE_POSTGRES=1 requires it"):
        tiers.require_postgres_or_skip()


def test_reachable_server_runs_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiers, "_postgres_up", lambda: True)
    monkeypatch.setenv(tiers.REQUIRE_POSTGRES, "1")
    tiers.require_postgres_or_skip()
