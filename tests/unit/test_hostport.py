"""One HOST:PORT parser for every command and setting."""

from __future__ import annotations

import pytest

from acmekit.hostport import parse_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8053", ("127.0.0.1", 8053)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:443", ("::1", 443)),
        (" ca.example:14000 ", ("ca.example", 14000)),
    ],
)
def test_good(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


def test_default_port() -> None:
    assert parse_host_port("example.test", 443) == ("example.test", 443)
    assert parse_host_port("[::1]", 443) == ("::1", 443)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("127.0.0.1", "port is missing"),
        (":53", "host is missing"),
        ("host:abc", "'abc' is not a port"),
        ("host:99999", "'99999' is not a port"),
        ("::1:53", "IPv6 address in brackets"),
        ("[::1", "[IPV6]:PORT"),
        ("[::1]x53", "[IPV6]:PORT"),
    ],
)
def test_bad_values_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match="expected") as err:
        parse_host_port(text)
    assert words in str(err.value)
