"""`acmekit.http1`'s own instructions per request: one kept-alive connection's exchange
(the parser's callbacks, the scope, the task, the app's `receive` and two `send`s, the
response head), without TLS, sockets or a real app.

A `_Connection` is given a stand-in transport that keeps what is written, and is fed a
POST as a client of the CA sends it (aiohttp's six headers, a 700-byte JWS body); the
app answers as the CA does (seven headers, a 300-byte body). Under callgrind
(`--callgrind`, as `bench/request_path_cpu.py` does it: instrumentation on only for the
measured requests) the count per request does not move with the machine's load, and
varies by well under 1 % from run to run, so a change of a few hundred instructions
shows; the whole-CA figures of `request_path_cpu.py --listener` move by more than that
(the P-256 verifications' cost depends on the keys and signatures of each run).

    .venv/bin/python bench/http1_exchange.py --callgrind [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from acmekit.http1 import Http1Server, ListenerLimits, _Connection
from request_path_cpu import Toggles, loop_factory, toggles

RESPONSE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"location", b"https://127.0.0.1:14000/acme/order/1"),
    (b"replay-nonce", b"AAECAwQFBgcICQoLDA0ODxAR"),
    (b"link", b'<https://127.0.0.1:14000/directory>;rel="index"'),
    (b"cache-control", b"no-store"),
    (b"content-length", b"300"),
]
BODY = b"z" * 700
REQUEST = (
    b"POST /acme/order/1 HTTP/1.1\r\nHost: 127.0.0.1:14000\r\nAccept: */*\r\n"
    b"Accept-Encoding: gzip, deflate\r\nUser-Agent: Python/3.11 aiohttp/3.9.5\r\n"
    b"Content-Length: 700\r\nContent-Type: application/jose+json\r\n\r\n" + BODY
)
WARM = 100


class Transport:
    """Keeps what is written; never pauses or closes."""

    def __init__(self) -> None:
        self.written = 0
        self.answered: asyncio.Future[None] | None = None

    def write(self, data: bytes) -> None:
        self.written += 1
        if self.answered is not None and not self.answered.done():
            self.answered.set_result(None)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000)


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": RESPONSE_HEADERS})
    await send({"type": "http.response.body", "body": b"y" * 300})


async def exchange(requests: int, marks: Toggles) -> None:
    loop = asyncio.get_running_loop()
    conn = _Connection(Http1Server(app, ListenerLimits()), loop)
    transport = Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    for n in range(WARM + requests):
        if n == WARM and marks is not None:
            marks[0]()
        transport.answered = loop.create_future()
        conn.data_received(REQUEST)
        await transport.answered  # written; the exchange ends in the same loop step
    if marks is not None:
        marks[1]()
    assert transport.written == WARM + requests


def callgrind(requests: int) -> float:
    with tempfile.TemporaryDirectory(prefix="acmekit-http1-cg-") as tmp:
        out = Path(tmp) / "cg.out"
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        argv += [f"--callgrind-out-file={out}", sys.executable, __file__, "--toggles"]
        subprocess.run(
            [*argv, "--requests", str(requests)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for part in Path(tmp).glob("cg.out*"):
            text = part.read_text()
            if "measured" in text.split("\nevents:", 1)[0]:
                return int(re.findall(r"^totals: (\d+)", text, re.M)[-1]) / requests
    raise RuntimeError("no measured dump")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--callgrind", action="store_true", help="instructions per request")
    parser.add_argument("--toggles", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind:
        print(f"{callgrind(args.requests):,.0f} instructions per request")
        return
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(exchange(args.requests, toggles() if args.toggles else None))


if __name__ == "__main__":
    main()
