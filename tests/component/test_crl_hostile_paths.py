"""The plain-HTTP CRL listener's paths, as anyone may send them: a shard number of
thousands of digits, or in another script's digits, is a 404, not a 500 or a second URL
for the same CRL."""

from __future__ import annotations

from acmekit.server.crl import CrlApp
from acmekit.server.run import Assembly


async def test_odd_shard_numbers_are_not_found(ca: Assembly) -> None:
    assert ca.crl is not None
    app = CrlApp(ca.crl)
    status, ctype, body = await app._answer("GET", "/crl/0.crl")
    assert (status, ctype) == (200, b"application/pkix-crl") and body
    for path in (
        "/crl/" + "9" * 5000 + ".crl",
        "/crl/\u0660.crl",
        "/crl/\uff10.crl",
        "/crl/-0.crl",
    ):
        assert (await app._answer("GET", path))[0] == 404, path[:20]
