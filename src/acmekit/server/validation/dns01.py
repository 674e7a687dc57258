"""dns-01 validation (RFC 8555 §8.4).

The validation authority asks the configured resolver for TXT records at
`_acme-challenge.NAME` (a wildcard's base name, §7.1.3), following CNAMEs, and succeeds if
any record equals base64url(SHA-256(key authorization)). Following Let's Encrypt: a name
that exists without TXT records is `unauthorized` ("No TXT record found"), records that are
all wrong are `incorrectResponse`, and NXDOMAIN, SERVFAIL or silence are `dns`.
"""

from __future__ import annotations

import hmac

import dns.rdatatype

from acmekit.protocol.challenges import dns01_record_name, dns01_txt_value
from acmekit.protocol.messages import Identifier
from acmekit.protocol.problems import ProblemType, problem
from acmekit.server.validation.resolve import DnsClient

_SHOWN = 3  # wrong TXT values quoted back in a problem's detail


async def validate_dns01(
    dns_client: DnsClient, identifier: Identifier, key_authorization: str, deadline: float
) -> None:
    """The TXT lookup has no timer of its own (one cost about 3 µs of CPU): each
    question's wait is bounded by `deadline` (`resolve.deadline`, which the Validator
    sets to it; at most 50 ms past it once that close), and the Validator's last bound
    reports a lookup still in flight as this same dns problem ("query timed out looking
    up TXT for ...")."""
    name = dns01_record_name(identifier.base_name)
    found = await dns_client.query(name, dns.rdatatype.TXT)
    check_txt(name, found.values, dns01_txt_value(key_authorization))


def check_txt(name: str, values: tuple[str, ...], expected: str) -> None:
    """Pass if any TXT value is the expected digest, else say what was found."""
    if not values:
        raise problem(ProblemType.UNAUTHORIZED, f"No TXT record found at {name}")
    if any(hmac.compare_digest(v.encode(), expected.encode()) for v in values):
        return
    shown = ", ".join(repr(v[:100]) for v in values[:_SHOWN])
    more = f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else ""
    raise problem(
        ProblemType.INCORRECT_RESPONSE, f"Incorrect TXT record {shown}{more} found at {name}"
    )
