"""dns-persist-01 just in time (draft-ietf-acme-dns-persist-02 §4.4) against the same CA
with it off: wall time from new-order to a `ready` order, and the ACME requests that
takes, for names whose standing record is already published.

Our CA in this process (ASGI, SQLite; CAA on), `acmekit dns` in this process on loopback
as its resolver, one account that has met dns-persist-01 once. With JIT off the client
answers the challenge and polls the authorization (the client library's own polling);
with it on, new-order answers `ready`. Both are measured in the same run, alternating,
and reported as medians and as a ratio (off / on).

    .venv/bin/python bench/persist_jit.py --orders 30
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from acmekit.client import Client
from acmekit.client.transport import AsgiTransport, HttpResponse
from acmekit.protocol.messages import OrderStatus
from acmekit.server.config import ServerConfig
from acmekit.server.run import assemble
from acmekit_testkit.acme_raw import new_key
from acmekit_testkit.acmekit_server import TEST_VALIDATION
from acmekit_testkit.dnsserver import DnsServerHandle, running_dns_server

DIRECTORY = "https://ca.test/directory"


class Counting(AsgiTransport):
    """The in-process transport, counting requests."""

    count = 0

    async def request(
        self, method: str, url: str, *, headers: Mapping[str, str], body: bytes | None
    ) -> HttpResponse:
        Counting.count += 1
        return await super().request(method, url, headers=headers, body=body)


async def _one(client: Client, dns: DnsServerHandle, name: str) -> tuple[float, int]:
    record = await client.persist_record(name)
    await dns.set_txt(record.name, record.value)
    Counting.count = 0
    start = time.perf_counter()
    order = await client.new_order([name])
    if order.status == OrderStatus.PENDING:
        # The record stands: nothing to publish, only the challenge to answer.
        for authz in await client.authorizations(order):
            challenge = next(c for c in authz.challenges if c.type == "dns-persist-01")
            await client.answer_challenge(challenge)
            await client.poll_authorization(authz)
        order = await client.poll_order(order)
    elapsed = time.perf_counter() - start
    assert order.status == OrderStatus.READY, order
    return elapsed, Counting.count


async def _ca_client(base: ServerConfig, jit: float) -> tuple[object, Client]:
    assembly = assemble(replace(base, persist_jit_timeout=jit))
    client = Client(DIRECTORY, new_key(), transport=Counting(assembly.app))
    await client.__aenter__()
    await client.register()
    return assembly, client


async def main(orders: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_dns_server(default_ipv4=None) as dns:
            base = ServerConfig(
                state_dir=Path(tmp),
                db=f"sqlite:///{tmp}/ca.db",
                dns_resolver=f"127.0.0.1:{dns.dns_port}",
                validation=TEST_VALIDATION,
                dns_persist_01=True,
                caa_identities=("ca.bench.test",),
            )
            runs = {"on": await _ca_client(base, 2.0), "off": await _ca_client(base, 0.0)}
            for mode, (_, client) in runs.items():  # each account meets the challenge once
                await _one(client, dns, f"first-{mode}.jit.bench.test")
            times: dict[str, list[float]] = {"on": [], "off": []}
            requests: dict[str, list[int]] = {"on": [], "off": []}
            for i in range(orders):
                for mode, (_, client) in runs.items():
                    t, n = await _one(client, dns, f"n{i}-{mode}.jit.bench.test")
                    times[mode].append(t)
                    requests[mode].append(n)
            for assembly, client in runs.values():
                await client.__aexit__(None, None, None)
                await assembly.app.close()  # type: ignore[attr-defined]
                assembly.store.engine.dispose()  # type: ignore[attr-defined]
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    req_on, req_off = statistics.median(requests["on"]), statistics.median(requests["off"])
    print(f"orders per mode: {orders}")
    print(f"JIT on : median {on * 1000:.1f} ms to ready, {req_on} requests")
    print(f"JIT off: median {off * 1000:.1f} ms to ready, {req_off} requests")
    print(f"off / on: {off / on:.2f} (time), worst JIT on {max(times['on']) * 1000:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=30)
    asyncio.run(main(parser.parse_args().orders))
