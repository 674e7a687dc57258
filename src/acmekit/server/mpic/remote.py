"""The CA's side of multi-perspective corroboration (BR §3.2.2.9).

`Corroborator.corroborate` is called after the primary perspective (the CA itself) has
validated the challenge and checked CAA. It asks every configured remote at once,
applies `quorum.decide` as each answer comes in and returns as soon as the outcome is
decided. The requests still out are not waited for, but they are left to finish (for
`LINGER` seconds at most, within the round's time) so that their kept-alive connections
go back to the pool: cancelling one closes its connection, and the next request to that
perspective would pay a new client-authenticated TLS handshake, which costs the CA more
than the request itself. A remote that cannot be reached, fails the TLS
handshake, presents a certificate that is not its own (`certs.py`), answers late
(`[mpic] timeout` bounds the whole round) or answers something unreadable counts as not
corroborating, with the reason recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

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

MAX_ANSWER = 64 * 1024  # an answer is under 2 KiB (two problem documents at most)
LINGER = 2.0  # seconds a request not needed any more may take to finish in the background


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

    def problem_detail(self, what: str = "the validation") -> str:
        remotes = len(self.results)
        # One perspective is in one RIR, so the RIR rule raises the count for two remotes
        # (BR 3.2.2.9 lets one of them fail, the two RIRs then forbid it).
        need = max(remotes - allowed_failures(remotes), MIN_RIRS)
        failures = self.of(Outcome.FAILED)
        which = "; ".join(f"{r.name} ({r.rir}): {r.detail}" for r in failures)
        return (
            f"remote perspectives did not corroborate {what} (BR 3.2.2.9): "
            f"{len(failures)} of {remotes} failed, {need} must agree from at least "
            f"{MIN_RIRS} RIRs; {which}"
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
        # Idle kept-alive connections per perspective, on the event loop that made them.
        self._idle: dict[str, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self._stragglers: set[asyncio.Future[PerspectiveResult]] = set()

    def kept(self, name: str) -> int:
        """How many idle kept-alive connections to perspective `name` wait for reuse."""
        return len(self._idle.get(name, []))

    def _let_finish(self, task: asyncio.Future[PerspectiveResult], when: float) -> None:
        """Leave a request that is not needed to finish (its answer is ignored), and
        cancel it at `when` (loop time) if it has not."""
        deadline = asyncio.get_running_loop().call_at(when, task.cancel)
        self._stragglers.add(task)

        def finished(done: asyncio.Future[PerspectiveResult]) -> None:
            deadline.cancel()
            self._stragglers.discard(done)

        task.add_done_callback(finished)

    async def corroborate(self, req: CorroborationRequest) -> Corroboration:
        answers: dict[str, bool] = {}
        results: dict[str, PerspectiveResult] = {}
        body = json.dumps(req.to_json()).encode()
        tasks = {asyncio.ensure_future(self._ask(r, body)): r for r in self.remotes}
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
        except BaseException:
            await _cancel(pending)
            raise
        if verdict == Verdict.PENDING:
            await _cancel(pending)  # the round's time is up: they failed
        else:
            # Decided: the stragglers are not needed, but may keep their connections.
            for task in pending:
                self._let_finish(task, min(end, loop.time() + LINGER))
        for remote in tasks.values():
            if remote.name in results:
                continue
            if verdict == Verdict.PENDING:
                results[remote.name] = PerspectiveResult(
                    remote.name, remote.rir, Outcome.FAILED, "no answer in time"
                )
                answers[remote.name] = False
            else:
                results[remote.name] = PerspectiveResult(remote.name, remote.rir, Outcome.CANCELLED)
        if verdict == Verdict.PENDING:
            verdict = decide(self._quorum, answers)
        ordered = tuple(results[r.name] for r in self.remotes)
        agreed = sum(1 for r in ordered if r.outcome == Outcome.PASSED)
        return Corroboration(verdict, quorum_text(len(self.remotes), agreed), ordered)

    async def _ask(self, remote: RemotePerspective, body: bytes) -> PerspectiveResult:
        def failed(detail: str) -> PerspectiveResult:
            return PerspectiveResult(remote.name, remote.rir, Outcome.FAILED, detail)

        try:
            status, payload = await self._exchange(remote, body)
        except _NotThePerspective:
            return failed("its certificate is not that of this perspective")
        except ssl.SSLError as exc:
            return failed(f"TLS failed: {_reason(exc)}")
        except _Unreachable as exc:
            return failed(f"unreachable: {_reason(exc.__cause__ or exc)}")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            return failed(f"connection failed: {_reason(exc)}")
        except ValueError as exc:
            return failed(f"unreadable answer: {exc}")
        if status != 200:
            return failed(f"answered HTTP {status}")
        try:
            answer = PerspectiveAnswer.from_json(json.loads(payload))
        except ValueError as exc:
            return failed(f"unreadable answer: {exc}")
        if answer.perspective != remote.name:
            return failed(f"answered as {answer.perspective!r}")
        found = answer.problem
        if found is not None:
            which = "CAA" if answer.dcv is None else "validation"
            return failed(f"{which}: {found.describe()}")
        return PerspectiveResult(remote.name, remote.rir, Outcome.PASSED)

    async def _exchange(self, remote: RemotePerspective, body: bytes) -> tuple[int, bytes]:
        """One POST over a kept-alive connection when there is one (a TLS handshake with
        client authentication costs the CA more than the request itself), else over a
        new one. A kept connection the perspective closed meanwhile is replaced once."""
        for attempt in range(2):
            reader, writer, reused = await self._connection(remote, fresh=attempt > 0)
            keep = False
            try:
                status, payload, keep = await _post(reader, writer, remote, body)
                return status, payload
            except (OSError, asyncio.IncompleteReadError):
                if not reused:
                    raise
            finally:
                if keep:
                    self._idle.setdefault(remote.name, []).append((reader, writer))
                else:
                    writer.close()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connection(
        self, remote: RemotePerspective, *, fresh: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        idle = self._idle.get(remote.name, [])
        while idle and not fresh:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer, True
            writer.close()
        url = urlsplit(remote.url)
        host = url.hostname or ""
        try:
            reader, writer = await asyncio.open_connection(
                host, url.port or 443, ssl=self._context, server_hostname=host
            )
        except ssl.SSLError:
            raise
        except OSError as exc:
            raise _Unreachable() from exc
        # The handshake proved that the certificate chains to our root and names the host;
        # it must also be this perspective's own (a subscriber's chains there too).
        if perspective_uri(remote.name) not in peer_uris(writer.get_extra_info("peercert")):
            writer.close()
            raise _NotThePerspective()
        return reader, writer, False


async def _cancel(tasks: set[asyncio.Future[PerspectiveResult]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _NotThePerspective(Exception):
    pass


class _Unreachable(Exception):
    pass


async def _post(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    remote: RemotePerspective,
    body: bytes,
) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection may be kept) of one HTTP/1.1 POST."""
    url = urlsplit(remote.url)
    host = url.hostname or ""
    shown = f"[{host}]" if ":" in host else host
    writer.write(
        f"POST {PATH} HTTP/1.1\r\nHost: {shown}:{url.port or 443}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status, length, keep = parse_head(head)
    if length is None:
        payload = await reader.read(MAX_ANSWER + 1)
        keep = False
    else:
        payload = await reader.readexactly(length)
    if len(payload) > MAX_ANSWER:
        raise ValueError("too long")
    return status, payload, keep


def parse_head(head: bytes) -> tuple[int, int | None, bool]:
    """(status, Content-Length or None, keep-alive) of an HTTP/1.1 answer's head."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    status_line = lines[0].split()
    if (
        len(status_line) < 2
        or not status_line[0].startswith(b"HTTP/1.")
        or not status_line[1].isdigit()
    ):
        raise ValueError("no status line")
    length: int | None = None
    keep = status_line[0] == b"HTTP/1.1"
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError("a header line without a colon")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"transfer-encoding":
            raise ValueError("chunked answers are not expected")
        if name == b"content-length":
            if not value.isdigit() or int(value) > MAX_ANSWER:
                raise ValueError("a bad Content-Length")
            length = int(value)
        if name == b"connection" and value == b"close":
            keep = False
    return int(status_line[1]), length, keep


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def refusal(
    corroboration: Corroboration, identifier: dict[str, str], what: str = "the validation"
) -> AcmeError:
    """The problem a client sees: `unauthorized`, naming every perspective that failed."""
    detail = corroboration.problem_detail(what)
    return problem(ProblemType.UNAUTHORIZED, detail, identifier=identifier)


__all__ = [
    "Corroboration",
    "Corroborator",
    "Outcome",
    "PerspectiveResult",
    "RemotePerspective",
    "client_context",
    "refusal",
]
