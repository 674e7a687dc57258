"""A signed UPDATE taken before a restart is still refused as a replay after it (RFC 8945
§5.2.3) while its time window lasts: with a state file the accepted MACs are kept there
with the records, so that replaying a captured UPDATE to the restarted server cannot
undo what came after it."""

from __future__ import annotations

import base64
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.update

from acmekit.dns.service import DnsConfig, DnsService
from acmekit.dns.store import parse_name
from acmekit.dns.tsig import TimesSigned

SECRET = base64.b64encode(b"update key of the acme clients!!").decode()
KEY = dns.tsig.Key("upd", SECRET, dns.tsig.HMAC_SHA256)
NAME = "_acme-challenge.x.test."


def service(state: Path) -> DnsService:
    return DnsService(DnsConfig(zones=("x.test",), tsig_keys=(f"upd:{SECRET}",), state=state))


def signed(message: dns.update.UpdateMessage) -> bytes:
    message.use_tsig({KEY.name: KEY}, KEY.name)
    return message.to_wire()


def outcome(dns_service: DnsService, wire: bytes) -> tuple[str, int]:
    reply = dns_service.handler.handle(wire)
    assert reply is not None
    parsed = dns.message.from_wire(reply, keyring=False)
    assert parsed.tsig is not None
    return dns.rcode.to_text(parsed.rcode()), parsed.tsig[0].error


def txt(dns_service: DnsService) -> list[str]:
    rdatas = dns_service.store.rdatas(parse_name(NAME), dns.rdatatype.TXT)
    return [r.to_text() for r in rdatas]


def test_an_update_taken_before_a_restart_is_refused_after_it(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    first = service(state)
    adding = dns.update.UpdateMessage("x.test")
    adding.add(NAME, 60, "TXT", '"token"')
    captured = signed(adding)
    assert outcome(first, captured) == ("NOERROR", 0)
    removing = dns.update.UpdateMessage("x.test")
    removing.delete(NAME, "TXT", '"token"')
    assert outcome(first, signed(removing)) == ("NOERROR", 0)
    assert txt(first) == []

    restarted = service(state)
    assert outcome(restarted, captured) == ("NOTAUTH", dns.rcode.BADTIME)
    assert txt(restarted) == []


def test_a_mac_past_its_window_is_not_restored() -> None:
    now = [1_000_000.0]
    held = TimesSigned(clock=lambda: now[0])
    assert held.accept(KEY.name, 1_000_000, 300, b"old")
    assert held.accept(KEY.name, 1_000_200, 300, b"new")
    now[0] += 301
    restored = TimesSigned(clock=lambda: now[0])
    restored.restore(held.snapshot())
    assert restored.snapshot() == [
        {"key": "upd.", "mac": base64.b64encode(b"new").decode(), "until": 1_000_500}
    ]


def test_an_update_that_changed_nothing_is_refused_after_a_restart(tmp_path: Path) -> None:
    """An UPDATE that changed nothing (its prerequisite failed, or a deletion of nothing)
    is kept too: replayed after a restart, once what it deletes or requires is there,
    it would else act as its signer never meant it to."""
    state = tmp_path / "state.json"
    first = service(state)
    deleting = dns.update.UpdateMessage("x.test")
    deleting.delete(NAME, "TXT", '"token"')  # nothing to delete yet
    captured = signed(deleting)
    assert outcome(first, captured) == ("NOERROR", 0)

    restarted = service(state)
    adding = dns.update.UpdateMessage("x.test")
    adding.add(NAME, 60, "TXT", '"token"')
    assert outcome(restarted, signed(adding)) == ("NOERROR", 0)
    assert outcome(restarted, captured) == ("NOTAUTH", dns.rcode.BADTIME)
    assert txt(restarted) == ['"token"']
