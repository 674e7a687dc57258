"""The static-ct-api read path answers only its own paths, whole: a path that ends in a
newline (`%0A`, which the listener decodes into the path) is not the tile, data tile or
issuer without it. Python's `$` also matches before a final newline, so a route pattern
ending in `$` took `tile/0/000.p/1\\n` for `tile/0/000.p/1`: a cache in front would
then keep an immutable tile under a second name."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from acmekit_testkit.ctlog import served_one_entry_log


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, str]]:
    """A log of one entry on 127.0.0.1: host, port, and its issuer's SHA-256 in hex."""
    with served_one_entry_log(tmp_path_factory.mktemp("ctpaths"), "paths.example") as (
        port,
        issuer,
    ):
        yield "127.0.0.1", port, issuer


def _get(served: tuple[str, int, str], path: str) -> tuple[int, bytes]:
    host, port, _ = served
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


PATHS = ["/tile/0/000.p/1", "/tile/data/000.p/1", "/issuer/{issuer}"]


@pytest.mark.parametrize("path", PATHS, ids=["tile", "data-tile", "issuer"])
def test_the_clean_path_is_served(served: tuple[str, int, str], path: str) -> None:
    status, body = _get(served, path.format(issuer=served[2]))
    assert status == 200 and body


@pytest.mark.parametrize("path", PATHS, ids=["tile", "data-tile", "issuer"])
@pytest.mark.parametrize("tail", ["%0A", "%0D%0A", "%0a"], ids=["lf", "crlf", "lf-lower"])
def test_a_path_ending_in_a_newline_is_not_found(
    served: tuple[str, int, str], path: str, tail: str
) -> None:
    status, body = _get(served, path.format(issuer=served[2]) + tail)
    assert status == 404, body
    assert b"not_found" in body
