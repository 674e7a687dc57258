"""Two HTTP rules of the log's face, on 127.0.0.1.

A static-ct-api resource (checkpoint, tile, data tile, issuer) is named by its path
alone: a query string on one was ignored, so `tile/0/000.p/1?v=2` was served as the
tile, with `immutable` caching, a second name for each cache in front to keep. It is
refused (400, not cached) instead; the RFC 6962 API still reads its parameters.

RFC 9110 §15.5.6: a 405 MUST carry Allow, the methods the resource takes. The log's
405s had none, and a tiled-API path asked with another method was 404."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from acmekit_testkit.ctlog import served_one_entry_log


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """A log of one entry on 127.0.0.1: its port, and its issuer's SHA-256 in hex."""
    with served_one_entry_log(tmp_path_factory.mktemp("ctquery"), "query.example") as found:
        yield found


def _call(
    served: tuple[int, str], method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", served[0], timeout=10)
    try:
        conn.request(method, path.format(issuer=served[1]), body=body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


TILED = ["/checkpoint", "/tile/0/000.p/1", "/tile/data/000.p/1", "/issuer/{issuer}"]
TILED_IDS = ["checkpoint", "tile", "data-tile", "issuer"]


@pytest.mark.parametrize("path", TILED, ids=TILED_IDS)
def test_a_tiled_resource_is_served_without_a_query(served: tuple[int, str], path: str) -> None:
    status, _, body = _call(served, "GET", path)
    assert status == 200 and body


@pytest.mark.parametrize("query", ["?v=2", "?x", "?%20"], ids=["pair", "bare", "escape"])
@pytest.mark.parametrize("path", TILED, ids=TILED_IDS)
def test_a_query_on_a_tiled_resource_is_400(served: tuple[int, str], path: str, query: str) -> None:
    status, headers, body = _call(served, "GET", path + query)
    assert status == 400, body
    doc = json.loads(body)
    assert doc["error"] == "bad_request"
    assert doc["error_message"] == f"{path.format(issuer=served[1])} takes no query string"
    assert headers["cache-control"] == "no-store"


def test_the_rfc6962_api_still_reads_its_query(served: tuple[int, str]) -> None:
    status, _, body = _call(served, "GET", "/ct/v1/get-entries?start=0&end=0")
    assert status == 200
    assert len(json.loads(body)["entries"]) == 1


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/ct/v1/get-sth", "GET, HEAD"),
        ("PUT", "/ct/v1/get-roots", "GET, HEAD"),
        ("POST", "/ct/v1/get-entries?start=0&end=0", "GET, HEAD"),
        ("DELETE", "/ct/v1/get-sth-consistency?first=1&second=1", "GET, HEAD"),
        ("GET", "/ct/v1/add-chain", "POST"),
        ("HEAD", "/ct/v1/add-pre-chain", "POST"),
        ("POST", "/checkpoint", "GET, HEAD"),
        ("PUT", "/tile/0/000.p/1", "GET, HEAD"),
        ("POST", "/tile/data/000.p/1", "GET, HEAD"),
        ("DELETE", "/issuer/{issuer}", "GET, HEAD"),
    ],
    ids=[
        "get-sth",
        "get-roots",
        "get-entries",
        "get-sth-consistency",
        "add-chain",
        "add-pre-chain",
        "checkpoint",
        "tile",
        "data-tile",
        "issuer",
    ],
)
def test_a_405_names_the_allowed_methods(
    served: tuple[int, str], method: str, path: str, allow: str
) -> None:
    status, headers, body = _call(served, method, path, b"{}" if method != "HEAD" else None)
    assert status == 405, body
    assert headers["allow"] == allow
    if method != "HEAD":
        assert json.loads(body)["error"] == "method_not_allowed"


def test_another_path_with_another_method_is_still_404(served: tuple[int, str]) -> None:
    status, headers, _ = _call(served, "POST", "/tile/0/nothing")
    assert status == 404
    assert "allow" not in headers
