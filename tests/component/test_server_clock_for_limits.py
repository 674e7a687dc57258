"""Rate limits are judged by the database's clock when the CA runs on the real clock, so
that every process sharing the database reads the same time; a clock a test injects
rules instead (`RateLimiter.database_clock`)."""

from __future__ import annotations

from datetime import UTC, datetime

from acmekit.clock import SystemClock, utc_now
from acmekit.server.config import ServerConfig
from acmekit.server.run import assemble


async def _database_clock(config: ServerConfig, **now: object) -> bool:
    assembly = assemble(config, **now)  # type: ignore[arg-type]
    try:
        return assembly.app.authority.limits.database_clock
    finally:
        await assembly.app.close()
        assembly.store.engine.dispose()


async def test_the_servers_default_clock_defers_to_the_database(ca_config: ServerConfig) -> None:
    assert await _database_clock(ca_config)
    assert await _database_clock(ca_config, now=SystemClock().now)
    assert SystemClock().now is utc_now


async def test_an_injected_clock_rules(ca_config: ServerConfig) -> None:
    fixed = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert not await _database_clock(ca_config, now=lambda: fixed)
