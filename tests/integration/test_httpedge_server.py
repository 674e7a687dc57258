"""The CA's HTTP/1.1 server (acmekit.http1) over real sockets on 127.0.0.1: each
behaviour a production server owes its clients, one test each, against a small ASGI app
that echoes what it is sent (and can be told to wait or to stream)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acmekit.http1 import Http1Server, ListenerLimits

BIG_CHUNK = 256 * 1024
BIG_CHUNKS = 256  # 64 MiB: more than loopback's socket buffers and the transport's


@dataclass
class EchoApp:
    """Answers with the method, path and body it got. `/slow/S` waits S seconds first;
    `/big` streams BIG_CHUNKS chunks; `/fail` raises."""

    sent_chunks: int = 0
    started: threading.Event = field(default_factory=threading.Event)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        self.started.set()
        if path.startswith("/slow/"):
            await asyncio.sleep(float(path.removeprefix("/slow/")))
        if path == "/fail":
            raise RuntimeError("the app failed, as asked")
        if path == "/big":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(BIG_CHUNKS):
                await send(
                    {"type": "http.response.body", "body": b"x" * BIG_CHUNK, "more_body": True}
                )
                self.sent_chunks += 1
            await send({"type": "http.response.body", "body": b""})
            return
        answer = f"{scope['method']} {path} ".encode() + body
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@dataclass
class Running:
    port: int
    app: EchoApp
    server: Http1Server
    loop: asyncio.AbstractEventLoop
    root: Path | None

    def connect(self, source: str = "127.0.0.1") -> socket.socket:
        sock = socket.create_connection(
            ("127.0.0.1", self.port), timeout=10, source_address=(source, 0)
        )
        if self.root is None:
            return sock
        context = ssl.create_default_context(cafile=str(self.root))
        return context.wrap_socket(sock, server_hostname="127.0.0.1")

    def shutdown(self, grace: float) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(grace), self.loop).result(30)


def _certificate(where: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = where / "cert.pem", where / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextlib.contextmanager
def running(tmp_path: Path, limits: ListenerLimits, *, tls: bool = True) -> Iterator[Running]:
    """An Http1Server with EchoApp on a loop (uvloop, as the CA runs) in a thread."""
    context, root = None, None
    if tls:
        root, key = _certificate(tmp_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(root, key)
    app = EchoApp()
    server = Http1Server(app, limits, context)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(sock), loop).result(10)
    handle = Running(sock.getsockname()[1], app, server, loop, root)
    try:
        yield handle
    finally:
        if not server.stopping:
            handle.shutdown(1.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        sock.close()


@pytest.fixture
def tls_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    limits = getattr(request, "param", ListenerLimits())
    with running(tmp_path, limits) as handle:
        yield handle


@pytest.fixture
def plain_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    limits = getattr(request, "param", ListenerLimits())
    with running(tmp_path, limits, tls=False) as handle:
        yield handle


# reading answers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


def read_answer(f: BinaryIO, *, head_only: bool = False) -> Answer:
    """One response from `f` (a socket's file), framed as RFC 9112 §6.3 says."""
    line = f.readline()
    if not line:
        raise EOFError("the server closed the connection")
    status = int(line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only or status < 200 or status in (204, 304):
        return Answer(status, headers, b"")
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(f.readline().split(b";")[0], 16):
            body += f.read(size)
            f.readline()
        f.readline()
        return Answer(status, headers, body)
    if "content-length" in headers:
        return Answer(status, headers, f.read(int(headers["content-length"])))
    return Answer(status, headers, f.read())


def closed(sock: socket.socket) -> bool:
    """Whether the server closes `sock` (reading on until it does, or 10 s pass)."""
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while sock.recv(65536):
            pass
        return True
    return True


def request(path: str, method: str = "GET", body: bytes = b"", extra: str = "") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
    return f"{method} {path} HTTP/1.1\r\nHost: t\r\n{length}{extra}\r\n".encode() + body


# keep-alive, pipelining, bodies ----------------------------------------------------------


def test_a_kept_alive_connection_serves_request_after_request(tls_server: Running) -> None:
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        for n in range(5):
            sock.sendall(request(f"/r{n}"))
            answer = read_answer(f)
            assert (answer.status, answer.body) == (200, f"GET /r{n} ".encode())
            assert "date" in answer.headers
            assert "connection" not in answer.headers


@pytest.mark.parametrize("tls_server", [ListenerLimits(keepalive_timeout=0.5)], indirect=True)
def test_an_idle_connection_is_closed_after_the_keepalive_timeout(tls_server: Running) -> None:
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(request("/"))
        assert read_answer(f).status == 200
        assert f.read() == b""  # the server closed it


def test_pipelined_requests_are_answered_in_order(tls_server: Running) -> None:
    """The first is the slowest: answers still come in the order asked (RFC 9112 §9.3.2)."""
    paths = ["/slow/0.3", "/a", "/slow/0.1", "/b"]
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(b"".join(request(p) for p in paths))
        assert [read_answer(f).body for _ in paths] == [f"GET {p} ".encode() for p in paths]


def test_a_client_that_pipelines_hundreds_gets_every_answer(tls_server: Running) -> None:
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(b"".join(request(f"/{n}") for n in range(300)))
        bodies = [read_answer(f).body for _ in range(300)]
    assert bodies == [f"GET /{n} ".encode() for n in range(300)]


def test_a_content_length_body_reaches_the_app(tls_server: Running) -> None:
    body = b'{"payload": "' + b"p" * 100_000 + b'"}'
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(request("/post", "POST", body))
        assert read_answer(f).body == b"POST /post " + body
        sock.sendall(request("/after"))  # and the connection goes on
        assert read_answer(f).body == b"GET /after "


def test_a_chunked_body_reaches_the_app(tls_server: Running) -> None:
    chunks = [b"hello ", b"chunked ", b"x" * 70_000]
    encoded = b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    head = b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(head + encoded)
        assert read_answer(f).body == b"POST /chunked " + b"".join(chunks)


@pytest.mark.parametrize("tls_server", [ListenerLimits(max_body_bytes=1000)], indirect=True)
def test_a_declared_body_over_the_cap_gets_413(tls_server: Running) -> None:
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(request("/post", "POST", b"x" * 1001))
        answer = read_answer(f)
        assert answer.status == 413
        assert answer.headers["content-type"] == "application/problem+json"
        assert b"larger than 1000 bytes" in answer.body
        assert answer.headers["connection"] == "close"
        assert closed(sock)
    assert not tls_server.app.started.is_set()  # the app never saw it


@pytest.mark.parametrize("tls_server", [ListenerLimits(max_body_bytes=1000)], indirect=True)
def test_a_chunked_body_over_the_cap_gets_413(tls_server: Running) -> None:
    head = b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(head)
        for _ in range(3):
            sock.sendall(b"200\r\n" + b"y" * 512 + b"\r\n")
        assert read_answer(f).status == 413
    assert not tls_server.app.started.is_set()


def test_connection_close_is_honoured(tls_server: Running) -> None:
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(request("/", extra="Connection: close\r\n"))
        answer = read_answer(f)
        assert answer.status == 200
        assert answer.headers["connection"] == "close"
        assert f.read() == b""


def test_http_1_0_is_answered_and_closed(plain_server: Running) -> None:
    with plain_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
        assert read_answer(f).body == b"GET /old "
        assert f.read() == b""


def test_head_has_the_length_and_no_body(tls_server: Running) -> None:
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(request("/h", "HEAD"))
        answer = read_answer(f, head_only=True)
        assert answer.status == 200
        assert answer.headers["content-length"] == str(len(b"HEAD /h "))
        sock.sendall(request("/next"))  # nothing of a body sits before the next answer
        assert read_answer(f).body == b"GET /next "


def test_expect_100_continue_is_answered_before_the_body(tls_server: Running) -> None:
    body = b"sent after 100"
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(
            b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        assert read_answer(f).status == 100
        sock.sendall(body)
        assert read_answer(f).body == b"POST /e " + body


@pytest.mark.parametrize("tls_server", [ListenerLimits(max_body_bytes=10)], indirect=True)
def test_expect_100_continue_over_the_cap_gets_413_and_no_100(tls_server: Running) -> None:
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(
            b"POST /e HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n"
        )
        assert read_answer(f).status == 413


@pytest.mark.parametrize(
    "garbage",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
def test_what_the_parser_refuses_gets_400(plain_server: Running, garbage: bytes) -> None:
    with plain_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(garbage)
        answer = read_answer(f)
        assert answer.status == 400
        assert answer.headers["content-type"] == "application/problem+json"


def test_an_app_that_fails_gets_500_and_the_connection_closes(tls_server: Running) -> None:
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(request("/fail"))
        answer = read_answer(f)
        assert answer.status == 500
        assert answer.headers["connection"] == "close"
        assert f.read() == b""
    with tls_server.connect() as sock, sock.makefile("rb") as f:  # the server goes on
        sock.sendall(request("/ok"))
        assert read_answer(f).status == 200


def test_a_request_then_half_close_is_answered(plain_server: Running) -> None:
    with plain_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(request("/slow/0.2"))
        sock.shutdown(socket.SHUT_WR)
        assert read_answer(f).body == b"GET /slow/0.2 "
        assert f.read() == b""


# flow control -------------------------------------------------------------------------


def test_the_app_waits_while_the_client_does_not_read(tls_server: Running) -> None:
    """64 MiB streamed (chunked) to a client that reads nothing for a while: the app is
    held back by the transport's pause_writing, then everything arrives."""
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(request("/big"))
        tls_server.app.started.wait(10)
        held = threading.Event()
        held.wait(1.0)  # give the server every chance to write all it can
        assert tls_server.app.sent_chunks < BIG_CHUNKS
        answer = read_answer(f)
        assert answer.headers["transfer-encoding"] == "chunked"
        assert len(answer.body) == BIG_CHUNK * BIG_CHUNKS
    assert tls_server.app.sent_chunks == BIG_CHUNKS


# bounds -------------------------------------------------------------------------------


@pytest.mark.parametrize("plain_server", [ListenerLimits(max_header_bytes=4096)], indirect=True)
@pytest.mark.parametrize("size", [4097, 100_000])
def test_a_whole_head_over_the_cap_gets_431(plain_server: Running, size: int) -> None:
    """Measured as parsed, however it was split into reads."""
    with plain_server.connect() as sock, sock.makefile("rb") as f:
        head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
        with contextlib.suppress(OSError):
            sock.sendall(head)
        assert read_answer(f).status == 431
    assert not plain_server.app.started.is_set()


@pytest.mark.parametrize("plain_server", [ListenerLimits(max_header_bytes=4096)], indirect=True)
def test_a_head_that_grows_without_end_gets_431(plain_server: Running) -> None:
    with plain_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ")
        sender = threading.Thread(target=_send_ignoring_reset, args=(sock, b"a" * 2**21))
        sender.start()
        assert read_answer(f).status == 431
        sender.join(10)


@pytest.mark.parametrize("plain_server", [ListenerLimits(max_header_bytes=4096)], indirect=True)
def test_pipelined_requests_past_the_header_cap_in_all_are_served(plain_server: Running) -> None:
    """The cap is per head: many small heads in one read are not one big one."""
    with plain_server.connect() as sock, sock.makefile("rb") as f:
        burst = b"".join(
            request(f"/{n:04}", extra="X-Pad: " + "p" * 200 + "\r\n") for n in range(100)
        )
        sock.sendall(burst + b"GET /last HTTP/1.1\r\nHost: t\r\n")
        assert [read_answer(f).status for _ in range(100)] == [200] * 100
        sock.sendall(b"\r\n")
        assert read_answer(f).body == b"GET /last "


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(data)


@pytest.mark.parametrize("tls_server", [ListenerLimits(header_timeout=0.5)], indirect=True)
def test_a_head_that_does_not_end_gets_408(tls_server: Running) -> None:
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
        assert read_answer(f).status == 408


@pytest.mark.parametrize(
    "tls_server",
    [ListenerLimits(max_connections_per_address=2, handshake_timeout=1.0)],
    indirect=True,
)
def test_connections_in_their_handshake_count_and_are_cut_off(tls_server: Running) -> None:
    """Two connections that never start TLS fill the cap: a third is refused (503 after
    its handshake) until the handshake timeout closes them; then a place is free."""
    silent = [
        socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) for _ in range(2)
    ]
    with tls_server.connect() as refused, refused.makefile("rb") as f:
        refused.sendall(request("/"))
        assert read_answer(f).status == 503
    for sock in silent:
        assert sock.recv(1) == b""  # closed by the server: the handshake took too long
        sock.close()
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(request("/"))
        assert read_answer(f).status == 200


@pytest.mark.parametrize(
    "tls_server",
    [ListenerLimits(max_connections_per_address=1, handshake_timeout=60.0)],
    indirect=True,
)
def test_far_over_the_cap_a_connection_is_closed_before_tls(tls_server: Running) -> None:
    held = [socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) for _ in range(2)]
    extra = socket.create_connection(("127.0.0.1", tls_server.port), timeout=10)
    assert closed(extra)  # at once: the 60 s handshake bound plays no part
    with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_server.connect()
    other = tls_server.connect(source="127.0.0.2")  # another address has its own count
    with other, other.makefile("rb") as f:
        other.sendall(request("/"))
        assert read_answer(f).status == 200
    for sock in held:
        sock.close()


# shutdown -----------------------------------------------------------------------------


def test_shutdown_answers_what_is_in_flight_and_closes(tls_server: Running) -> None:
    idle = tls_server.connect()
    with tls_server.connect() as sock, sock.makefile("rb") as f:
        sock.sendall(request("/slow/0.5"))
        tls_server.app.started.wait(10)
        stopper = threading.Thread(target=tls_server.shutdown, args=(10.0,))
        stopper.start()
        answer = read_answer(f)
        assert (answer.status, answer.body) == (200, b"GET /slow/0.5 ")
        assert answer.headers["connection"] == "close"
        assert f.read() == b""
        stopper.join(30)
    assert closed(idle)
    idle.close()
    with pytest.raises(OSError):
        tls_server.connect()


def test_shutdown_cuts_what_outlasts_its_bound(tls_server: Running) -> None:
    with tls_server.connect() as sock:
        sock.sendall(request("/slow/60"))
        tls_server.app.started.wait(10)
        tls_server.shutdown(0.3)  # returns: the request was cut, not waited for
        assert closed(sock)
