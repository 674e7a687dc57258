"""The pure rules of the validation authority: URLs, redirects, bodies, TXT values."""

from __future__ import annotations

import pytest
from yarl import URL

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.validation.dns01 import check_txt
from acmekit.server.validation.http01 import (
    Fetched,
    Http01Policy,
    Target,
    _request,
    challenge_url,
    check_answer,
    redirect_target,
)

POLICY = Http01Policy(port=5002, https_port=5443, max_body=4096, max_redirects=10, max_header=8192)
HERE = URL("http://a.test:5002/.well-known/acme-challenge/tok")


def test_challenge_urls() -> None:
    dns_id = Identifier(IdentifierType.DNS, "a.test")
    assert str(challenge_url(dns_id, "tok", 80)) == "http://a.test/.well-known/acme-challenge/tok"
    assert str(challenge_url(dns_id, "tok", 5002)) == str(HERE)
    v6 = Identifier(IdentifierType.IP, "2001:db8::1")
    assert str(challenge_url(v6, "t", 80)) == "http://[2001:db8::1]/.well-known/acme-challenge/t"


@pytest.mark.parametrize(
    ("kind", "value", "token"),
    [
        (IdentifierType.DNS, "a.test", "tok"),
        (IdentifierType.DNS, "v1.b-c.test", "Ab_-9z"),
        (IdentifierType.DNS, "xn--bcher-kva.example", ""),
        (IdentifierType.DNS, "A.Test", "tok"),  # not plain: yarl's URL at once
        (IdentifierType.DNS, "a_b.test", "tok"),
        (IdentifierType.DNS, "a.test", "t/../x?y=%41"),
        (IdentifierType.IP, "127.0.0.1", "tok"),
        (IdentifierType.IP, "2001:db8::1", "tok"),
    ],
)
@pytest.mark.parametrize("port", [80, 5002])
def test_a_challenge_target_is_its_url(
    kind: IdentifierType, value: str, token: str, port: int
) -> None:
    """The target built without yarl says and asks what the challenge URL would."""
    identifier = Identifier(kind, value)
    url = challenge_url(identifier, token, port)
    target = Target.challenge(identifier, token, port)
    assert str(target) == str(url)
    assert target.url == url
    assert _request(target) == _request(Target.of(url))
    assert (target.host, target.port, target.path) == (url.raw_host, url.port, url.raw_path_qs)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("http://b.test/x", "http://b.test/x"),
        ("https://b.test/x", "https://b.test/x"),
        ("https://b.test:5443/x", "https://b.test:5443/x"),
        ("http://b.test:5002/x", "http://b.test:5002/x"),
        ("/elsewhere", "http://a.test:5002/elsewhere"),
        ("other", "http://a.test:5002/.well-known/acme-challenge/other"),
    ],
)
def test_redirects_allowed(location: str, expected: str) -> None:
    assert str(redirect_target(HERE, location, POLICY)) == expected


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("http://b.test:8081/x", "may go only to port 80 or 5002"),
        ("https://b.test:8443/x", "may go only to port 443 or 5443"),
        ("http://b.test:443/x", "may go only to port 80 or 5002"),
        ("https://b.test:80/x", "may go only to port 443 or 5443"),
        ("ftp://b.test/x", "not http or https"),
        ("file:///etc/passwd", "not http or https"),
        (None, "redirect without Location"),
        ("", "redirect without Location"),
    ],
)
def test_redirects_refused(location: str | None, why: str) -> None:
    with pytest.raises(AcmeError) as info:
        redirect_target(HERE, location, POLICY)
    assert info.value.problem.type == ProblemType.CONNECTION
    assert why in info.value.problem.detail


def test_body_rules() -> None:
    check_answer(HERE, Fetched(200, body=b"tok.thumb\r\n \t"), "tok.thumb")
    cases = [
        (Fetched(404), ProblemType.UNAUTHORIZED, "HTTP 404"),
        (Fetched(200, body=b" tok.thumb"), ProblemType.INCORRECT_RESPONSE, "' tok.thumb'"),
        (Fetched(200, body=b"tok.thumbX"), ProblemType.INCORRECT_RESPONSE, "'tok.thumbX'"),
        (Fetched(200, body=b"x" * 11, truncated=True), ProblemType.INCORRECT_RESPONSE, "10 bytes"),
    ]
    for answer, ptype, shown in cases:
        with pytest.raises(AcmeError) as info:
            check_answer(HERE, answer, "tok.thumb")
        assert info.value.problem.type == ptype
        assert shown in info.value.problem.detail


def test_long_wrong_body_is_quoted_shortly() -> None:
    with pytest.raises(AcmeError) as info:
        check_answer(HERE, Fetched(200, body=b"<html>" + b"y" * 1000), "tok.thumb")
    assert len(info.value.problem.detail) < 200
    assert info.value.problem.detail.endswith("...)")


def test_txt_rules() -> None:
    check_txt("_acme-challenge.a.test", ("x", "right"), "right")
    with pytest.raises(AcmeError) as info:
        check_txt("_acme-challenge.a.test", (), "right")
    assert info.value.problem.type == ProblemType.UNAUTHORIZED
    with pytest.raises(AcmeError) as info:
        check_txt("_acme-challenge.a.test", ("a", "b", "c", "d", "e"), "right")
    assert info.value.problem.type == ProblemType.INCORRECT_RESPONSE
    assert info.value.problem.detail == (
        "Incorrect TXT record 'a', 'b', 'c' and 2 more found at _acme-challenge.a.test"
    )
