"""dns-persist-01's issuer domain names as the client takes them from a CA (draft-ietf-
acme-dns-persist-02 §3.1): lowercase LDH labels of 1 to 63 octets, no trailing dot, 253
octets at most, 1 to 10 of them. Anything else is refused before a record is made, since
the names go into the TXT record as they are."""

from __future__ import annotations

import pytest

from acmekit.client.persist import PersistUnavailable, choose_issuer, make_record
from acmekit.protocol import dnspersist
from acmekit_testkit.acme_raw import new_key

GOOD = [
    "acmekit",  # one label, as a CA's default CAA identity
    "ca.example",
    "letsencrypt.org",
    "a-b.c0.example",
    "xn--bcher-kva.example",  # an A-label
    "a" * 63 + ".example",
    ("a" * 62 + ".") * 3 + "a" * 63,  # 252 octets
]
BAD = [
    "",
    "ca.example; policy=wildcard",
    "ca.example;accounturi=https://evil.test/x",
    "ca.example accounturi=x",
    " ca.example",
    "ca.example\t",
    "ca.example\r\nx",
    "ca.example\x00",
    "ca.example\x7f",
    "CA.example",
    "ca.example.",
    ".ca.example",
    "ca..example",
    "-ca.example",
    "ca-.example",
    "ca_x.example",
    "*.ca.example",
    "a" * 64 + ".example",
    ("a" * 62 + ".") * 4 + "test",  # 256 octets
    "bücher.example",
    "ca.example=x",
]


@pytest.mark.parametrize("name", GOOD)
def test_a_dns_name_is_an_issuer_domain_name(name: str) -> None:
    assert dnspersist.is_issuer_domain_name(name)
    assert choose_issuer([name]) == name
    # the record made from it parses back to the same issuer and nothing more
    record = dnspersist.render_record(name, "https://ca.test/h/sha-256/" + "A" * 43)
    assert dnspersist.parse_record(record).issuer == name


@pytest.mark.parametrize("name", BAD)
def test_anything_else_is_refused(name: str) -> None:
    assert not dnspersist.is_issuer_domain_name(name)
    with pytest.raises(PersistUnavailable, match="is not a lowercase DNS name"):
        choose_issuer([name])
    with pytest.raises(PersistUnavailable, match="is not a lowercase DNS name"):
        choose_issuer(["ca.test", name], "ca.test")  # even when another one is chosen


@pytest.mark.parametrize("name", [None, 5, ["ca.test"], b"ca.test"])
def test_a_name_that_is_not_a_string_is_refused(name: object) -> None:
    assert not dnspersist.is_issuer_domain_name(name)
    with pytest.raises(ValueError, match="is not a lowercase DNS name"):
        dnspersist.check_issuer_domain_names([name])


def test_the_error_shows_the_name_safely() -> None:
    with pytest.raises(PersistUnavailable) as err:
        choose_issuer(["ca.test\r\n; policy=wildcard" + "x" * 500])
    text = str(err.value)
    assert "\r" not in text and "\n" not in text and len(text) < 250
    assert "§3.1" in text


def test_one_to_ten_names() -> None:
    with pytest.raises(PersistUnavailable, match="1 to 10"):
        choose_issuer([])
    with pytest.raises(PersistUnavailable, match="1 to 10"):
        choose_issuer([f"ca{i}.test" for i in range(11)])
    names = [f"ca{i}.test" for i in range(10)]
    assert dnspersist.check_issuer_domain_names(names) == tuple(names)


def test_no_record_is_made_from_a_hostile_name() -> None:
    with pytest.raises(PersistUnavailable, match="issuer domain name"):
        make_record(
            "a.test", account_url="https://ca.test/acct/1", account_key=new_key(),
            account_hash_prefix="https://ca.test/h/", issuers=["ca.test; policy=wildcard"],
        )  # fmt: skip


def test_the_wanted_issuer_is_still_compared_in_any_case() -> None:
    # the operator's own choice (a flag) is normalized; only the CA's names are strict
    assert choose_issuer(["ca.test", "two.test"], "TWO.test.") == "two.test"
