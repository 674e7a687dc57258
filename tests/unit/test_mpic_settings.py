"""[mpic] settings, the wire format between CA and perspectives, and the refusal text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.protocol.problems import AcmeError, Problem
from acmekit.server.config import load_config
from acmekit.server.mpic.quorum import Verdict
from acmekit.server.mpic.remote import (
    Corroboration,
    Outcome,
    PerspectiveResult,
    parse_head,
    refusal,
)
from acmekit.server.mpic.wire import CorroborationRequest, PerspectiveAnswer

PERSPECTIVES = """
[mpic]
enabled = true
timeout = 3
perspectives = [
  { url = "https://10.0.0.1:8443", name = "a", rir = "arin" },
  { url = "https://10.0.0.2:8443", name = "b", rir = "RIPE" },
]
"""


def test_off_by_default(tmp_path: Path) -> None:
    config = load_config(None, {})
    assert config.mpic.enabled is False and config.mpic.perspectives == ()


def test_perspectives_are_read(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, PERSPECTIVES), {})
    assert config.mpic.enabled and config.mpic.timeout == 3
    assert [(p.name, p.rir, p.url) for p in config.mpic.perspectives] == [
        ("a", "ARIN", "https://10.0.0.1:8443"),
        ("b", "RIPE", "https://10.0.0.2:8443"),
    ]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ca.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('rir = "RIPE"', 'rir = "ARIN"'), "span at least 2 RIRs"),
        (('rir = "RIPE"', 'rir = "NIC"'), "is not one of"),
        (("https://10.0.0.2", "http://10.0.0.2"), "over https"),
        (('name = "b"', 'name = "a"'), "unique"),
        (('name = "b", ', ""), "exactly url, name and rir"),
        (("timeout = 3", 'timeout = "3"'), "setting mpic.timeout = '3' must be a number"),
    ],
)
def test_settings_that_cannot_work_are_refused(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_config(_write(tmp_path, PERSPECTIVES.replace(*change)), {})


def test_one_perspective_is_refused_when_enabled_only(tmp_path: Path) -> None:
    one = PERSPECTIVES.replace(
        '  { url = "https://10.0.0.2:8443", name = "b", rir = "RIPE" },\n', ""
    )
    with pytest.raises(ValueError, match="at least 2 remote"):
        load_config(_write(tmp_path, one), {})
    load_config(_write(tmp_path, one.replace("enabled = true", "enabled = false")), {})


def test_request_and_answer_round_trip() -> None:
    req = CorroborationRequest(
        ChallengeType.DNS_01, Identifier(IdentifierType.DNS, "a.test"), True, "tok",
        "tok.thumb", "https://ca/acct/1", ("acmekit",),
    )  # fmt: skip
    assert CorroborationRequest.from_json(req.to_json()) == req
    caa_only = dataclasses.replace(req, validate=False)
    assert CorroborationRequest.from_json(caa_only.to_json()) == caa_only
    answer = PerspectiveAnswer("p", "ARIN", None, Problem("urn:ietf:params:acme:error:caa", "no"))
    back = PerspectiveAnswer.from_json(answer.to_json())
    assert back == answer and not back.corroborates and back.problem == answer.caa


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"type": "ftp-01"},
        {"type": "dns-01", "identifier": {"type": "dns", "value": "a.test"}, "token": 1},
        {"type": "dns-01", "identifier": {"type": "dns", "value": "a.test"}, "token": "t",
         "keyAuthorization": "k", "accountUri": "u", "caaIdentities": "acmekit"},
    ],
)  # fmt: skip
def test_malformed_requests_are_refused(doc: object) -> None:
    with pytest.raises(AcmeError):
        CorroborationRequest.from_json(doc)


def test_http_answer_heads() -> None:
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n") == (200, 2, True)
    assert parse_head(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n") == (
        403, None, False,
    )  # fmt: skip
    assert parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n") == (200, 0, False)
    for bad in (b"\r\n\r\n", b"garbage\r\n\r\n", b"HTTP/1.1 2xx OK\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_head(bad)


def test_refusal_names_every_failed_perspective() -> None:
    outcome = Corroboration(
        Verdict.FAIL,
        "1/4",
        (
            PerspectiveResult("a", "ARIN", Outcome.PASSED),
            PerspectiveResult("b", "RIPE", Outcome.FAILED, "unreachable: refused"),
            PerspectiveResult("c", "APNIC", Outcome.FAILED, "validation: dns: no TXT"),
            PerspectiveResult("d", "LACNIC", Outcome.CANCELLED),
        ),
    )
    err = refusal(outcome, {"type": "dns", "value": "a.test"})
    assert err.problem.type == "urn:ietf:params:acme:error:unauthorized"
    assert err.problem.identifier == {"type": "dns", "value": "a.test"}
    assert "2 of 4 failed, 3 must agree from at least 2 RIRs" in err.problem.detail
    assert (
        "b (RIPE): unreachable: refused; c (APNIC): validation: dns: no TXT" in err.problem.detail
    )
    assert outcome.summary() == "passed a (ARIN); failed b (RIPE), c (APNIC); cancelled d (LACNIC)"


def test_refusal_of_two_remotes_says_both_must_agree() -> None:
    """With two remotes the table lets one fail, but one perspective spans one RIR: the
    detail says the two that the rule in fact needs."""
    outcome = Corroboration(
        Verdict.FAIL,
        "1/2",
        (
            PerspectiveResult("a", "ARIN", Outcome.PASSED),
            PerspectiveResult("b", "RIPE", Outcome.FAILED, "unreachable: refused"),
        ),
    )
    err = refusal(outcome, {"type": "dns", "value": "a.test"})
    assert "1 of 2 failed, 2 must agree from at least 2 RIRs" in err.problem.detail
