"""The CA's latency for an ordinary client, idle and under hostile load.

What it measures: p50 and p99 of one ordinary request (a fresh nonce from newNonce, then
a signed POST-as-GET of the client's account: JWS check, nonce, a database read) while
the CA is idle, and again while it holds
- `--slow` slowloris connections (default 200): TLS set up, then a request's headers
  trickled one byte a second, never finished (they come from 127.0.0.2, another client
  address than the measured client's, as an attacker's would);
- `--hostile` validations (default 10): http-01 challenges whose target accepts and then
  hangs (half of them) or trickles its status line a byte a second (the other half), so
  that each holds the CA until its validation timeout (5 s here, longer than a loaded
  block).
Idle and loaded blocks alternate (`--rounds`, default 3): the load is set up, measured
under, and gone again (the slow connections closed, the hostile validations timed out)
before the next idle block, so that both see the same background on a shared machine.
It prints both figures and loaded / idle ratios (the target: p99 within 2x of idle), and
how many slow connections and hostile validations were still open at the end of each
loaded block, to show the load was there throughout. It asserts nothing about time.

Short by default (under a minute):
    .venv/bin/python bench/hostile_load.py [--samples 300] [--rounds 3] [--slow 200] [--hostile 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from _common import free_port
from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.processes import wait_https
from acmekit_testkit.tcpstub import tcp_server

ATTACKER = "127.0.0.2"  # the slow connections' source address
TIMEOUT = 5.0  # the CA's validation timeout: longer than a loaded block, ends before the next


async def hostile_target(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Every other connection hangs after the request; the rest trickle a status line.
    Either holds on until the CA gives up and closes."""
    hostile_target.connections += 1  # type: ignore[attr-defined]
    trickle = hostile_target.connections % 2 == 0  # type: ignore[attr-defined]
    line = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Slow: " + b"a" * 10_000
    try:
        await reader.read(4096)
        for byte in line if trickle else b"":
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(1), 1.0)
            if reader.at_eof():
                return
        await reader.read()  # the hang: until the CA closes
    except ConnectionError:
        return


hostile_target.connections = 0  # type: ignore[attr-defined]


async def slowloris(port: int, tls: ssl.SSLContext, opened: list[int], stop: asyncio.Event) -> None:
    """One connection whose request headers never end."""
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls, server_hostname="127.0.0.1", local_addr=(ATTACKER, 0)
        )
    except OSError:
        return
    opened.append(1)
    try:
        writer.write(f"GET /directory HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
        while not stop.is_set():
            writer.write(b"a")
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    except (OSError, ssl.SSLError):
        opened.pop()  # the CA closed it
        return
    finally:
        writer.transport.abort()


async def sample(flow: Flow, n: int) -> list[float]:
    """Latencies (ms) of `n` ordinary requests, one after another."""
    found = []
    for _ in range(n):
        started = time.perf_counter()
        resp = await flow.get(flow.kid)
        found.append((time.perf_counter() - started) * 1000)
        assert resp.status == 200, resp.json()
    return found


def figures(ms: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(ms, n=100)
    return cuts[49], cuts[98]


async def start_hostile(base: str, root: str, count: int) -> list[tuple[Flow, str]]:
    """`count` accounts each start an http-01 validation against the hostile target."""
    started = []
    for _ in range(count):
        flow = Flow(HttpRawAcme(base, root), Http01Responder())
        await flow.account()
        order = (await flow.order("127.0.0.1", profile="shortlived")).json()
        assert "authorizations" in order, order
        authz_url = order["authorizations"][0]
        authz = (await flow.get(authz_url)).json()
        ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
        resp = await flow.acme.post(ch["url"], {}, flow.key, flow.kid)
        assert resp.json()["status"] == "processing", resp.json()
        started.append((flow, authz_url))
    return started


@contextlib.asynccontextmanager
async def hostile_server() -> AsyncIterator[int]:
    async with tcp_server(hostile_target) as port:
        yield port


async def loaded_block(
    ca_base: str, root: str, client: Flow, args: argparse.Namespace, n: int
) -> tuple[list[float], int, int]:
    """Latencies while the slow connections and hostile validations run; how many of
    each were still there at the end of the block. Returns once they are all gone."""
    tls = ssl.create_default_context(cafile=root)
    opened: list[int] = []
    stop = asyncio.Event()
    port = int(ca_base.rsplit(":", 1)[1])
    slow = [asyncio.create_task(slowloris(port, tls, opened, stop)) for _ in range(args.slow)]
    for _ in range(100):
        if len(opened) >= args.slow:
            break
        await asyncio.sleep(0.1)
    hostile = await start_hostile(ca_base, root, args.hostile)
    await asyncio.sleep(0.5)  # every hostile validation connected
    found = await sample(client, n)
    still_slow = len(opened)
    stop.set()
    await asyncio.gather(*slow)
    in_flight = 0
    for flow, authz_url in hostile:
        in_flight += (await flow.get(authz_url)).json()["status"] == "pending"
    for flow, authz_url in hostile:  # the validations end at the CA's timeout
        for _ in range(int(TIMEOUT * 4) + 20):
            if (await flow.get(authz_url)).json()["status"] != "pending":
                break
            await asyncio.sleep(0.5)
        await flow.acme.close()
    return found, still_slow, in_flight


async def run(args: argparse.Namespace, workdir: Path) -> None:
    idle: list[float] = []
    loaded: list[float] = []
    held: list[tuple[int, int]] = []
    block = max(20, args.samples // args.rounds)
    async with hostile_server() as target:
        settings = {"rate_limits": {"enabled": False}, "validation_timeout": TIMEOUT}
        with running_acmekit_server(
            workdir, dns_port=free_port(), http01_port=target, settings=settings, verbose=False
        ) as ca:
            wait_https(ca.proc, ca.directory_url, ca.root_path, ca.log, "acmekit server")
            root = str(ca.root_path)
            client = Flow(HttpRawAcme(ca.base_url, root), Http01Responder())
            await client.account()
            await sample(client, 100)  # warm-up
            # Idle and loaded blocks alternate, so that both meet the same background
            # (the machine may be shared) rather than one early and one late.
            for _ in range(args.rounds):
                idle += await sample(client, block)
                found, still_slow, in_flight = await loaded_block(
                    ca.base_url, root, client, args, block
                )
                loaded += found
                held.append((still_slow, in_flight))
            await client.acme.close()

    (i50, i99), (l50, l99) = figures(idle), figures(loaded)
    print(f"samples: {len(idle)} idle, {len(loaded)} loaded, in {args.rounds} alternating rounds")
    print(f"idle:   p50 {i50:6.2f} ms   p99 {i99:6.2f} ms")
    print(f"loaded: p50 {l50:6.2f} ms   p99 {l99:6.2f} ms")
    print(f"ratio loaded/idle: p50 {l50 / i50:.2f}x   p99 {l99 / i99:.2f}x (target: p99 < 2x)")
    slow_min, hostile_min = min(h[0] for h in held), min(h[1] for h in held)
    print(
        f"load at the end of every loaded block: at least {slow_min}/{args.slow} slow "
        f"connections open, {hostile_min}/{args.hostile} hostile validations in flight"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--slow", type=int, default=200)
    parser.add_argument("--hostile", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
