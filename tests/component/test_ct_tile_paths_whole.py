"""The static-ct-api read path answers only its own paths, whole: a path that ends in a
newline (`%0A`, which the listener decodes into the path) is not the tile, data tile or
issuer without it. Python's `$` also matches before a final newline, so a route pattern
ending in `$` took `tile/0/000.p/1\\n` for `tile/0/000.p/1`: a cache in front would
then keep an immutable tile under a second name."""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from acmekit.ct.app import CtApp
from acmekit.ct.service import CtConfig, assemble
from acmekit_testkit.ctlog import ca_hierarchy, der, leaf_certificate, served_log


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, str]]:
    """A log of one entry on 127.0.0.1: host, port, and its issuer's SHA-256 in hex."""
    base = tmp_path_factory.mktemp("ctpaths")
    issuer = ca_hierarchy(base / "ca")
    config = CtConfig(state_dir=base / "log", roots=Path(base / "ca" / "root.pem"))
    app: CtApp = assemble(config)
    try:
        inter = issuer.intermediate_cert
        app.log.add_chain([der(leaf_certificate(issuer, "paths.example")), der(inter)], False)
        assert app.log.sequence_once() == 1
        with served_log(app) as url:
            port = int(url.split(":")[2].split("/")[0])
            yield "127.0.0.1", port, hashlib.sha256(der(inter)).hexdigest()
    finally:
        app.log.store.close()


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
