"""Validations one account may have running at once, against the CA as a process over
HTTPS on loopback: each holds a connection towards a target the client chose for up to
the validation timeout, so an account that answered every pending authorization at once
towards a target that never answers held that many sockets of the CA."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from acmekit_testkit.acme_raw import Flow, Http01Responder, HttpRawAcme, Resp
from acmekit_testkit.acmekit_server import running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port

CAP = 5  # max_identifiers here: the most validations an account runs at once
SETTINGS = {"max_identifiers": CAP, "validation_timeout": 2.0}


@pytest.fixture
async def silent_target() -> AsyncIterator[int]:
    """An http-01 target on loopback that accepts and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    port = free_port()
    server = await asyncio.start_server(hold, "127.0.0.1", port)
    yield port
    server.close()
    for writer in held:
        writer.close()


async def _answer_all(flow: Flow, orders: list[Resp]) -> list[tuple[str, Resp]]:
    """Answer the http-01 challenge of every authorization of `orders` at once:
    (challenge URL, answer) of each."""
    urls = [u for order in orders for u in order.json()["authorizations"]]
    authzs = [(await flow.get(u)).json() for u in urls]
    challenges = [next(c for c in a["challenges"] if c["type"] == "http-01") for a in authzs]
    answers = await asyncio.gather(
        *(flow.acme.post(c["url"], {}, flow.key, flow.kid) for c in challenges)
    )
    return [(c["url"], a) for c, a in zip(challenges, answers, strict=True)]


async def test_an_account_runs_at_most_an_orders_worth_of_validations(
    tmp_path: Path, dns: DnsServerHandle, silent_target: int
) -> None:
    kw = {"dns_port": dns.dns_port, "http01_port": silent_target, "settings": SETTINGS}
    with running_acmekit_server(tmp_path, **kw) as ca:  # type: ignore[arg-type]
        acme = HttpRawAcme(ca.base_url, str(ca.root_path))
        flow = Flow(acme, Http01Responder(port=silent_target))
        await flow.account()
        names = [f"v{i}.validations.outside.test" for i in range(2 * CAP)]
        orders = [await flow.order(*names[:CAP]), await flow.order(*names[CAP:])]
        answers = await _answer_all(flow, orders)
        started = [a for _, a in answers if a.status == 200]
        refused = [a for _, a in answers if a.status != 200]
        assert len(started) == CAP and all(a.json()["status"] == "processing" for a in started)
        assert len(refused) == CAP
        assert all(a.status == 429 and a.problem_type == "rateLimited" for a in refused)
        assert all(int(a.header("retry-after") or 0) >= 1 for a in refused)

        # Another account is not held up by this one's.
        other = Flow(acme, Http01Responder(port=silent_target))
        await other.account()
        (theirs,) = await _answer_all(other, [await other.order("other.validations.outside.test")])
        assert theirs[1].status == 200, theirs[1].body

        # Once the silent targets' validations time out, the account may start again.
        deadline = time.monotonic() + 15
        waiting = next(url for url, a in answers if a.status != 200)
        again = await acme.post(waiting, {}, flow.key, flow.kid)
        while again.status == 429 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            again = await acme.post(waiting, {}, flow.key, flow.kid)
        assert again.status == 200 and again.json()["status"] != "pending", again.body
        await acme.close()


def _open_files_limit(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files limit")


def test_the_ca_raises_its_open_files_limit(tmp_path: Path, dns: DnsServerHandle) -> None:
    """Each connection and each validation is a descriptor. Started with the common
    soft limit (here 256) under a higher hard one, the CA takes the hard one, as Go's
    runtime does: ten accounts' validations held by silent targets no longer use up
    the descriptors the CA needs to accept anyone."""
    wrapper = ("prlimit", "--nofile=256:4096", "--")
    with running_acmekit_server(tmp_path, dns_port=dns.dns_port, wrapper=wrapper) as ca:
        assert _open_files_limit(ca.proc.pid) == (4096, 4096)
