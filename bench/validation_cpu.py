"""Validation benchmark: the CA's CPU per challenge validation, split by its parts.

What it measures: the CPU (utime + stime of this process, `resource.getrusage`) that the
validation authority spends per validation, driven in-process on uvloop as
`acmekit server` runs it, against a real `acmekit dns` (a separate process, answering
every name with 127.0.0.1 and serving the dns-01 TXT records) and an http-01 responder
(a separate process, a small asyncio server) on loopback. The peers' CPU is not counted.

The parts, each run on its own, so that the whole can be split:

- `lookup`: the address lookup of an http-01 name (`DnsClient.addresses`, one A question);
- `txt`: one dns-01 TXT lookup (`DnsClient.query`);
- `caa`: the CAA check of a name three labels deep (tree climbing: three CAA questions);
- `fetch`: an http-01 validation of an IP identifier (no DNS: connect, GET, read, check);
- `http-01` and `dns-01`: `Validator.validate` of a DNS name;
- `http-01+caa`, `dns-01+caa`: the same followed by the CAA check, as the CA does it.

Bookkeeping is what `http-01` costs beyond `lookup` + `fetch`. Each part is run one
validation at a time (`--concurrency 1`, the least flattering: nothing is amortized over
a wakeup) and with several in flight, as under the CA benchmark's eight workers.
Names are distinct per validation (vN.bench.test), as in bench/server.py.

Run: `python bench/validation_cpu.py [--count 2000] [--concurrency 1,8] [--repeat 3]`;
the figure reported per part is the median of `--repeat` runs, in µs of CPU.

`--callgrind N` runs this script under `valgrind --tool=callgrind --instr-atstart=no`
(the peers natively, valgrind does not follow children) and counts instructions per
validation, a figure the machine's load does not move: each part and concurrency is
measured over a window of N validations and one of 2N, switched on and off by the script
itself (callgrind's client requests, as bench/request_path_cpu.py does), and the
difference divided by N, so that what a window costs once (its gather, its first
socket) drops out. `--top K` splits the 2N window of each part by function (each
function's own instructions, per validation); `--keep DIR` keeps the dumps for
`callgrind_annotate`.

    .venv/bin/python bench/validation_cpu.py --callgrind 200 --concurrency 1 --top 30
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import dns.rdatatype
import uvloop

from acmekit.protocol.challenges import dns01_txt_value
from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.server.caa import CaaChecker
from acmekit.server.validation import ValidationConfig, Validator
from acmekit_testkit.dnsserver import dns_server_process
from acmekit_testkit.ports import free_port
from acmekit_testkit.processes import stop_process
from request_path_cpu import Toggles, instructions, self_cost, toggles

KEY_AUTH_SUFFIX = ".bench-account-thumbprint"
TXT_NAME = "txt.bench.test"

# The http-01 responder, run as its own process: the key authorization of a token is the
# token followed by KEY_AUTH_SUFFIX, so any token works without coordination.
RESPONDER = """
import asyncio, sys
SUFFIX = sys.argv[2].encode()
PREFIX = b"GET /.well-known/acme-challenge/"

async def serve(reader, writer):
    try:
        head = await reader.readuntil(b"\\r\\n\\r\\n")
        path = head.split(b" ", 2)[1]
        token = path.rsplit(b"/", 1)[1]
        body = token + SUFFIX
        writer.write(
            b"HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: "
            + str(len(body)).encode() + b"\\r\\nConnection: close\\r\\n\\r\\n" + body
        )
        await writer.drain()
    except Exception:
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]), backlog=512)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Parts:
    """The validation functions, each a coroutine of one index (for a distinct name)."""

    def __init__(self, resolver: tuple[str, int], http_port: int) -> None:
        config = ValidationConfig(
            dns_resolver=resolver,
            http01_port=http_port,
            allow_networks=("127.0.0.0/8",),
            timeout=10.0,
        )
        self.validator = Validator(config)
        self.caa = CaaChecker(resolver, ("acmekit",), 10.0)
        self.dns = self.validator._dns  # the same client the validations use

    @staticmethod
    def name(i: int) -> str:
        return f"v{i}.bench.test"

    async def lookup(self, i: int) -> None:
        found = await self.dns.addresses(self.name(i))
        assert found.values == ("127.0.0.1",), found

    async def txt(self, i: int) -> None:
        found = await self.dns.query(f"_acme-challenge.{TXT_NAME}", dns.rdatatype.TXT)
        assert found.values, found

    async def caa_check(self, i: int) -> None:
        await self.caa.check(self.name(i), wildcard=False, account_uri="a", method="http-01")

    async def fetch(self, i: int) -> None:
        ident = Identifier(IdentifierType.IP, "127.0.0.1")
        token = f"token{i}"
        await self.validator.validate(ChallengeType.HTTP_01, ident, token, token + KEY_AUTH_SUFFIX)

    async def http01(self, i: int) -> None:
        ident = Identifier(IdentifierType.DNS, self.name(i))
        token = f"token{i}"
        await self.validator.validate(ChallengeType.HTTP_01, ident, token, token + KEY_AUTH_SUFFIX)

    async def dns01(self, i: int) -> None:
        ident = Identifier(IdentifierType.DNS, TXT_NAME)
        await self.validator.validate(ChallengeType.DNS_01, ident, "t", "t" + KEY_AUTH_SUFFIX)

    async def http01_caa(self, i: int) -> None:
        await self.http01(i)
        await self.caa_check(i)

    async def dns01_caa(self, i: int) -> None:
        await self.dns01(i)
        await self.caa.check(TXT_NAME, wildcard=False, account_uri="a", method="dns-01")

    def table(self) -> dict[str, Callable[[int], Awaitable[None]]]:
        return {
            "lookup": self.lookup,
            "txt": self.txt,
            "caa": self.caa_check,
            "fetch": self.fetch,
            "http-01": self.http01,
            "http-01+caa": self.http01_caa,
            "dns-01": self.dns01,
            "dns-01+caa": self.dns01_caa,
        }


