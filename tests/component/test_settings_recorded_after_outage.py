"""A CA started while its database is down records its settings (its CRL shard count,
its purge settings) once the database is back, from its housekeeping, not only at its
next start: until then `certs revoke` and `db purge` would take an older record, and
`certs revoke` remake a shard of another count than the one this CA serves.

The cluster is the test's own (acmekit_testkit.postgres_cluster), stopped and started."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from acmekit.server.config import CrlSettings, ServerConfig
from acmekit.server.crl import recorded_shards
from acmekit.server.run import assemble
from acmekit_testkit.postgres_cluster import postgres_cluster
from acmekit_testkit.waits import until

pytestmark = pytest.mark.postgres


async def test_settings_are_recorded_once_the_database_is_back(
    config_on: Callable[[str], ServerConfig],
) -> None:
    with postgres_cluster() as cluster:
        config = config_on(cluster.url)
        # stale_after 1 s: a housekeeping round every half second.
        config = replace(config, crl=replace(CrlSettings(), shards=8), stale_after=1.0)
        ca = assemble(config)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sent: list[str] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        try:
            await asyncio.to_thread(cluster.stop)
            await inbox.put({"type": "lifespan.startup"})
            lifespan = asyncio.create_task(ca.app({"type": "lifespan"}, inbox.get, send))
            await until(lambda: "lifespan.startup.complete" in sent)
            await asyncio.to_thread(cluster.start)
            await until(lambda: recorded_shards(ca.store) == 8)
            await inbox.put({"type": "lifespan.shutdown"})
            await lifespan
        finally:
            await ca.app.close()
            ca.store.engine.dispose()
