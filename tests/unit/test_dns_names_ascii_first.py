"""The DNS server reads a name (an API `host`, a CNAME target, a zone) as ASCII only.
dnspython maps text through IDNA (UTS #46) before it makes a name: a fullwidth e (U+FF45)
became 'e', the Kelvin sign (U+212A) 'k' and the long s (U+017F) 's', so one owner name
had several spellings, none of them the one on the wire (RFC 5890 §2.3.2.1: A-labels)."""

from __future__ import annotations

import dns.name
import pytest

from acmekit.dns.store import RecordType, make_rdata, parse_name
from acmekit.protocol.problems import AcmeError, ProblemType

SPELLINGS = ["\uff45xample.test", "\u212aexample.test", "\u017fexample.test", "stra\u00dfe.test"]


@pytest.mark.parametrize("text", SPELLINGS, ids=["fullwidth", "kelvin", "long-s", "sharp-s"])
def test_a_non_ascii_name_is_malformed(text: str) -> None:
    for read in (parse_name, lambda t: make_rdata(RecordType.CNAME, t)):
        with pytest.raises(AcmeError) as err:
            read(text)
        assert err.value.problem.type == ProblemType.MALFORMED
        assert "not ASCII" in err.value.problem.detail


def test_ascii_names_and_a_labels_read_as_before() -> None:
    assert parse_name(" WWW.Example.test ") == dns.name.from_text("www.example.test")
    assert parse_name("xn--strae-oqa.test").to_text() == "xn--strae-oqa.test."
