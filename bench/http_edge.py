"""The CA's HTTP edge alone: server CPU per request with its own HTTP/1.1 server
(`acmekit.http1`) against uvicorn's httptools protocol with the listener's bounds
(`bench/_bounded_uvicorn.py`, what the CA and the CT log ran on before), side by side.

What it measures: the same `AcmeApp` (a fresh CA, SQLite, lint off) served over TLS by
each server in its own process; a client in this process keeps `--connections`
connections alive and sends `--requests` requests in all, alternating HEAD newNonce and
GET directory (the two requests that touch neither the database nor a signature, so the
HTTP layer is the largest part of what is measured). Server CPU is utime + stime from
/proc of the server process, read just before and after; the client's own CPU is not
counted. Rounds alternate the servers (A B B A ...), and the report gives every round,
the medians, and the least flattering ratio (ours at its worst against uvicorn at its
best).

With `--callgrind` each server runs under valgrind's callgrind instead, its counters
zeroed after the warm-up and dumped after the measured requests: instructions per
request in user space (the kernel's part, the system calls, is not counted), which do not
move with the machine's load as CPU time does.

Run: `python bench/http_edge.py [--requests 20000] [--connections 4] [--rounds 3]
[--pipeline 1] [--callgrind]` (with `--pipeline N` each connection sends N requests
before reading).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _common import cpu_seconds, stop_process

SERVERS = ("http1", "uvicorn")


# the server process ---------------------------------------------------------------------


def serve(kind: str, state: Path) -> None:
    import uvloop

    uvloop.run(_serve(kind, state))


async def _serve(kind: str, state: Path) -> None:
    from acmekit.server.ca import listener_credentials
    from acmekit.server.config import CrlSettings, LintSettings, ServerConfig
    from acmekit.server.run import SYSTEM_CLOCK, assemble, bind

    config = ServerConfig(
        listen="127.0.0.1:0",
        state_dir=state,
        crl=replace(CrlSettings(), listen=None),
        lint=replace(LintSettings(), enabled=False),
    )
    assembly = assemble(config)
    cert, key = listener_credentials(assembly.issuer, state, ["127.0.0.1"], SYSTEM_CLOCK.now())
    sock = bind(config)
    gc.collect()
    gc.freeze()
    print(f"port {sock.getsockname()[1]}", flush=True)
    if kind == "uvicorn":
        import uvicorn

        from _bounded_uvicorn import bounded_protocol

        uv = uvicorn.Config(
            assembly.app,
            ssl_certfile=str(cert),
            ssl_keyfile=str(key),
            lifespan="on",
            log_level="warning",
            access_log=False,
            loop="uvloop",
            http=bounded_protocol(config.limits),
            timeout_keep_alive=config.limits.keepalive_timeout,  # type: ignore[arg-type]
        )
        await uvicorn.Server(uv).serve(sockets=[sock])
    else:
        from acmekit.http1 import Http1Server
        from acmekit.server.run import _serve_together

        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        server = Http1Server(assembly.app, config.limits, tls)
        await _serve_together(assembly.app, [(server, sock)], 5.0)


# the load -------------------------------------------------------------------------------


async def _connection(
    port: int, context: ssl.SSLContext, requests: list[bytes], pipeline: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    for start in range(0, len(requests), pipeline):
        batch = requests[start : start + pipeline]
        writer.write(b"".join(batch))
        for request in batch:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length and not request.startswith(b"HEAD"):
                await reader.readexactly(length)
    writer.close()


async def _load(port: int, root: Path, total: int, connections: int, pipeline: int) -> None:
    context = ssl.create_default_context(cafile=str(root))
    host = f"127.0.0.1:{port}"
    kinds = [
        f"HEAD /acme/new-nonce HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
        f"GET /directory HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
    ]
    each = total // connections
    await asyncio.gather(
        *(
            _connection(port, context, [kinds[i % 2] for i in range(each)], pipeline)
            for _ in range(connections)
        )
    )


def _round(kind: str, args: argparse.Namespace) -> float:
    """Server CPU µs (or, with --callgrind, instructions) per request for one run."""
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        argv = [sys.executable, __file__, "serve", kind, str(state)]
        if args.callgrind:
            argv = [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out",
                "--dump-instr=no", "--dump-line=no", *argv,
            ]  # fmt: skip
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, env=os.environ | {"PYTHONHASHSEED": "0"}
        )
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline().split()[1])
            _wait_listening(port)
            warm = max(200, args.requests // 20)
            uvloop.run(_load(port, state / "root.pem", warm, args.connections, args.pipeline))
            if args.callgrind:
                _callgrind_control("--zero", proc.pid)
            before = cpu_seconds(proc.pid)
            uvloop.run(
                _load(port, state / "root.pem", args.requests, args.connections, args.pipeline)
            )
            used = cpu_seconds(proc.pid) - before
            if args.callgrind:
                _callgrind_control("--dump", proc.pid)
                return _instructions(state) / args.requests
        finally:
            stop_process(proc, timeout=60)
    return used / args.requests * 1e6


def _callgrind_control(what: str, pid: int) -> None:
    subprocess.run(["callgrind_control", what, str(pid)], check=True, capture_output=True)


def _instructions(state: Path) -> int:
    """Instructions in the (one) dump taken after the counters were zeroed."""
    dumps = [p for p in state.glob("cg.out.*") if p.suffix != ".out"]
    for line in max(dumps, key=lambda p: p.stat().st_mtime).read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind dump")


def _wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pipeline", type=int, default=1)
    parser.add_argument("--callgrind", action="store_true", help="count instructions")
    args = parser.parse_args()
    unit = "instructions" if args.callgrind else "µs"
    results: dict[str, list[float]] = {kind: [] for kind in SERVERS}
    for n in range(args.rounds):
        order = SERVERS if n % 2 == 0 else SERVERS[::-1]
        for kind in order:
            results[kind].append(_round(kind, args))
            print(f"round {n + 1} {kind}: {results[kind][-1]:.1f} {unit}/request", flush=True)
    print(
        f"\nserver {'instructions' if args.callgrind else 'CPU'} per request, "
        f"{args.requests} requests over {args.connections} "
        f"kept-alive TLS connections (pipeline {args.pipeline}), HEAD newNonce and GET "
        f"directory alternating; load average {os.getloadavg()[0]:.1f} at the end"
    )
    for kind in SERVERS:
        runs = ", ".join(f"{v:.1f}" for v in results[kind])
        print(f"{kind:8} median {statistics.median(results[kind]):6.1f} {unit}  (rounds: {runs})")
    ours, theirs = results["http1"], results["uvicorn"]
    print(
        f"ratio http1/uvicorn: median {statistics.median(ours) / statistics.median(theirs):.2f}, "
        f"least flattering {max(ours) / min(theirs):.2f}"
    )


if __name__ == "__main__":
    main()
