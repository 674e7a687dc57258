"""The validation authority: real http-01, dns-01 and tls-alpn-01 checks.

`Validator.validate` returns when the challenge is met and otherwise raises `AcmeError`
carrying the problem (RFC 8555 §6.7) a client should see, with the identifier set:
`dns`, `connection`, `tls`, `incorrectResponse` or `unauthorized`. It raises nothing else.

Each validation runs under one deadline (`timeout` seconds); every step checks it and
reports a timeout as the problem of that step (a silent resolver is `dns`, a silent web
server `connection`). A Validator owns the costly shared pieces, made once: the DNS client
and the TLS contexts (tls-alpn-01, and https redirect targets of http-01). It holds no
TCP connection between validations; the DNS stub keeps one UDP socket for its next few
questions (`stub.py`), which closes when it has served them, so there is nothing to close.

http-01: `http01.py` (§8.3); dns-01: `dns01.py` (§8.4); tls-alpn-01: `tlsalpn01.py`
(RFC 8737); name resolution: `resolve.py`, over the lean UDP stub of `stub.py`; DNSSEC
through a validating resolver: `dnssec.py`; the addresses never connected to: `reserved.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from acmekit.protocol.messages import ChallengeType, Identifier
from acmekit.protocol.problems import AcmeError, ProblemType, problem
from acmekit.server.validation import resolve
from acmekit.server.validation.accountbound import (
    AccountContext,
    validate_dns_account01,
    validate_dns_persist01,
)
from acmekit.server.validation.dns01 import validate_dns01
from acmekit.server.validation.dnssec import DnssecMode
from acmekit.server.validation.http01 import Http01Policy, https_context, validate_http01
from acmekit.server.validation.reserved import AddressPolicy
from acmekit.server.validation.tlsalpn01 import tlsalpn01_context, validate_tlsalpn01

log = logging.getLogger(__name__)

# A last bound behind the per-step deadlines, for a step that failed to check its own.
_GRACE = 1.0
_FALLBACK = {
    ChallengeType.HTTP_01: ProblemType.CONNECTION,
    ChallengeType.DNS_01: ProblemType.DNS,
    ChallengeType.TLS_ALPN_01: ProblemType.CONNECTION,
    ChallengeType.DNS_PERSIST_01: ProblemType.DNS,
    ChallengeType.DNS_ACCOUNT_01: ProblemType.DNS,
}
# Validations that need the account (accountbound.py), dispatched by challenge type.
_ACCOUNT_BOUND = (ChallengeType.DNS_PERSIST_01, ChallengeType.DNS_ACCOUNT_01)
# The types compared on every validation, as globals: an enum class's attribute costs
# 75 ns to read (its metaclass's __getattr__ hook), a global 10.
_HTTP_01, _DNS_01, _TLS_ALPN_01 = (
    ChallengeType.HTTP_01,
    ChallengeType.DNS_01,
    ChallengeType.TLS_ALPN_01,
)


@dataclass(frozen=True)
class ValidationConfig:
    """Where and how long to look.

    `http01_port` and `tlsalpn01_port` are where challenges are fetched (80 and 443 in
    production; unprivileged ports on loopback, as with Pebble). Redirects during http-01
    may go to ports 80 and 443 and also to `http01_port` (http) and `https_port` (https).
    `max_body` bounds the http-01 body read (a key authorization is under 200 bytes),
    `max_header` the status line and headers before it. `allow_networks` (CIDR) are
    networks connected to even though reserved (`reserved.py`): loopback for tests.
    `dnssec`: how much the lookups check that the resolver validates DNSSEC (`dnssec.py`).
    """

    dns_resolver: tuple[str, int] | None = None
    http01_port: int = 80
    tlsalpn01_port: int = 443
    timeout: float = 10.0
    max_body: int = 4096
    max_header: int = 8192
    max_redirects: int = 10
    https_port: int = 443
    allow_networks: tuple[str, ...] = ()
    dnssec: DnssecMode = DnssecMode.OFF


class Validator:
    """Runs validations; safe for many concurrent `validate` calls on one event loop."""

    def __init__(self, config: ValidationConfig) -> None:
        self._config = config
        reachable = AddressPolicy.allowing(config.allow_networks)
        self._dns = resolve.DnsClient(
            config.dns_resolver, config.timeout, reachable, dnssec=config.dnssec
        )
        self._tls = tlsalpn01_context()
        self._http = Http01Policy(
            port=config.http01_port,
            https_port=config.https_port,
            max_body=config.max_body,
            max_header=config.max_header,
            max_redirects=config.max_redirects,
        )
        self._https = https_context()

    async def validate(
        self,
        challenge_type: ChallengeType,
        identifier: Identifier,
        token: str,
        key_authorization: str,
        *,
        account: AccountContext | None = None,
    ) -> int | None:
        """Return if `identifier` meets the challenge, else raise AcmeError (only that).

        dns-persist-01 and dns-account-01 need `account`; dns-persist-01 returns the
        record's persistUntil (UNIX seconds, or None), which the authorization may not
        outlive (draft-ietf-acme-dns-persist-02 §4.1 item 5)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self._config.timeout
        saved = resolve.deadline.set(end)
        lookups: set[str] = set()
        saved_lookups = resolve.in_flight.set(lookups)
        until: int | None = None
        try:
            with resolve.bound_at(end + _GRACE, loop):
                if challenge_type in _ACCOUNT_BOUND:
                    until = await self._run_bound(
                        challenge_type, identifier, key_authorization, account, end
                    )
                else:
                    await self._run(challenge_type, identifier, token, key_authorization, end)
        except AcmeError as err:
            raise self._failed(challenge_type, identifier, err) from None
        except TimeoutError:
            raise self._failed(challenge_type, identifier, _late(challenge_type, lookups)) from None
        except Exception as exc:
            log.warning("%s for %s failed: %s", challenge_type, identifier.value, type(exc))
            ptype = _FALLBACK.get(challenge_type, ProblemType.CONNECTION)
            odd = problem(ptype, f"validation failed: {type(exc).__name__}")
            raise self._failed(challenge_type, identifier, odd) from None
        finally:
            resolve.deadline.reset(saved)
            resolve.in_flight.reset(saved_lookups)
        log.debug("%s for %s: valid", challenge_type, identifier.value)
        return until

    async def _run_bound(
        self,
        ctype: ChallengeType,
        identifier: Identifier,
        key_auth: str,
        account: AccountContext | None,
        end: float,
    ) -> int | None:
        if account is None:
            raise problem(ProblemType.SERVER_INTERNAL, f"{ctype} needs the account")
        if ctype == ChallengeType.DNS_ACCOUNT_01:
            await validate_dns_account01(self._dns, identifier, key_auth, account, end)
            return None
        return await validate_dns_persist01(self._dns, identifier, account, end)

    def _run(
        self, ctype: ChallengeType, identifier: Identifier, token: str, key_auth: str, end: float
    ) -> Awaitable[None]:
        """The validation of `ctype`, to be awaited: the validator's own coroutine, not
        one of this method's around it (every coroutine between the task and its waits
        is passed through at each wake-up; see `_fetch_bounded`)."""
        if ctype == _DNS_01:
            return validate_dns01(self._dns, identifier, key_auth, end)
        if ctype != _HTTP_01 and ctype != _TLS_ALPN_01:
            raise problem(ProblemType.MALFORMED, f"unsupported challenge type {ctype!r}")
        if identifier.is_wildcard:
            raise problem(
                ProblemType.MALFORMED,
                f"{ctype} cannot validate a wildcard identifier (RFC 8555 §7.1.3)",
            )
        if ctype == _HTTP_01:
            return validate_http01(
                self._dns, self._https, self._http, identifier, token, key_auth, end
            )
        port = self._config.tlsalpn01_port
        return validate_tlsalpn01(self._dns, self._tls, port, identifier, key_auth, end)

    @staticmethod
    def _failed(ctype: ChallengeType, identifier: Identifier, err: AcmeError) -> AcmeError:
        log.debug("%s for %s: %s", ctype, identifier.value, err.problem.type)
        return AcmeError(dataclasses.replace(err.problem, identifier=identifier.to_json()))


def _late(challenge_type: ChallengeType, lookups: set[str]) -> AcmeError:
    """The problem when the last bound fires: a DNS lookup still in flight is a dns
    problem whatever the challenge (RFC 8555 §6.7), as its own timeout would have said."""
    if lookups:
        return resolve.dns_problem(f"query timed out {min(lookups)}")
    return problem(_FALLBACK.get(challenge_type, ProblemType.CONNECTION), "timeout")


__all__ = ["AccountContext", "ValidationConfig", "Validator"]
