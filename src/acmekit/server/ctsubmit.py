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
- `submit_final` posts the final certificate (`add-chain`), best effort: a log that
  refuses it or is down is logged and forgotten; the embedded SCTs already prove the
  precertificate's inclusion promise.

Outbound HTTP with aiohttp, one session per CA process, made on first use in the event
loop and closed with the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acmekit.protocol import ct
from acmekit.protocol.ctpolicy import choose, embedded_scts, lifetime_of
from acmekit.protocol.problems import AcmeError, Problem, ProblemType
from acmekit.server.config import CtSettings

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


def _chain_body(certs: Sequence[x509.Certificate]) -> bytes:
    """The add-(pre-)chain body, serialized once for every log it goes to."""
    chain = [ct.b64(c.public_bytes(serialization.Encoding.DER)) for c in certs]
    return json.dumps({"chain": chain}).encode()


_JSON = {"Content-Type": "application/json"}


def _endpoint(info: ct.LogInfo, name: str) -> str:
    base = info.url if info.url.endswith("/") else info.url + "/"
    return f"{base}ct/v1/{name}"


@dataclass(frozen=True)
class Outcome:
    info: ct.LogInfo
    sct: ct.SignedCertificateTimestamp | None
    failure: str | None


async def _body(resp: aiohttp.ClientResponse) -> bytes:
    """The answer's body, read to its end but never past _MAX_ANSWER bytes."""
    buf = bytearray()
    while chunk := await resp.content.read(_MAX_ANSWER + 1 - len(buf)):
        buf += chunk
        if len(buf) > _MAX_ANSWER:
            raise ValueError(f"answer larger than {_MAX_ANSWER} bytes")
    return bytes(buf)


class CtSubmitter:
    def __init__(self, settings: CtSettings, logs: Sequence[ct.LogInfo]) -> None:
        self.settings = settings
        self.logs = tuple(logs)
        self._log_ids = {id(info): info.log_id for info in self.logs}  # hashed once
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def load(cls, settings: CtSettings) -> CtSubmitter | None:
        """The submitter for `[ct]`, or None when CT is off."""
        if not settings.enabled:
            return None
        return cls(settings, load_log_lists(settings.log_lists))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Loopback or configured log URLs only: no proxy from the environment. An
            # https:// log is verified against `ca_bundle` (or the system's roots).
            tls = ssl.create_default_context(cafile=self.settings.ca_bundle)
            connector = aiohttp.TCPConnector(ssl=tls)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, info: ct.LogInfo, name: str, body: bytes) -> dict[str, Any]:
        async with self._client().post(_endpoint(info, name), data=body, headers=_JSON) as resp:
            text = await _body(resp)
            if resp.status != 200:
                shown = text[:200].decode("utf-8", "replace").strip()
                raise ValueError(f"HTTP {resp.status} {shown}")
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError("answer is not a JSON object")
            return doc

    async def _one(self, info: ct.LogInfo, body: bytes, entry: ct.SignedEntry) -> Outcome:
        try:
            sct = ct.SignedCertificateTimestamp.from_json(
                await self._post(info, "add-pre-chain", body)
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return Outcome(info, None, f"{type(exc).__name__}: {exc}".strip(": "))
        if not ct.verify_sct(sct, entry, info.key, self._log_ids[id(info)]):
            return Outcome(info, None, "its SCT's signature does not verify")
        return Outcome(info, sct, None)

    async def scts_for(
        self, precert: x509.Certificate, chain: Sequence[x509.Certificate]
    ) -> list[ct.SignedCertificateTimestamp]:
        """The verified SCTs to embed for `precert` (issued by chain[0]); CtUnavailable
        unless they meet the policy within the timeout."""
        issuer = chain[0]
        entry = ct.SignedEntry.precert(ct.precert_entry(precert, issuer))
        body = _chain_body([precert, *chain])
        logs = [info for info in self.logs if _covers(info, precert)]
        tasks = {asyncio.ensure_future(self._one(info, body, entry)): info for info in logs}
        outcomes: list[Outcome] = []
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=self.settings.timeout)
            for task in pending:
                task.cancel()
                outcomes.append(
                    Outcome(tasks[task], None, f"no answer within {self.settings.timeout:g} s")
                )
            outcomes.extend(task.result() for task in done)
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

    async def submit_final(self, cert: x509.Certificate, chain: Sequence[x509.Certificate]) -> None:
        """add-chain of the final certificate to the logs that gave SCTs, best effort."""
        if not self.settings.submit_final:
            return
        wanted = {sct.log_id for sct in embedded_scts(cert)}
        body = _chain_body([cert, *chain])

        async def one(info: ct.LogInfo) -> None:
            try:
                await self._post(info, "add-chain", body)
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                log.info(
                    "CT log %s did not take final serial %x: %s", info.url, cert.serial_number, exc
                )

        logs = [info for info in self.logs if info.log_id in wanted]
        if logs:
            tasks = [asyncio.ensure_future(one(info)) for info in logs]
            _, pending = await asyncio.wait(tasks, timeout=self.settings.timeout)
            for task in pending:
                task.cancel()
