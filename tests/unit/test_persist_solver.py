"""The client's dns-persist-01 record making and its solver, without a network."""

from __future__ import annotations

import pytest

from acmekit.client.persist import PersistRecordText, PersistUnavailable, choose_issuer, make_record
from acmekit.client.resources import Challenge
from acmekit.client.solvers.accountbound import AccountInfo, DnsPersistSolver
from acmekit.protocol import dnspersist
from acmekit.protocol.jose import thumbprint
from acmekit.protocol.messages import ChallengeStatus, Identifier, IdentifierType
from acmekit_testkit.acme_raw import new_key

ACCT = "https://ca.example/acct/123"
PREFIX = "https://ca.example/account-hash/"


def test_record_matches_what_the_ca_accepts() -> None:
    key = new_key()
    rec = make_record(
        "*.Example.COM", account_url=ACCT, account_key=key, account_hash_prefix=PREFIX,
        issuers=["authority.example"], persist_until=1721952000,
    )  # fmt: skip
    assert rec.name == "_validation-persist.example.com" and rec.wildcard
    parsed = dnspersist.parse_record(rec.value)
    assert parsed.issuer == "authority.example" and parsed.wildcard
    expected = dnspersist.hashed_account_uri(PREFIX, ACCT, thumbprint(key), "example.com")
    assert parsed.account_uri == expected
    assert rec.zone_line().startswith('_validation-persist.example.com. 3600 IN TXT "')


def test_what_the_ca_must_offer() -> None:
    with pytest.raises(PersistUnavailable, match="accountHashPrefix"):
        make_record("a.test", account_url=ACCT, account_key=new_key(),
                    account_hash_prefix=None, issuers=["ca.test"])  # fmt: skip
    with pytest.raises(PersistUnavailable, match="1 to 10"):
        choose_issuer([])
    with pytest.raises(PersistUnavailable, match="1 to 10"):
        choose_issuer([f"ca{i}.test" for i in range(11)])
    with pytest.raises(PersistUnavailable, match="does not offer"):
        choose_issuer(["ca.test"], "other.test")
    assert choose_issuer(["ca.test", "two.test"], "TWO.test") == "two.test"


async def test_solver_announces_once_per_name_and_never_removes() -> None:
    shown: list[PersistRecordText] = []

    async def announce(record: PersistRecordText) -> None:
        shown.append(record)

    solver = DnsPersistSolver(announce=announce)
    solver.for_account(AccountInfo(ACCT, new_key(), PREFIX, ("ca.test",)))
    challenge = Challenge(
        url="https://ca.test/chall/1", type="dns-persist-01", status=ChallengeStatus.PENDING,
        raw={"issuerDomainNames": ["ca.test"]},
    )  # fmt: skip
    apex = Identifier(IdentifierType.DNS, "site.test")
    wild = Identifier(IdentifierType.DNS, "*.site.test")
    await solver.present(apex, challenge, "")
    await solver.present(wild, challenge, "")
    await solver.present(wild, challenge, "")
    await solver.wait()
    assert [r.wildcard for r in shown] == [True]
    await solver.cleanup(wild, challenge, "")
    assert solver.records == shown
