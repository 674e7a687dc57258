"""newOrder refuses an IP identifier at any Reserved IP Address (BR §1.6.1, §4.2.2) with
rejectedIdentifier, before any validation: an IPv4-mapped address is not its IPv4
address (a certificate for ::ffff:8.8.8.8 would name 0:0:0:0:0:ffff:808:808), and a
mapped loopback on a CA that validates on loopback no longer passes validation to fail
finalize with a serverInternal from the lint."""

from __future__ import annotations

import pytest

from acmekit_testkit.acme_raw import Flow


@pytest.mark.parametrize(
    ("address", "entry"),
    [
        ("::ffff:8.8.8.8", "::ffff:0:0/96"),
        ("::ffff:127.0.0.1", "::ffff:0:0/96"),
        ("64:ff9b::808:808", "64:ff9b::/96"),
        ("2002:808:808::1", "2002::/16"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/23"),
        ("192.31.196.1", "192.31.196.0/24"),
    ],
)
async def test_special_purpose_ip_identifiers_are_rejected(
    flow: Flow, address: str, entry: str
) -> None:
    await flow.account()
    resp = await flow.order(address, profile="shortlived")
    assert (resp.status, resp.problem_type) == (400, "rejectedIdentifier"), resp.body
    assert f"({entry}, " in resp.json()["detail"]
