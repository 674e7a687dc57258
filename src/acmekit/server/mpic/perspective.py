"""A remote validation perspective (`acmekit server perspective`).

It runs the CA's own checks, `validation.Validator` (http-01, dns-01, tls-alpn-01, dns-account-01,
dns-persist-01) and
`caa.CaaChecker`, from where it stands and with its own resolver, for a CA that asks
over HTTPS with mutual TLS (`certs.py`): the TLS handshake requires a client certificate
chaining to the CA's root, and a request whose certificate is not the CA's MPIC client
certificate (its URI) is answered 403 before anything is looked up. The perspective
refuses the names and addresses the CA refuses (`names.NamePolicy`, with the same
`--allow-validation-network` / `--allow-special-name` exceptions) as a failed check.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from acmekit.protocol import jsontext
from acmekit.protocol.messages import IdentifierType
from acmekit.protocol.problems import AcmeError, Problem
from acmekit.server.caa import CaaChecker
from acmekit.server.mpic.certs import CLIENT_URI, PerspectiveFiles, peer_uris
from acmekit.server.mpic.quorum import Rir
from acmekit.server.mpic.wire import PATH, CorroborationRequest, PerspectiveAnswer
from acmekit.server.names import NamePolicy
from acmekit.server.validation import ValidationConfig, Validator
from acmekit.server.validation.reserved import AddressPolicy
from acmekit.webguard import ClientLimits, GuardedSite

log = logging.getLogger(__name__)

MAX_REQUEST = 16 * 1024


@dataclass(frozen=True)
class PerspectiveConfig:
    name: str
    rir: Rir
    files: PerspectiveFiles
    validation: ValidationConfig
    allowed_special_names: tuple[str, ...] = ()
    caa_timeout: float = 5.0
    # the handshake, each request head and one address's connections (acmekit.webguard)
    limits: ClientLimits = field(default_factory=ClientLimits)


def server_context(files: PerspectiveFiles) -> ssl.SSLContext:
    """TLS 1.2+ with the perspective's certificate; a client certificate from the CA's
    root is required in the handshake."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(str(files.chain), str(files.key))
    return ctx


class Perspective:
    def __init__(self, config: PerspectiveConfig) -> None:
        self.config = config
        self._validator = Validator(config.validation)
        reachable = AddressPolicy.allowing(config.validation.allow_networks)
        self._names = NamePolicy(config.allowed_special_names, reachable)
        self._caa: dict[tuple[str, ...], CaaChecker] = {}

    def _caa_checker(self, identities: tuple[str, ...]) -> CaaChecker:
        if identities not in self._caa:
            v = self.config.validation
            self._caa[identities] = CaaChecker(
                v.dns_resolver, identities, self.config.caa_timeout, dnssec=v.dnssec
            )
        return self._caa[identities]

    async def corroborate(self, req: CorroborationRequest) -> PerspectiveAnswer:
        """DCV first, then CAA (only after DCV passed, as the CA does); CAA alone when
        the CA rechecks it at finalize."""
        dcv: Problem | None = None
        caa: Problem | None = None
        try:
            self._names.check([req.identifier])
            if req.validate:
                # The account-bound challenges check what the CA checked (wire.py).
                await self._validator.validate(
                    req.type, req.identifier, req.token, req.key_authorization,
                    account=req.account,
                )  # fmt: skip
        except AcmeError as exc:
            dcv = exc.problem
        # CAA covers dns identifiers only (RFC 8659), as Policy.check_caa.
        is_dns = req.identifier.type == IdentifierType.DNS
        if dcv is None and req.caa_identities is not None and is_dns:
            try:
                await self._caa_checker(req.caa_identities).check(
                    req.identifier.value,
                    wildcard=req.wildcard,
                    account_uri=req.account_uri,
                    method=str(req.type),
                )
            except AcmeError as exc:
                caa = exc.problem
        answer = PerspectiveAnswer(self.config.name, str(self.config.rir), dcv, caa)
        outcome = (
            "pass" if answer.corroborates else f"fail ({answer.problem and answer.problem.type})"
        )
        log.info(
            "perspective %s: %s for %s: %s",
            self.config.name, req.type if req.validate else "CAA", req.identifier.value, outcome,
        )  # fmt: skip
        return answer

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST, middlewares=[_only_the_ca])
        app.router.add_post(PATH, self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            # The bounded loader: a deeply nested body is a 400, not a RecursionError's 500.
            doc = jsontext.loads(await request.read(), "corroboration request")
            req = CorroborationRequest.from_json(doc)
        except AcmeError as exc:
            return web.json_response(exc.problem.to_json(), status=400)
        answer = await self.corroborate(req)
        return web.json_response(answer.to_json())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _only_the_ca(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handshake proved the peer holds a certificate of the CA's hierarchy; only the
    CA's MPIC client certificate may ask (a subscriber's certificate chains there too)."""
    peercert: Any = request.transport.get_extra_info("peercert") if request.transport else None
    if not _is_the_ca(peercert):
        log.warning("refused a request from %s: not the CA's client certificate", request.remote)
        return web.json_response({"detail": "the CA's client certificate is required"}, status=403)
    return await handler(request)


def _is_the_ca(peercert: object) -> bool:
    return CLIENT_URI in peer_uris(peercert)


async def serve(
    config: PerspectiveConfig, host: str, port: int, announce: Callable[[str], None]
) -> None:
    """Serve until cancelled (SIGINT / SIGTERM end the process)."""
    runner = web.AppRunner(Perspective(config).app(), access_log=None)
    await runner.setup()
    sock = _bind(host, port)
    # A deadline for the TLS handshake and each request head, and a bound per client
    # address counted from TCP's accept: anyone may connect before the handshake asks
    # for the CA's certificate (acmekit.webguard).
    tls = server_context(config.files)
    # The CA's own connections are not counted once its certificate is proved: a
    # subscriber whose targets answer slowly makes the CA hold many, and the CA's
    # further requests (other subscribers') must not be refused for it.
    site = GuardedSite(
        runner, None, None, sock=sock, ssl_context=tls, limits=config.limits,
        uncounted=_is_the_ca,
    )  # fmt: skip
    await site.start()
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    announce(f"perspective {config.name} ({config.rir}): https://{shown}:{bound}")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:  # say which address, as asyncio's own bind errors do
        sock.close()
        raise OSError(exc.errno, f"{exc.strerror}: {(host, port)!r}") from None
    sock.listen(128)
    return sock


__all__ = ["Perspective", "PerspectiveConfig", "serve", "server_context"]
