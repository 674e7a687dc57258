"""The CA's side of Certificate Transparency (RFC 6962): precertificates to the logs, SCTs
back, verified, judged against the policy, and the final certificate after them.

- `CtSubmitter.load` reads the `[ct] log_lists` (Chrome's log list v3 schema) once, at
  start: a list that does not parse stops the start, naming the file.
- `scts_for` posts the precertificate and its chain to every log whose temporal shard
  covers the certificate's notAfter (`add-pre-chain`, §4.1), all at once, and waits at
  most `[ct] timeout` seconds. Each SCT is verified against its log's key over the PreCert
  entry before it is counted (§3.2): a log that answers with a bad signature, an SCT
  for another log or another entry counts as failed. The verified SCTs are embedded when
  they meet the policy (acmekit.protocol.ctpolicy); else `CtUnavailable` names each log
  and what went wrong, and the order fails with that problem: no certificate leaves the
  CA without a compliant set of SCTs.
- `submit_final` posts the final certificate (`add-chain`) to the logs whose SCTs it
  carries, after the certificate is issued, best effort: a log that
  refuses it or is down is logged and forgotten; the embedded SCTs already prove the
  precertificate's inclusion promise.

Outbound HTTP with acmekit.server.ctclient: per log, a pool of kept-alive connections,
made on first use in the event loop and closed with the app. What every submission under
the same chain shares (the issuer's key hash, the chain's base64 in the body) is computed
once; each SCT is verified with the log's key object, loaded once with the log list.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.protocol import ct
from acmekit.protocol.ctpolicy import choose, lifetime_of
from acmekit.protocol.problems import AcmeError, Problem, ProblemType
from acmekit.server.config import CtSettings
from acmekit.server.ctclient import ANSWER_ERRORS, Answer, Exchange, LogClient

log = logging.getLogger(__name__)

_MAX_ANSWER = 64 * 1024  # an SCT's JSON is ~200 bytes


class CtUnavailable(AcmeError):
    """Too few SCTs (logs down, slow, refusing or signing wrongly): the order fails."""

    def __init__(self, detail: str) -> None:
        super().__init__(Problem(str(ProblemType.SERVER_INTERNAL), detail, 500))


def load_log_lists(paths: Sequence[str]) -> tuple[ct.LogInfo, ...]:
    """Every log of the given lists, once each (by log ID)."""
    logs: dict[bytes, ct.LogInfo] = {}
    for path in paths:
        try:
            found = ct.LogList.loads(Path(path).read_bytes())
        except (OSError, ct.CtError) as exc:
            raise ValueError(f"[ct] log list {path}: {exc}") from None
        for info in found.logs:
            if not info.url:
                raise ValueError(f"[ct] log list {path}: log {info.description!r} has no url")
            logs.setdefault(info.log_id, info)
    if not logs:
        raise ValueError("[ct] log_lists name no log")
    return tuple(logs.values())


def _covers(info: ct.LogInfo, cert: x509.Certificate) -> bool:
    """Whether `cert`'s notAfter is in the log's temporal shard (if it has one)."""
    not_after = cert.not_valid_after_utc
    if info.temporal_start is not None and not_after < info.temporal_start:
        return False
    return info.temporal_end is None or not_after < info.temporal_end


@dataclass(frozen=True)
class Outcome:
    info: ct.LogInfo
    sct: ct.SignedCertificateTimestamp | None
    failure: str | None


class _Chain:
    """What every submission under one issuing chain shares, computed once: the issuer's
    key hash (§3.2) and the chain's part of the add-(pre-)chain body, which base64 needs
    no JSON escaping for."""

    def __init__(self, chain: Sequence[x509.Certificate]) -> None:
        self.certs = tuple(chain)
        self.issuer_key_hash = ct.issuer_key_hash(chain[0])
        tail = "".join(f',"{ct.b64(c.public_bytes(serialization.Encoding.DER))}"' for c in chain)
        self._tail = f"{tail}]}}".encode("ascii")

    def body(self, leaf_der: bytes) -> bytes:
        """`{"chain":[leaf, chain...]}` (§4.1)."""
        return b'{"chain":["' + base64.b64encode(leaf_der) + b'"' + self._tail


class CtSubmitter:
    def __init__(self, settings: CtSettings, logs: Sequence[ct.LogInfo]) -> None:
        self.settings = settings
        self.logs = tuple(logs)
        self._log_ids = {id(info): info.log_id for info in self.logs}  # hashed once
        self._clients: dict[int, LogClient] | None = None
        self._chain: _Chain | None = None

    @classmethod
    def load(cls, settings: CtSettings) -> CtSubmitter | None:
        """The submitter for `[ct]`, or None when CT is off."""
        if not settings.enabled:
            return None
        return cls(settings, load_log_lists(settings.log_lists))

    def _client(self, info: ct.LogInfo) -> LogClient:
        if self._clients is None:
            # The configured log URLs only, never a proxy from the environment. An
            # https:// log is verified against `ca_bundle` (or the system's roots).
            tls = None
            if any(i.url.startswith("https:") for i in self.logs):
                tls = ssl.create_default_context(cafile=self.settings.ca_bundle)
            self._clients = {id(i): LogClient(i.url, tls) for i in self.logs}
        return self._clients[id(info)]

    def _chain_for(self, chain: Sequence[x509.Certificate]) -> _Chain:
        known = self._chain
        if known is None or known.certs != tuple(chain):
            known = self._chain = _Chain(chain)
        return known

    async def close(self) -> None:
        if self._clients is not None:
            for client in self._clients.values():
                client.close()
            self._clients = None

    async def _exchanges(
        self, logs: Sequence[ct.LogInfo], name: str, body: bytes
    ) -> list[tuple[ct.LogInfo, Answer | str]]:
        """`body` POSTed to `ct/v1/<name>` of every log in `logs` at once, their answers
        read in turn within `[ct] timeout`: per log, its answer or what went wrong.

        One coroutine for all the logs: each request is written before the first answer
        is read (on a kept connection with no await; a new connection is opened in a
        task of its own, so that a log slow to connect holds no other log up), then the
        answers are read in order, each by the same deadline. While one answer is
        awaited the others arrive in their connections' buffers, and one that is there
        by then is read even past the deadline, as a log that answered in time. No task
        per log and no `asyncio.wait` per certificate (docs/decisions.md, "CT's cost to
        the CA: instructions")."""
        deadline = asyncio.get_running_loop().time() + self.settings.timeout
        path = f"ct/v1/{name}"
        sent: list[Exchange | asyncio.Task[Exchange]] = []
        for info in logs:
            client = self._client(info)
            kept = client.send_kept(path, body)
            sent.append(
                kept if kept is not None else asyncio.ensure_future(client.send(path, body))
            )
        answers: list[tuple[ct.LogInfo, Answer | str]] = []
        try:
            for info, pending in zip(logs, sent, strict=True):
                answers.append((info, await self._answer(pending, deadline)))
        finally:
            for pending in sent[len(answers) :]:  # cancelled half way: nothing left open
                if isinstance(pending, Exchange):
                    pending.drop()
                else:
                    pending.cancel()
        return answers

    async def _answer(
        self, pending: Exchange | asyncio.Task[Exchange], deadline: float
    ) -> Answer | str:
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                exchange = pending if isinstance(pending, Exchange) else await pending
                return await exchange.answer(_MAX_ANSWER)
        except (*ANSWER_ERRORS, ValueError) as exc:
            if timeout.expired():
                return f"no answer within {self.settings.timeout:g} s"
            return _failure(exc)

    def _outcome(self, info: ct.LogInfo, got: Answer | str, entry: ct.SignedEntry) -> Outcome:
        """The log's SCT, verified against its key over `entry` (§3.2) before it counts."""
        if isinstance(got, str):
            return Outcome(info, None, got)
        try:
            sct = ct.SignedCertificateTimestamp.from_json(_document(got))
        except ValueError as exc:
            return Outcome(info, None, _failure(exc))
        if not ct.verify_sct(sct, entry, info.key, self._log_ids[id(info)]):
            return Outcome(info, None, "its SCT's signature does not verify")
        return Outcome(info, sct, None)

    async def scts_for(
        self,
        precert: x509.Certificate,
        chain: Sequence[x509.Certificate],
        precert_der: bytes | None = None,
    ) -> list[ct.SignedCertificateTimestamp]:
        """The verified SCTs to embed for `precert` (issued by chain[0]; `precert_der`
        its DER where the caller has it); CtUnavailable unless they meet the policy
        within the timeout."""
        shared = self._chain_for(chain)
        if precert_der is None:
            precert_der = precert.public_bytes(serialization.Encoding.DER)
        tbs = ct.strip_extensions(ct.tbs_certificate_der(precert_der))
        entry = ct.SignedEntry.precert(ct.PrecertEntry(shared.issuer_key_hash, tbs))
        logs = [info for info in self.logs if _covers(info, precert)]
        answers = await self._exchanges(logs, "add-pre-chain", shared.body(precert_der))
        outcomes = [self._outcome(info, got, entry) for info, got in answers]
        valid = [(o.info, o.sct) for o in outcomes if o.sct is not None]
        chosen = choose(valid, lifetime_of(precert), self.settings.required_scts)
        failed = [o for o in outcomes if o.failure is not None]
        for o in failed:
            log.warning(
                "CT log %s failed serial %x: %s", o.info.url, precert.serial_number, o.failure
            )
        if chosen is None:
            named = "; ".join(f"{o.info.description} ({o.info.url}): {o.failure}" for o in failed)
            skipped = len(self.logs) - len(logs)
            detail = (
                f"could not get enough SCTs for the certificate: {len(valid)} verified from "
                f"{len(logs)} log(s) that cover its notAfter"
                + (f" ({skipped} other(s) do not)" if skipped else "")
                + (f"; failed: {named}" if named else "")
            )
            raise CtUnavailable(detail)
        return [sct for _, sct in chosen]

    async def submit_final(
        self,
        cert: x509.Certificate,
        chain: Sequence[x509.Certificate],
        scts: Sequence[ct.SignedCertificateTimestamp],
    ) -> None:
        """add-chain of the final certificate to the logs whose SCTs it embeds (`scts`),
        best effort: a log that refuses it or does not answer is logged and forgotten."""
        if not self.settings.submit_final:
            return
        wanted = {sct.log_id for sct in scts}
        logs = [info for info in self.logs if self._log_ids[id(info)] in wanted]
        if not logs:
            return
        body = self._chain_for(chain).body(cert.public_bytes(serialization.Encoding.DER))
        for info, got in await self._exchanges(logs, "add-chain", body):
            if isinstance(got, Answer) and got.status == 200:
                continue  # taken (its SCT is not needed: the certificate embeds the others)
            log.info(
                "CT log %s did not take final serial %x: %s",
                info.url, cert.serial_number, got if isinstance(got, str) else _status(got),
            )  # fmt: skip


def _status(answer: Answer) -> str:
    shown = answer.body[:200].decode("utf-8", "replace").strip()
    return f"HTTP {answer.status} {shown}"


def _document(answer: Answer) -> dict[str, Any]:
    """A log's JSON answer (§4.1); ValueError for another status or anything but an
    object."""
    if answer.status != 200:
        raise ValueError(_status(answer))
    doc = json.loads(answer.body)
    if not isinstance(doc, dict):
        raise ValueError("answer is not a JSON object")
    return doc


def _failure(exc: BaseException) -> str:
    """What a log's failure is called in a problem and in the log: its kind, and what it
    says (a refused connection names the address)."""
    return f"{type(exc).__name__}: {exc}".strip(": ")
