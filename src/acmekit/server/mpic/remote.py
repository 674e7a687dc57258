"""The CA's side of multi-perspective corroboration (BR §3.2.2.9).

`Corroborator.corroborate` is called after the primary perspective (the CA itself) has
validated the challenge and checked CAA. It asks every configured remote at once,
applies `quorum.decide` as each answer comes in and cancels the remaining requests as
soon as the outcome is decided. A remote that cannot be reached, fails the TLS
handshake, presents a certificate that is not its own (`certs.py`), answers late
(`[mpic] timeout` bounds the whole round) or answers something unreadable counts as not
corroborating, with the reason recorded.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiohttp

from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.mpic.certs import peer_uris, perspective_uri
from acmekit.server.mpic.quorum import (
    MIN_RIRS,
    Remote,
    Rir,
    Verdict,
    allowed_failures,
    decide,
    quorum_text,
)
from acmekit.server.mpic.wire import PATH, CorroborationRequest, PerspectiveAnswer

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # not needed: the outcome was decided before it answered


@dataclass(frozen=True)
class RemotePerspective:
    name: str
    rir: str
    url: str  # https://host:port (the path is the protocol's)


@dataclass(frozen=True)
class PerspectiveResult:
    name: str
    rir: str
    outcome: Outcome
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        doc = {"name": self.name, "rir": self.rir, "outcome": str(self.outcome)}
        if self.detail:
            doc["detail"] = self.detail
        return doc


@dataclass(frozen=True)
class Corroboration:
    verdict: Verdict
    quorum: str  # "3/4": corroborating of asked
    results: tuple[PerspectiveResult, ...]

    def of(self, outcome: Outcome) -> list[PerspectiveResult]:
        return [r for r in self.results if r.outcome == outcome]

    def summary(self) -> str:
        """For the log: `passed p1 (ARIN), p2 (RIPE); failed p3 (APNIC)`."""
        parts = []
        for outcome in Outcome:
            found = self.of(outcome)
            if found:
                parts.append(f"{outcome} " + ", ".join(f"{r.name} ({r.rir})" for r in found))
        return "; ".join(parts)

    def problem_detail(self) -> str:
        remotes = len(self.results)
        need = remotes - allowed_failures(remotes)
        failed = "; ".join(f"{r.name} ({r.rir}): {r.detail}" for r in self.of(Outcome.FAILED))
        return (
            f"remote perspectives did not corroborate the validation: {self.quorum} agreed, "
            f"{need} from at least {MIN_RIRS} RIRs are needed (BR 3.2.2.9); {failed}"
        )


def client_context(root: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(root))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class Corroborator:
    def __init__(
        self, remotes: tuple[RemotePerspective, ...], context: ssl.SSLContext, timeout: float
    ) -> None:
        self.remotes = remotes
        self._quorum = [Remote(r.name, Rir(r.rir)) for r in remotes]
        self._context = context
        self._timeout = timeout

    async def corroborate(self, req: CorroborationRequest) -> Corroboration:
        answers: dict[str, bool] = {}
        results: dict[str, PerspectiveResult] = {}
        connector = aiohttp.TCPConnector(ssl=self._context, limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            tasks = {asyncio.ensure_future(self._ask(session, r, req)): r for r in self.remotes}
            verdict = Verdict.PENDING
            pending: set[asyncio.Future[PerspectiveResult]] = set(tasks)
            loop = asyncio.get_running_loop()
            end = loop.time() + self._timeout
            try:
                while pending and verdict == Verdict.PENDING:
                    done, pending = await asyncio.wait(
                        pending, timeout=max(0.0, end - loop.time()),
                        return_when=asyncio.FIRST_COMPLETED,
                    )  # fmt: skip
                    if not done:
                        break  # the round's time is up
                    for task in done:
                        result = task.result()
                        results[result.name] = result
                        answers[result.name] = result.outcome == Outcome.PASSED
                    verdict = decide(self._quorum, answers)
            finally:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        for task, remote in tasks.items():
            if remote.name in results:
                continue
            if verdict == Verdict.PENDING:
                late = PerspectiveResult(remote.name, remote.rir, Outcome.FAILED, "timeout")
                results[remote.name] = late
                answers[remote.name] = False
            else:
                results[remote.name] = PerspectiveResult(remote.name, remote.rir, Outcome.CANCELLED)
            del task
        if verdict == Verdict.PENDING:
            verdict = decide(self._quorum, answers)
        ordered = tuple(results[r.name] for r in self.remotes)
        agreed = sum(1 for r in ordered if r.outcome == Outcome.PASSED)
        return Corroboration(verdict, quorum_text(len(self.remotes), agreed), ordered)

    async def _ask(
        self, session: aiohttp.ClientSession, remote: RemotePerspective, req: CorroborationRequest
    ) -> PerspectiveResult:
        def failed(detail: str) -> PerspectiveResult:
            return PerspectiveResult(remote.name, remote.rir, Outcome.FAILED, detail)

        try:
            async with session.post(remote.url.rstrip("/") + PATH, json=req.to_json()) as resp:
                if not self._is_the_perspective(resp, remote):
                    return failed("its certificate is not that of this perspective")
                if resp.status != 200:
                    return failed(f"answered HTTP {resp.status}")
                doc: Any = await resp.json(content_type=None)
            answer = PerspectiveAnswer.from_json(doc)
        except aiohttp.ClientSSLError as exc:
            return failed(f"TLS failed: {_reason(exc)}")
        except (aiohttp.ClientError, OSError) as exc:
            return failed(f"unreachable: {_reason(exc)}")
        except ValueError as exc:
            return failed(f"unreadable answer: {exc}")
        if answer.perspective != remote.name:
            return failed(f"answered as {answer.perspective!r}")
        found = answer.problem
        if found is not None:
            which = "CAA" if answer.dcv is None else "validation"
            return failed(f"{which}: {found.describe()}")
        return PerspectiveResult(remote.name, remote.rir, Outcome.PASSED)

    @staticmethod
    def _is_the_perspective(resp: aiohttp.ClientResponse, remote: RemotePerspective) -> bool:
        """The handshake proved the certificate chains to our root and names the host; it
        must also be this perspective's own (a subscriber certificate chains there too)."""
        conn = resp.connection
        transport = conn.transport if conn is not None else None
        peercert = transport.get_extra_info("peercert") if transport is not None else None
        return perspective_uri(remote.name) in peer_uris(peercert)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def refusal(corroboration: Corroboration, identifier: dict[str, str]) -> AcmeError:
    """The problem a client sees: `unauthorized`, naming every perspective that failed."""
    return problem(ProblemType.UNAUTHORIZED, corroboration.problem_detail(), identifier=identifier)


__all__ = [
    "Corroboration",
    "Corroborator",
    "Outcome",
    "PerspectiveResult",
    "RemotePerspective",
    "client_context",
    "refusal",
]
