"""The CA's HTTPS listener as the internet meets it: real requests to `acmekit server` on
loopback, with Host headers that are not its names."""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from acmekit_testkit.acmekit_server import ServerHandle, running_acmekit_server
from acmekit_testkit.dnsserver import DnsServerHandle
from acmekit_testkit.ports import free_port


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory, dns: DnsServerHandle) -> Iterator[ServerHandle]:
    with running_acmekit_server(tmp_path_factory.mktemp("ca"), dns_port=dns.dns_port) as server:
        yield server


def _get(ca: ServerHandle, path: str, host: str | None) -> http.client.HTTPResponse:
    url = urlsplit(ca.directory_url)
    context = ssl.create_default_context(cafile=str(ca.root_path))
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=context, timeout=10)
    conn.putrequest("GET", path, skip_host=True)
    if host is not None:
        conn.putheader("Host", host)
    conn.endheaders()
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def _directory(ca: ServerHandle, host: str) -> tuple[int, dict[str, object], str]:
    url = urlsplit(ca.directory_url)
    context = ssl.create_default_context(cafile=str(ca.root_path))
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=context, timeout=10)
    conn.request("GET", "/directory", headers={"Host": host})
    resp = conn.getresponse()
    doc = json.loads(resp.read())
    conn.close()
    return resp.status, doc, resp.getheader("link") or ""


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LOCALHOST"])
def test_the_listeners_names_are_served(ca: ServerHandle, name: str) -> None:
    port = urlsplit(ca.directory_url).port
    status, doc, _ = _directory(ca, f"{name}:{port}")
    assert status == 200
    assert doc["newNonce"] == f"https://{name}:{port}/acme/new-nonce"


@pytest.mark.parametrize(
    "host",
    ["attacker.test", "attacker.test:{port}", "127.0.0.2:{port}", "127.0.0.1:1", "127.0.0.1"],
)
def test_another_host_is_misdirected(ca: ServerHandle, host: str) -> None:
    port = urlsplit(ca.directory_url).port
    status, doc, link = _directory(ca, host.format(port=port))
    assert status == 421
    assert doc["type"] == "urn:ietf:params:acme:error:malformed"
    assert "is not a name of this server" in doc["detail"]
    assert link == f'<{ca.base_url}/directory>;rel="index"'


def test_an_http11_request_without_host_is_400(ca: ServerHandle) -> None:
    """RFC 9112 §3.2: 400, not 421 (which says the request was for another server)."""
    assert _get(ca, "/directory", None).status == 400


def _get_and_head(ca: ServerHandle, path: str) -> list[tuple[int, dict[str, str], bytes]]:
    """GET then HEAD of `path` on one kept-alive connection, and GET again after them:
    each answer's status, headers (but the nonce) and body."""
    url = urlsplit(ca.directory_url)
    context = ssl.create_default_context(cafile=str(ca.root_path))
    conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=context, timeout=10)
    answers = []
    for method in ("GET", "HEAD", "GET"):
        conn.request(method, path)
        resp = conn.getresponse()
        body = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders() if k.lower() != "replay-nonce"}
        answers.append((resp.status, headers, body))
    conn.close()
    return answers


@pytest.mark.parametrize(
    "path",
    ["/directory", "/acme/issuer-cert", "/acme/renewal-info/aYhba4dGQEHhs3uEe6CuLN4ByMg.AIdlQyE"],
    ids=["directory", "issuer", "renewal-info"],
)
def test_head_is_get_without_the_content(ca: ServerHandle, path: str) -> None:
    """RFC 9110 §9.1, §9.3.2: the same status and headers as GET (its Content-Length
    too; the Date may have moved on), no content; and the connection serves on."""
    (status, headers, body), head, again = _get_and_head(ca, path)
    headers.pop("date"), head[1].pop("date")
    assert head == (status, headers, b"")
    assert headers["content-length"] == str(len(body))
    assert again[0] == status


