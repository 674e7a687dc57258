"""An http-01 redirect's host is ASCII (RFC 3986 §3.2.2). The Location is read as Latin-1
and the URL parser maps a non-ASCII host through IDNA (UTS #46): the octet 0xAA ('ª')
made "\u00aaexample.test" the ASCII name aexample.test, and 'x²' made x2, so the CA
fetched from a host the answer did not name."""

from __future__ import annotations

import pytest
from yarl import URL

from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.validation.http01 import Http01Policy, redirect_target

POLICY = Http01Policy(port=5002, https_port=5443, max_body=4096, max_redirects=10, max_header=8192)
HERE = URL("http://a.test:5002/.well-known/acme-challenge/tok")


@pytest.mark.parametrize(
    "location",
    [
        "http://\u00aaexample.test/x",
        "http://x\u00b2.test/x",
        "https://\u00c9x.test/x",
        "//\u00aa.test/",
    ],
    ids=["ordinal-a", "superscript-two", "latin-capital", "scheme-relative"],
)
def test_a_redirect_to_a_non_ascii_host_is_refused(location: str) -> None:
    with pytest.raises(AcmeError) as err:
        redirect_target(HERE, location, POLICY)
    assert err.value.problem.type == ProblemType.CONNECTION
    assert "invalid redirect to" in err.value.problem.detail


def test_a_redirect_to_an_ascii_host_or_a_path_is_followed() -> None:
    assert str(redirect_target(HERE, "http://B.test/x", POLICY)) == "http://b.test/x"
    assert str(redirect_target(HERE, "/caf\u00e9", POLICY)) == "http://a.test:5002/caf%C3%A9"
