"""dns-01 validation against a real DNS server on loopback (pebble-challtestsrv)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator

import dns.rcode
import pytest

from acmekit.protocol.challenges import dns01_txt_value
from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.validation import ValidationConfig, Validator
from acmekit_testkit.challtestsrv import ChalltestsrvHandle, running_challtestsrv
from acmekit_testkit.stubdns import stub_dns

TOKEN = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
KEY_AUTH = TOKEN + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
DIGEST = dns01_txt_value(KEY_AUTH)


@pytest.fixture(scope="module")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChalltestsrvHandle]:
    with running_challtestsrv(tmp_path_factory.mktemp("challtestsrv")) as handle:
        yield handle


@pytest.fixture
def validator(challtestsrv: ChalltestsrvHandle) -> Validator:
    return Validator(ValidationConfig(dns_resolver=("127.0.0.1", challtestsrv.dns_port)))


def post(handle: ChalltestsrvHandle, path: str, doc: dict[str, str]) -> None:
    req = urllib.request.Request(handle.management_url + path, data=json.dumps(doc).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


async def publish(handle: ChalltestsrvHandle, name: str, *values: str) -> None:
    """Serve TXT `values` at _acme-challenge.NAME (challtestsrv keeps one value per call)."""
    for value in values:
        await asyncio.to_thread(handle.set_txt, f"_acme-challenge.{name}.", value)


async def failure(validator: Validator, ident: Identifier) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        await validator.validate(ChallengeType.DNS_01, ident, TOKEN, KEY_AUTH)
    assert info.value.problem.identifier == ident.to_json()
    return info.value


def dns_id(name: str) -> Identifier:
    return Identifier(IdentifierType.DNS, name)


async def test_txt_set_succeeds(challtestsrv: ChalltestsrvHandle, validator: Validator) -> None:
    await publish(challtestsrv, "ok.d.test", DIGEST)
    await validator.validate(ChallengeType.DNS_01, dns_id("ok.d.test"), TOKEN, KEY_AUTH)


async def test_wildcard_validated_at_base_name(
    challtestsrv: ChalltestsrvHandle, validator: Validator
) -> None:
    await publish(challtestsrv, "wild.d.test", DIGEST)
    await validator.validate(ChallengeType.DNS_01, dns_id("*.wild.d.test"), TOKEN, KEY_AUTH)


async def test_one_right_value_among_two(
    challtestsrv: ChalltestsrvHandle, validator: Validator
) -> None:
    await publish(challtestsrv, "two.d.test", DIGEST, "some-other-order-value")
    await validator.validate(ChallengeType.DNS_01, dns_id("two.d.test"), TOKEN, KEY_AUTH)
    with pytest.raises(AcmeError) as info:
        await validator.validate(ChallengeType.DNS_01, dns_id("two.d.test"), TOKEN, "other")
    assert repr(DIGEST) in info.value.problem.detail
    assert "'some-other-order-value'" in info.value.problem.detail


async def test_cname_followed(challtestsrv: ChalltestsrvHandle, validator: Validator) -> None:
    await publish(challtestsrv, "target.d.test", DIGEST)
    doc = {"host": "_acme-challenge.alias.d.test.", "target": "_acme-challenge.target.d.test."}
    await asyncio.to_thread(post, challtestsrv, "/set-cname", doc)
    await validator.validate(ChallengeType.DNS_01, dns_id("alias.d.test"), TOKEN, KEY_AUTH)


async def test_wrong_txt_is_incorrect_response(
    challtestsrv: ChalltestsrvHandle, validator: Validator
) -> None:
    await publish(challtestsrv, "wrong.d.test", "not-the-digest")
    err = await failure(validator, dns_id("wrong.d.test"))
    assert err.problem.type == ProblemType.INCORRECT_RESPONSE
    assert err.problem.detail == (
        "Incorrect TXT record 'not-the-digest' found at _acme-challenge.wrong.d.test"
    )


async def test_no_txt_is_unauthorized(validator: Validator) -> None:
    err = await failure(validator, dns_id("none.d.test"))
    assert err.problem.type == ProblemType.UNAUTHORIZED
    assert err.problem.detail == "No TXT record found at _acme-challenge.none.d.test"


async def test_cleared_txt_no_longer_validates(
    challtestsrv: ChalltestsrvHandle, validator: Validator
) -> None:
    await publish(challtestsrv, "gone.d.test", DIGEST)
    await asyncio.to_thread(challtestsrv.clear_txt, "_acme-challenge.gone.d.test.")
    err = await failure(validator, dns_id("gone.d.test"))
    assert err.problem.type == ProblemType.UNAUTHORIZED


async def test_servfail_is_dns(challtestsrv: ChalltestsrvHandle, validator: Validator) -> None:
    doc = {"host": "_acme-challenge.fail.d.test."}
    await asyncio.to_thread(post, challtestsrv, "/set-servfail", doc)
    err = await failure(validator, dns_id("fail.d.test"))
    assert err.problem.type == ProblemType.DNS
    assert "SERVFAIL looking up TXT for _acme-challenge.fail.d.test" in err.problem.detail


async def test_nxdomain_is_dns() -> None:
    async with stub_dns(dns.rcode.NXDOMAIN) as resolver:
        validator = Validator(ValidationConfig(dns_resolver=resolver))
        err = await failure(validator, dns_id("nx.d.test"))
    assert err.problem.type == ProblemType.DNS
    assert "NXDOMAIN looking up TXT for _acme-challenge.nx.d.test" in err.problem.detail


async def test_silent_resolver_is_dns() -> None:
    async with stub_dns(None) as resolver:
        validator = Validator(ValidationConfig(dns_resolver=resolver, timeout=1.0))
        err = await failure(validator, dns_id("quiet.d.test"))
    assert err.problem.type == ProblemType.DNS
    assert "timed out looking up TXT for _acme-challenge.quiet.d.test" in err.problem.detail
