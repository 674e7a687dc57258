"""The account context of dns-persist-01 / dns-account-01 in a corroboration request:
the round trip, and the perspective's strict reading of it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError
from acmekit.server.mpic.wire import MAX_THUMBPRINTS, CorroborationRequest
from acmekit.server.validation import AccountContext

ACCOUNT = AccountContext(
    account_url="https://ca.test/acme/acct/7",
    thumbprints=("A" * 43, "b_-" + "c" * 40),
    issuer_domain_names=("ca.persist.test", "acmekit"),
    account_hash_prefix="https://ca.test/acme/account-hash/",
    wildcard=True,
    now=1_767_000_000,
)


def request(ctype: ChallengeType = ChallengeType.DNS_PERSIST_01) -> CorroborationRequest:
    return CorroborationRequest(
        type=ctype,
        identifier=Identifier(IdentifierType.DNS, "a.persist.test"),
        wildcard=True,
        token="",
        key_authorization="",
        account_uri=ACCOUNT.account_url,
        caa_identities=("acmekit",),
        account=ACCOUNT,
    )


@pytest.mark.parametrize("ctype", [ChallengeType.DNS_PERSIST_01, ChallengeType.DNS_ACCOUNT_01])
def test_round_trip_through_json_text(ctype: ChallengeType) -> None:
    req = request(ctype)
    doc = json.loads(json.dumps(req.to_json()))
    assert doc["account"]["thumbprints"] == list(ACCOUNT.thumbprints)
    assert doc["account"]["issuerDomainNames"] == ["ca.persist.test", "acmekit"]
    assert CorroborationRequest.from_json(doc) == req


def test_other_types_carry_none_and_refuse_one() -> None:
    req = CorroborationRequest(
        type=ChallengeType.DNS_01,
        identifier=Identifier(IdentifierType.DNS, "a.test"),
        wildcard=False,
        token="t",
        key_authorization="t.k",
        account_uri="https://ca.test/acme/acct/1",
        caa_identities=None,
    )
    doc = req.to_json()
    assert doc["account"] is None
    assert CorroborationRequest.from_json(doc) == req
    doc["account"] = request().to_json()["account"]
    with pytest.raises(AcmeError, match="account must be null"):
        CorroborationRequest.from_json(doc)


def test_caa_recheck_needs_no_account() -> None:
    doc = request().to_json()
    doc["validate"], doc["account"] = False, None
    assert CorroborationRequest.from_json(doc).account is None


def test_only_the_cas_most_recent_thumbprints_are_sent() -> None:
    many = tuple(f"{i:043d}" for i in range(MAX_THUMBPRINTS + 5))
    req = CorroborationRequest(
        **{
            **request().__dict__,
            "account": AccountContext(**{**ACCOUNT.__dict__, "thumbprints": many}),
        }
    )
    back = CorroborationRequest.from_json(req.to_json())
    assert back.account is not None and back.account.thumbprints == many[:MAX_THUMBPRINTS]


def _with(change: dict[str, Any], top: dict[str, Any] | None = None) -> dict[str, Any]:
    doc = request().to_json()
    doc["account"].update(change)
    doc.update(top or {})
    return doc


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        (_with({}, {"account": None}), "account must be a JSON object"),
        (_with({}, {"account": []}), "account must be a JSON object"),
        (_with({"extra": 1}), "exactly the members"),
        (_with({"url": 7}), "account.url"),
        (_with({"url": "ftp://ca.test/acct/7"}), "account.url"),
        (_with({"url": "https://ca.test/a b"}), "account.url"),
        (_with({"url": "https://ca.test/" + "x" * 1100}), "account.url"),
        (_with({"url": "https://ca.test/acme/acct/8"}), "must equal accountUri"),
        (_with({"accountHashPrefix": None}), "account.accountHashPrefix"),
        (_with({"thumbprints": []}), "account.thumbprints"),
        (_with({"thumbprints": "A" * 43}), "account.thumbprints"),
        (_with({"thumbprints": ["A" * 42]}), "account.thumbprints"),
        (_with({"thumbprints": ["A" * 42 + "="]}), "account.thumbprints"),
        (_with({"thumbprints": ["A" * 43] * (MAX_THUMBPRINTS + 1)}), "account.thumbprints"),
        (_with({"issuerDomainNames": []}), "account.issuerDomainNames"),
        (_with({"issuerDomainNames": ["CA.test"]}), "account.issuerDomainNames"),
        (_with({"issuerDomainNames": ["ca.test."]}), "account.issuerDomainNames"),
        (_with({"issuerDomainNames": ["ca;test"]}), "account.issuerDomainNames"),
        (_with({"issuerDomainNames": [f"c{i}.test" for i in range(11)]}), "issuerDomainNames"),
        (_with({"issuerDomainNames": [("a" * 60 + ".") * 5 + "test"]}), "issuerDomainNames"),
        (_with({"wildcard": 1}), "account.wildcard must be a boolean"),
        (_with({"wildcard": False}), "must equal wildcard"),
        (_with({"now": True}), "account.now"),
        (_with({"now": 1.5}), "account.now"),
        (_with({"now": "1767000000"}), "account.now"),
        (_with({"now": -1}), "account.now"),
        (_with({"now": 2**63}), "account.now"),
    ],
)
def test_a_bad_account_context_is_malformed(doc: dict[str, Any], says: str) -> None:
    with pytest.raises(AcmeError, match=says) as err:
        CorroborationRequest.from_json(doc)
    assert err.value.problem.type.endswith(":malformed")