def test_a_transfer_coding_other_than_chunked_is_501(ca: ServerHandle) -> None:
    """RFC 9112 §6.1, §7: not read as chunked; 501, then the connection closes."""
    sock = _tls(ca)
    host = urlsplit(ca.directory_url).netloc
    head = f"POST /acme/new-nonce HTTP/1.1\r\nHost: {host}\r\n"
    sock.sendall(head.encode() + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
    answer = _read_all(sock)
    sock.close()
    assert _status(answer) == 501, answer[:200]


# Bounds on what one client may hold ------------------------------------------------------


def _settings(**limits: object) -> dict[str, object]:
    return {"limits": limits}


def _tls(ca: ServerHandle, source: str = "127.0.0.1") -> ssl.SSLSocket:
    url = urlsplit(ca.directory_url)
    context = ssl.create_default_context(cafile=str(ca.root_path))
    raw = socket.create_connection((url.hostname, url.port), timeout=10, source_address=(source, 0))
    return context.wrap_socket(raw, server_hostname=url.hostname)


def _head(ca: ServerHandle) -> bytes:
    return f"GET /directory HTTP/1.1\r\nHost: {urlsplit(ca.directory_url).netloc}\r\n".encode()


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(answer: bytes) -> int:
    """The status code of an HTTP answer; 0 when the server sent nothing."""
    return int(answer.split(b" ", 2)[1]) if answer else 0


def _get_directory(sock: socket.socket, ca: ServerHandle) -> bytes:
    """The head of the answer to GET /directory (what came, if the server closed)."""
    sock.sendall(_head(ca) + b"\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
        answer += chunk
    return answer


@pytest.fixture
def bounded_ca(
    tmp_path: Path, dns: DnsServerHandle, request: pytest.FixtureRequest
) -> Iterator[ServerHandle]:
    settings = _settings(**request.param)
    with running_acmekit_server(tmp_path, dns_port=dns.dns_port, settings=settings) as server:
        yield server


@pytest.mark.parametrize("bounded_ca", [{"max_header_bytes": 16384}], indirect=True)
def test_a_megabyte_header_gets_431_and_the_connection_closes(bounded_ca: ServerHandle) -> None:
    _refuses_a_megabyte_header(_tls(bounded_ca), _head(bounded_ca))


def test_the_crl_listener_has_the_same_bounds(tmp_path: Path, dns: DnsServerHandle) -> None:
    port = free_port()
    settings = {"crl": {"listen": f"127.0.0.1:{port}"}, **_settings(max_header_bytes=16384)}
    with running_acmekit_server(tmp_path, dns_port=dns.dns_port, settings=settings):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        _refuses_a_megabyte_header(
            sock, f"GET /crl/0.crl HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        )


def _refuses_a_megabyte_header(sock: socket.socket, head: bytes) -> None:
    big = head + b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n\r\n"
    sender = threading.Thread(target=_send_ignoring_reset, args=(sock, big), daemon=True)
    sender.start()
    answer = _read_all(sock)
    sender.join(timeout=10)
    sock.close()
    assert _status(answer) == 431, answer[:200]
    assert b"application/problem+json" in answer
    assert b"larger than 16384 bytes" in answer


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


@pytest.mark.parametrize("bounded_ca", [{"header_timeout": 1.0}], indirect=True)
def test_a_trickled_header_is_cut_off(bounded_ca: ServerHandle) -> None:
    sock = _tls(bounded_ca)
    sock.sendall(_head(bounded_ca))
    answer = b""
    for _ in range(100):  # one header byte every 0.1 s, far longer than the timeout
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            answer = _read_all(sock)
            break
        _send_ignoring_reset(sock, b"X")
    sock.close()
    assert _status(answer) == 408, answer[:200]


@pytest.mark.parametrize("bounded_ca", [{"header_timeout": 1.0}], indirect=True)
def test_a_silent_connection_is_closed(bounded_ca: ServerHandle) -> None:
    sock = _tls(bounded_ca)
    assert _read_all(sock) == b""
    sock.close()


@pytest.mark.parametrize("bounded_ca", [{"keepalive_timeout": 1.0}], indirect=True)
def test_an_idle_kept_alive_connection_is_closed(bounded_ca: ServerHandle) -> None:
    sock = _tls(bounded_ca)
    assert _status(_get_directory(sock, bounded_ca)) == 200
    _read_all(sock)  # returns once the server closes the connection
    sock.close()


@pytest.mark.parametrize("bounded_ca", [{"max_connections_per_address": 3}], indirect=True)
def test_connections_beyond_the_cap_per_address_are_refused(bounded_ca: ServerHandle) -> None:
    held = [_tls(bounded_ca) for _ in range(3)]
    for sock in held:
        assert _status(_get_directory(sock, bounded_ca)) == 200
    with _tls(bounded_ca) as extra:
        answer = _get_directory(extra, bounded_ca)
    assert _status(answer) == 503, answer[:200]
    other = _tls(bounded_ca, source="127.0.0.2")
    assert _status(_get_directory(other, bounded_ca)) == 200
    other.close()
    held.pop().close()
    for _ in range(50):  # the server sees the close a moment later
        with _tls(bounded_ca) as again:
            if _status(_get_directory(again, bounded_ca)) == 200:
                break
        time.sleep(0.1)
    else:
        pytest.fail("a freed place was not given to a new connection")
    for sock in held:
        sock.close()


@pytest.mark.parametrize(
    "bounded_ca", [{"max_connections_per_address": 2, "handshake_timeout": 1.0}], indirect=True
)
def test_connections_that_never_finish_a_handshake_count_and_are_cut_off(
    bounded_ca: ServerHandle,
) -> None:
    """The count is taken before TLS, and the handshake has its own bound: two silent
    TCP connections hold the address's places for a second, not asyncio's 60."""
    url = urlsplit(bounded_ca.directory_url)
    silent = [socket.create_connection((url.hostname, url.port), timeout=10) for _ in range(2)]
    with _tls(bounded_ca) as extra:
        assert _status(_get_directory(extra, bounded_ca)) == 503
    for sock in silent:
        assert sock.recv(1) == b""  # the server closed it: no handshake in time
        sock.close()
    for _ in range(50):  # the server sees its own closes a moment later
        with _tls(bounded_ca) as again:
            if _status(_get_directory(again, bounded_ca)) == 200:
                break
        time.sleep(0.1)
    else:
        pytest.fail("places held by unfinished handshakes were not freed")


def test_sigterm_closes_kept_alive_connections_and_the_ca_exits_cleanly(
    tmp_path: Path, dns: DnsServerHandle
) -> None:
    with running_acmekit_server(tmp_path, dns_port=dns.dns_port) as server:
        kept = _tls(server)
        assert _status(_get_directory(kept, server)) == 200
        server.proc.terminate()
        _read_all(kept)  # returns once the CA closes the idle connection
        kept.close()
        assert server.proc.wait(timeout=30) == 0
