"""Numbers read from text take ASCII digits only. str.isdigit is True for other digits:
for '²' (int() then raises ValueError, past the check meant to report it) and for
'١٢٠' (int() reads 120: a value not written as a number in any protocol or option here).
Likewise a regex's \\d and IGNORECASE in Unicode mode (U+017F for 's', U+212A for 'k')."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from acmekit.cli.client import persist_record
from acmekit.cli.fleet import parse_ca
from acmekit.client.renewal import parse_interval
from acmekit.client.retry import parse_retry_after
from acmekit.hostport import parse_host_port
from acmekit.server.ctclient import HttpError, _parse_head, _read_body
from acmekit.settings import parse_duration

SUPERSCRIPT, ARABIC_INDIC = "\u00b2", "\u0661\u0662\u0660"  # '²', '١٢٠'
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("port", [SUPERSCRIPT, ARABIC_INDIC, "\uff18\uff10"])
def test_a_port_is_ascii_digits(port: str) -> None:
    with pytest.raises(ValueError, match="is not a port"):
        parse_host_port(f"127.0.0.1:{port}")
    assert parse_host_port("127.0.0.1:120") == ("127.0.0.1", 120)


@pytest.mark.parametrize("value", [SUPERSCRIPT, ARABIC_INDIC])
def test_retry_after_of_other_digits_is_unparseable(value: str) -> None:
    # RFC 9110 §10.2.3: delay-seconds is 1*DIGIT; otherwise an HTTP-date, which it is not.
    assert parse_retry_after(value, NOW) is None
    assert parse_retry_after("120", NOW) == 120.0


@pytest.mark.parametrize(
    "text", [f"{ARABIC_INDIC} days", "1 wee\u212a", "1 \u017fecond", "30\u00a0days"]
)
def test_an_interval_is_ascii(text: str) -> None:
    with pytest.raises(ValueError, match="cannot read interval"):
        parse_interval(text)
    assert parse_interval(" 1 WEEK ") == timedelta(weeks=1)


@pytest.mark.parametrize("key", ["limit", "concurrency"])
@pytest.mark.parametrize("value", [SUPERSCRIPT, "\u0665"])
def test_a_fleet_ca_count_is_ascii_digits(key: str, value: str) -> None:
    with pytest.raises(click.BadParameter, match=f"{key} is a positive number"):
        parse_ca(f"x=https://x.test/d,{key}={value}")
    assert parse_ca(f"x=https://x.test/d,{key}=5").concurrency in (5, 10)


@pytest.mark.parametrize("value", [SUPERSCRIPT, ARABIC_INDIC])
def test_persist_until_is_ascii_digits(value: str, tmp_path: Path) -> None:
    dirs = [f"--{d}-dir={tmp_path / d}" for d in ("config", "work", "logs")]
    args = ["--server", "https://ca.test/dir", "-d", "x.test", "--persist-until", value, *dirs]
    got = CliRunner().invoke(persist_record, args)
    assert got.exit_code == 2, got.output
    assert "is not a date, a time or UNIX seconds" in got.output


@pytest.mark.parametrize(
    "head", [b"HTTP/1.1 2\xb20 OK\r\n\r\n", b"HTTP/1.1 \xb9\xb2\xb3 X\r\n\r\n"]
)
def test_a_ct_log_status_code_is_ascii_digits(head: bytes) -> None:
    # Latin-1 holds '¹²³', which str.isdigit takes: a plain ValueError escaped the
    # HttpError the submitter counts as a log's failure.
    with pytest.raises(HttpError, match=r"not an HTTP/1\.x status line"):
        _parse_head(head)
    assert _parse_head(b"HTTP/1.1 200 OK\r\n\r\n") == (200, {})


def test_a_ct_log_content_length_is_ascii_digits() -> None:
    async def read(length: str) -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(b"{}")
        reader.feed_eof()
        body, _ = await _read_body(reader, {"content-length": length}, 1024)
        return body

    with pytest.raises(HttpError, match="bad Content-Length"):
        asyncio.run(read(SUPERSCRIPT))
    assert asyncio.run(read("2")) == b"{}"


@pytest.mark.parametrize("name", ["\u212aexample.test", "\uff45xample.test"])
def test_persist_record_names_are_ascii(name: str, tmp_path: Path) -> None:
    # The record's name is folded (case-fold, NFC, IDNA): either spelling gave the record
    # of an ASCII name not asked for ("kexample.test", "example.test").
    dirs = [f"--{d}-dir={tmp_path / d}" for d in ("config", "work", "logs")]
    got = CliRunner().invoke(persist_record, ["--server", "https://ca.test/dir", "-d", name, *dirs])
    assert got.exit_code == 2, got.output
    assert "non-ASCII domain names are not supported" in got.output


@pytest.mark.parametrize("text", ["\u0661d", "1\u0662h", "\uff17d"])
def test_a_duration_is_ascii_digits(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
    assert parse_duration("1D12h") == timedelta(days=1, hours=12)
