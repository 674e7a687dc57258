"""Identifiers the CA refuses whoever proves control: public suffixes, special-use names,
invalid A-labels, reserved IP addresses (acmekit.server.names)."""

from __future__ import annotations

import pytest

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.names import NamePolicy, bad_alabel, special_use
from acmekit.server.validation.reserved import AddressPolicy

STRICT = NamePolicy((), AddressPolicy())


def dns(value: str) -> Identifier:
    return Identifier(IdentifierType.DNS, value)


def refused(policy: NamePolicy, ident: Identifier) -> str:
    with pytest.raises(AcmeError) as info:
        policy.check([ident])
    problem = info.value.problem
    assert problem.type == ProblemType.REJECTED_IDENTIFIER
    assert problem.identifier == ident.to_json()
    return problem.detail


@pytest.mark.parametrize("name", ["co.uk", "*.co.uk", "com", "*.com.au", "*.uk"])
def test_public_suffixes_are_refused(name: str) -> None:
    assert "Public Suffix List" in refused(STRICT, dns(name))


@pytest.mark.parametrize("name", ["foo.co.uk", "*.foo.co.uk", "github.io", "*.example.co.jp"])
def test_names_under_a_public_suffix_pass(name: str) -> None:
    STRICT.check([dns(name)])


@pytest.mark.parametrize(
    ("name", "special"),
    [
        ("foo.localhost", "localhost"),
        ("shop.test", "test"),
        ("*.shop.test", "test"),
        ("www.example.com", "example.com"),
        ("printer.local", "local"),
        ("x.onion", "onion"),
        ("router.home.arpa", "arpa"),
        ("db.internal", "internal"),
        ("a.invalid", "invalid"),
    ],
)
def test_special_use_names_are_refused(name: str, special: str) -> None:
    assert f"{special!r} is a special-use domain name" in refused(STRICT, dns(name))


def test_allowed_special_names_cover_their_subtree_only() -> None:
    policy = NamePolicy(["test", "example.com"], AddressPolicy())
    policy.check([dns("www.demo.acmekit.test"), dns("*.x.test"), dns("a.example.com")])
    refused(policy, dns("foo.localhost"))
    refused(policy, dns("x.example"))
    assert special_use("a.example.com", ["example"]) == "example.com"


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("xn--bcher-kva.example.org", None),
        ("xn--80ak6aa92e.com", None),
        ("xn--zz.com", "xn--zz"),
        ("xn--a.com", "xn--a"),
        ("www.xn--ls8h.la", "xn--ls8h"),  # an emoji: valid in IDNA 2003, not in 2008
        ("xn--bcher-kva.xn--.com", "xn--"),
    ],
)
def test_a_labels_must_round_trip_under_idna_2008(name: str, label: str | None) -> None:
    assert bad_alabel(name) == label


def test_an_invalid_a_label_is_refused() -> None:
    assert "'xn--zz' is not a valid IDNA 2008 A-label" in refused(STRICT, dns("xn--zz.com"))


def test_a_valid_a_label_passes() -> None:
    STRICT.check([dns("xn--bcher-kva.de")])


@pytest.mark.parametrize("address", ["10.0.0.1", "127.0.0.1", "169.254.169.254", "fd00::1"])
def test_reserved_ip_identifiers_are_refused(address: str) -> None:
    detail = refused(STRICT, Identifier(IdentifierType.IP, address))
    assert "is a reserved address" in detail


def test_an_allowed_network_may_be_an_ip_identifier() -> None:
    policy = NamePolicy((), AddressPolicy.allowing(["127.0.0.0/8"]))
    policy.check([Identifier(IdentifierType.IP, "127.0.0.1")])
    policy.check([Identifier(IdentifierType.IP, "93.184.215.14")])
    refused(policy, Identifier(IdentifierType.IP, "::1"))
