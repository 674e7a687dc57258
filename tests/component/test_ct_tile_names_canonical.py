"""Each resource of the log has one name: a tile only its `tile_index_path` (no leading
`x000/` groups), and no path with a percent escape, which the listener decodes (`%2F`
into `/`, `%2E` into `.`) before routing. Each second name was served 200, the tiles
with `immutable` caching, so a cache in front kept the same tile under many names."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from acmekit_testkit.ctlog import served_one_entry_log


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """A log of one entry on 127.0.0.1: its port, and its issuer's SHA-256 in hex."""
    with served_one_entry_log(tmp_path_factory.mktemp("ctnames"), "names.example") as found:
        yield found


def _get(served: tuple[int, str], path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", served[0], timeout=10)
    try:
        issuer = served[1]
        escaped = f"%{ord(issuer[0]):02X}{issuer[1:]}"  # its first digit as an escape
        conn.request("GET", path.format(issuer=issuer, escaped=escaped))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


CANONICAL = [
    "/tile/0/000.p/1",
    "/tile/data/000.p/1",
    "/issuer/{issuer}",
    "/checkpoint",
    "/ct/v1/get-sth",
    "/ct/v1/get-entries?start=0&end=0",
    "/ct/v1/get-roots",
]


@pytest.mark.parametrize("path", CANONICAL, ids=[f"name{i}" for i in range(len(CANONICAL))])
def test_the_canonical_name_is_served(served: tuple[int, str], path: str) -> None:
    status, body = _get(served, path)
    assert status == 200 and body


SECOND_NAMES = [
    "/tile/0/x000/000.p/1",
    "/tile/0/x000/x000/000.p/1",
    "/tile/data/x000/000.p/1",
    "/tile/data/x000/x000/x000/000.p/1",
    "/tile%2Fdata/000.p/1",
    "/tile/data%2F000.p/1",
    "/tile/data/000%2Ep/1",
    "/tile/data/000%2ep/1",
    "/tile/0/%30%30%30.p/1",
    "/tile%2F0/000.p/1",
    "/issuer%2F{issuer}",
    "/issuer/{escaped}",
    "/%63heckpoint",
    "/ct%2Fv1/get-sth",
    "/ct/v1/get%2Dsth",
    "/ct/v1/get%2Dentries?start=0&end=0",
    "/ct/v1%2Fget-roots",
]


@pytest.mark.parametrize("path", SECOND_NAMES, ids=[f"alias{i}" for i in range(len(SECOND_NAMES))])
def test_a_second_name_is_not_found(served: tuple[int, str], path: str) -> None:
    status, body = _get(served, path)
    assert status == 404, body
    assert b"not_found" in body
