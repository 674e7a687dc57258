"""DNSSEC settings of the validation authority: the modes, what a question asks for, what an
answer's AD bit and Extended DNS Errors (RFC 8914) become."""

from __future__ import annotations

from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.resolver
import dns.rrset
import pytest

from acmekit.server.config import load_config
from acmekit.server.validation.dnssec import (
    DnssecMode,
    authenticated,
    configure_resolver,
    extended_errors,
)
from acmekit.server.validation.stub import _question, _read, decode_txt

QNAME = "_acme-challenge.a.secure.test."
_QUERY = dns.message.make_query(QNAME, "TXT")


def _servfail(*options: dns.edns.EDEOption) -> dns.message.Message:
    query = dns.message.make_query(QNAME, "TXT", use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.SERVFAIL)
    response.use_edns(0, 0, 1232, options=list(options))
    return response


def test_extended_errors_are_quoted_once_each() -> None:
    bogus = dns.edns.EDEOption(dns.edns.EDECode.DNSSEC_BOGUS, "signature crypto failed")
    missing = dns.edns.EDEOption(dns.edns.EDECode.DNSKEY_MISSING)
    response = _servfail(bogus, missing)
    errors = [("127.0.0.1", False, 53, "SERVFAIL", response)] * 2
    exc = dns.resolver.NoNameservers(request=_QUERY, errors=errors)
    assert extended_errors(exc) == (" (DNSSEC Bogus: signature crypto failed; DNSKEY Missing)")


def test_a_servfail_without_extended_errors_adds_nothing() -> None:
    errors = [("127.0.0.1", False, 53, "SERVFAIL", _servfail())]
    assert extended_errors(dns.resolver.NoNameservers(request=_QUERY, errors=errors)) == ""
    assert extended_errors(dns.resolver.NoNameservers(request=_QUERY, errors=[])) == ""


def test_off_leaves_questions_as_they_were() -> None:
    plain = dns.resolver.Resolver(configure=False)
    configure_resolver(plain, DnssecMode.OFF)
    assert plain.flags is None and plain.edns == -1


def test_require_asks_for_ad_with_edns_and_never_sets_cd() -> None:
    resolver = dns.resolver.Resolver(configure=False)
    configure_resolver(resolver, DnssecMode.REQUIRE_VALIDATING_RESOLVER)
    assert resolver.flags == dns.flags.RD | dns.flags.AD
    assert resolver.edns == 0 and resolver.payload == 1232
    assert resolver.flags is not None and not resolver.flags & dns.flags.CD


def _txt_answer(ad: bool) -> bytes:
    response = dns.message.make_response(dns.message.make_query(QNAME, "TXT"))
    response.answer.append(dns.rrset.from_text(QNAME, 1, "IN", "TXT", '"digest"'))
    if ad:
        response.flags |= dns.flags.AD
    return response.to_wire()


@pytest.mark.parametrize("ad", [True, False])
def test_the_stub_reads_the_ad_bit(ad: bool) -> None:
    reply = _read(_txt_answer(ad), _question(QNAME, 16), QNAME, 16, decode_txt)
    assert reply.values == ("digest",)
    assert reply.authenticated is ad
    assert authenticated(dns.message.from_wire(_txt_answer(ad))) is ad


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ca.toml"
    path.write_text(text)
    return path


def test_dnssec_is_off_by_default() -> None:
    config = load_config(None, {})
    assert config.validation_config().dnssec is DnssecMode.OFF
    assert config.validation.dnssec_probe == "."


def test_dnssec_mode_and_probe_load(tmp_path: Path) -> None:
    text = '[validation]\ndnssec = "require-validating-resolver"\ndnssec_probe = "example."\n'
    config = load_config(_toml(tmp_path, text), {"allow_networks": ("127.0.0.0/8",)})
    assert config.validation_config().dnssec is DnssecMode.REQUIRE_VALIDATING_RESOLVER
    assert config.validation.dnssec_probe == "example."
    assert config.validation.allow_networks == ("127.0.0.0/8",)


def test_an_unknown_dnssec_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"validation\.dnssec 'on'"):
        load_config(_toml(tmp_path, '[validation]\ndnssec = "on"\n'), {})