async def run_part(
    part: Callable[[int], Awaitable[None]], start: int, count: int, concurrency: int
) -> float:
    """CPU µs per call of `part`, `concurrency` calls in flight at a time."""
    todo = iter(range(start, start + count))

    async def worker() -> None:
        for i in todo:
            await part(i)

    before = cpu()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (cpu() - before) / count * 1e6


async def run(
    args: argparse.Namespace, resolver: tuple[str, int], http_port: int, marks: Toggles
) -> None:
    parts = Parts(resolver, http_port)
    table = parts.table()
    chosen = args.parts.split(",") if args.parts else list(table)
    levels = [int(c) for c in args.concurrency.split(",")]
    for name in chosen:  # warm up: imports, first connections, caches of the interpreter
        await run_part(table[name], 10_000_000, 50, 1)
    gc.freeze()  # as `acmekit server` does after start-up
    start = 0
    if marks is not None:  # under callgrind: windows of N and 2N, each dumped
        on, off = marks
        for name in chosen:
            for level in levels:
                for count in (args.count, 2 * args.count):
                    await run_part(table[name], start, count // 2, level)  # settle
                    start += count // 2
                    on()
                    await run_part(table[name], start, count, level)
                    off()
                    start += count
                    print(f"window {name} {level} {count}", flush=True)
        return
    print(f"{'part':<14}" + "".join(f"{f'c={c} us':>12}" for c in levels) + "   (runs)")
    for name in chosen:
        cells, runs = [], []
        for level in levels:
            figures = []
            for _ in range(args.repeat):
                figures.append(await run_part(table[name], start, args.count, level))
                start += args.count
            cells.append(statistics.median(figures))
            runs.append("/".join(f"{f:.0f}" for f in figures))
        print(f"{name:<14}" + "".join(f"{c:>12.0f}" for c in cells) + "   " + " ".join(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="validations per run")
    parser.add_argument("--concurrency", default="1,8", help="validations in flight")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--parts", default="", help="comma-separated parts (default: all)")
    parser.add_argument("--callgrind", type=int, help="N: instructions per validation")
    parser.add_argument("--top", type=int, default=0, help="with --callgrind: the split")
    parser.add_argument("--keep", type=Path, help="with --callgrind: keep the dumps here")
    parser.add_argument("--toggles", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind:
        report_callgrind(args)
        return
    marks = toggles() if args.toggles else None
    with tempfile.TemporaryDirectory(prefix="acmekit-bench-") as tmp:
        http_port = free_port()
        responder = subprocess.Popen(
            [sys.executable, "-c", RESPONDER, str(http_port), KEY_AUTH_SUFFIX],
            stdout=subprocess.PIPE,
        )
        try:
            assert responder.stdout is not None
            if responder.stdout.readline().strip() != b"ready":
                raise SystemExit("the http-01 responder did not start")
            with dns_server_process(Path(tmp)) as dns_server:
                value = dns01_txt_value("t" + KEY_AUTH_SUFFIX)
                dns_server.set_txt_sync(f"_acme-challenge.{TXT_NAME}.", value)
                print(
                    f"# load average {os.getloadavg()[0]:.1f}; {args.count} per run, "
                    f"median of {args.repeat}; CPU us per call (this process only)"
                )
                uvloop.run(run(args, (dns_server.host, dns_server.dns_port), http_port, marks))
        finally:
            stop_process(responder)
            if responder.stdout is not None:
                responder.stdout.close()


def report_callgrind(args: argparse.Namespace) -> None:
    """Run this script under callgrind; print instructions per validation by part."""
    with tempfile.TemporaryDirectory(prefix="acmekit-validation-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        argv += [f"--callgrind-out-file={out}", sys.executable, __file__, "--toggles"]
        argv += ["--count", str(args.callgrind), "--concurrency", args.concurrency]
        argv += ["--parts", args.parts] if args.parts else []
        said = subprocess.run(
            argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        ).stdout
        windows = re.findall(r"^window (\S+) (\d+) (\d+)$", said, re.M)
        dumps = sorted(Path(tmp).glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
        texts = [p.read_text() for p in dumps]
        measured = [t for t in texts if "measured" in t.split("\nevents:", 1)[0]]
        assert len(measured) == len(windows), (len(measured), len(windows))
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for (name, level, count), text in zip(windows, measured, strict=True):
                (args.keep / f"callgrind.{name}.c{level}.{count}").write_text(text)
    print(f"# instructions per validation: (window of 2N - window of N) / N, N = {args.callgrind}")
    counts: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for (name, level, count), text in zip(windows, measured, strict=True):
        counts.setdefault((name, level), []).append((int(count), text))
    for (name, level), pair in counts.items():
        (n1, t1), (n2, t2) = sorted(pair)
        per = (instructions([t2]) - instructions([t1])) / (n2 - n1)
        print(f"{name:<14} c={level:<3} {per:12,.0f}")
        if args.top:
            cost: Counter[tuple[str, str]] = self_cost([t2])
            for (ob, fn), n in cost.most_common(args.top):
                print(f"    {n / n2:10,.0f}  {Path(ob).name}  {fn}")


if __name__ == "__main__":
    main()
