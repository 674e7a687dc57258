"""Whatever a newOrder names, the identifier rules answer with a problem or an identifier.

`protocol.messages` (syntax, wildcards) and `server.names` (public suffixes, special-use
names, A-labels, reserved addresses): arbitrary JSON, arbitrary text as dns and ip values,
and names built from label-like pieces (hyphens, `xn--`, `*`, digits, dots) so that every
rule is reached. What is accepted is normalised and accepted again unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from acmekit.protocol.messages import Identifier, parse_identifier, parse_identifiers
from acmekit.protocol.problems import AcmeError
from acmekit.server.names import NamePolicy, bad_alabel, special_use
from acmekit.server.validation.reserved import AddressPolicy

FAST = settings(max_examples=300, deadline=None)
POLICY = NamePolicy(["test"], AddressPolicy.allowing(("127.0.0.0/8",)))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
pieces = st.sampled_from(
    [
        "*",
        "xn--",
        "xn--a",
        "xn--ls8h",
        "xn--zz-",
        "-",
        "a",
        "0",
        "9",
        "com",
        "co.uk",
        "test",
        "localhost",
        "arpa",
        "github.io",
        "ä",
        "İ",
        "\u200d",
        "_",
        ".",
        "..",
        "1.2.3.4",
        "::1",
    ]
)
names = st.lists(pieces | st.text(max_size=8), min_size=1, max_size=8).map("".join) | st.lists(
    pieces | st.text(alphabet="abc-xn0*", max_size=70), min_size=1, max_size=5
).map(".".join)
addresses = st.ip_addresses().map(str) | st.text(alphabet="0123456789abcdef:.%/[]", max_size=45)


def accepted(doc: Any) -> Identifier | None:
    try:
        ident = parse_identifier(doc)
    except AcmeError as err:
        # The problem names the identifier as RFC 8555 §6.7.1 has it, not the client's JSON.
        named = err.problem.identifier
        assert named is None or (
            set(named) == {"type", "value"} and all(isinstance(v, str) for v in named.values())
        )
        return None
    assert parse_identifier(ident.to_json()) == ident
    with contextlib.suppress(AcmeError):
        POLICY.check([ident])
    return ident


@FAST
@given(json_values)
def test_any_json_identifier(doc: Any) -> None:
    accepted(doc)


@FAST
@given(names)
@example("*.xn--zz-.test")
@example("xn--.test")
@example("İ.test")
@example("a." * 126 + "a")
@example("*.*.test")
@example("1.2.3.4")
def test_any_dns_name(value: str) -> None:
    ident = accepted({"type": "dns", "value": value})
    if ident is not None:
        assert ident.value == ident.value.lower()
        assert "*" not in ident.base_name


@FAST
@given(
    addresses | st.fixed_dictionaries({"type": st.just("ip"), "value": addresses, "x": json_values})
)
@example("fe80::1%eth0")
@example({"type": "ip", "value": "x", "extra": [1]})
@example("::ffff:127.0.0.1")
def test_any_ip_value(value: str | dict[str, Any]) -> None:
    accepted(value if isinstance(value, dict) else {"type": "ip", "value": value})


@FAST
@given(
    st.lists(json_values | names.map(lambda v: {"type": "dns", "value": v}), max_size=5)
    | json_values
)
def test_any_identifier_list(docs: Any) -> None:
    try:
        idents = parse_identifiers(docs)
    except AcmeError:
        return
    assert list(idents) == sorted(set(idents))
    with contextlib.suppress(AcmeError):
        POLICY.check(idents)


@FAST
@given(names)
def test_name_rules_on_any_text(value: str) -> None:
    special_use(value, ["test"])
    bad_alabel(value)
