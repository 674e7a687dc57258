"""A hostile CA, seen by our client: our CA in-process, with its answers rewritten on the
way out. What reaches the client's files is only certificates, the leaf must be for the
CSR's key and the ordered names, and a flood of rel="alternate" links, or links to
other hosts, are not followed. Nothing is presented for an authorization of a name
that was not ordered, or for a token that is not base64url (a path or a hook's file)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from acmekit.client import Client
from acmekit.client.client import MAX_ALTERNATES
from acmekit.client.errors import ServerProtocolError
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.client.transport import AsgiTransport
from acmekit.protocol.messages import ChallengeType
from acmekit.server.run import Assembly
from acmekit_testkit.acme_raw import Http01Responder, new_key
from acmekit_testkit.csr import make_csr

DIRECTORY = "https://ca.test/directory"
PEM_CHAIN = b"application/pem-certificate-chain"
Rewrite = Callable[[bytes, str], tuple[bytes, list[tuple[bytes, bytes]]]]


class Hostile:
    """The CA's app, with certificate answers passed through `rewrite` (body, path) ->
    (body, extra headers); every request's Host is recorded."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.rewrite: Rewrite | None = None
        self.rewrite_authz: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self.hosts: list[str] = []
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.hosts.append(dict(scope["headers"]).get(b"host", b"").decode())
        self.paths.append(scope["path"])
        started: dict[str, Any] = {}
        body = bytearray()

        async def held(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            headers = list(started["headers"])
            out = bytes(body)
            if self.rewrite and dict(headers).get(b"content-type", b"").startswith(PEM_CHAIN):
                out, extra = self.rewrite(out, scope["path"])
                headers = [(k, v) for k, v in headers if k != b"content-length"] + extra
                headers.append((b"content-length", str(len(out)).encode()))
            elif self.rewrite_authz and scope["path"].startswith("/acme/authz/"):
                out = json.dumps(self.rewrite_authz(json.loads(out))).encode()
                headers = [(k, v) for k, v in headers if k != b"content-length"]
                headers.append((b"content-length", str(len(out)).encode()))
            await send({**started, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        await self.app(scope, receive, held)


@pytest.fixture
async def solver(responder: Http01Responder) -> AsyncIterator[StandaloneHttpSolver]:
    port = responder.port
    await responder.stop()
    async with StandaloneHttpSolver("127.0.0.1", port) as s:
        yield s


@pytest.fixture
def hostile(ca: Assembly) -> Hostile:
    return Hostile(ca.app)


@pytest.fixture
async def client(hostile: Hostile) -> AsyncIterator[Client]:
    async with Client(DIRECTORY, new_key(), transport=AsgiTransport(hostile)) as c:
        await c.register()
        yield c


def _self_signed(key: ec.EllipticCurvePrivateKey, name: str, *more: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in (name, *more)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


async def _issue(client: Client, solver: StandaloneHttpSolver, name: str, **kw: Any) -> Any:
    key, csr = make_csr(name)
    return key, await client.issue([name], {ChallengeType.HTTP_01: solver}, csr, **kw)


async def test_text_around_the_certificates_does_not_reach_the_files(
    client: Client, solver: StandaloneHttpSolver, hostile: Hostile
) -> None:
    junk_key = (
        b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEH\n"
        b"-----END PRIVATE KEY-----\n"
    )
    hostile.rewrite = lambda body, _: (b"ssl_certificate /etc/shadow;\n" + body + junk_key, [])
    _, issued = await _issue(client, solver, "junk.hostile.test")
    text = issued.fullchain_pem
    assert "shadow" not in text and "PRIVATE KEY" not in text
    certs = x509.load_pem_x509_certificates(text.encode())
    assert len(certs) == 2
    assert text == "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)
    assert issued.chain_pem == certs[1].public_bytes(Encoding.PEM).decode()


async def test_a_leaf_for_another_key_is_refused(
    client: Client, solver: StandaloneHttpSolver, hostile: Hostile
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    hostile.rewrite = lambda body, _: (_self_signed(other, "other-key.hostile.test"), [])
    with pytest.raises(ServerProtocolError, match="not for the CSR's key"):
        await _issue(client, solver, "other-key.hostile.test")


async def test_a_leaf_for_other_names_is_refused(
    client: Client, solver: StandaloneHttpSolver, hostile: Hostile
) -> None:
    key, csr = make_csr("names.hostile.test")
    hostile.rewrite = lambda body, _: (_self_signed(key, "elsewhere.hostile.test"), [])
    with pytest.raises(ServerProtocolError, match=r"does not name names\.hostile\.test"):
        await client.issue(["names.hostile.test"], {ChallengeType.HTTP_01: solver}, csr)


async def test_a_body_without_certificates_is_refused(
    client: Client, solver: StandaloneHttpSolver, hostile: Hostile
) -> None:
    hostile.rewrite = lambda body, _: (b"\xff\xfe not a chain at all", [])
    with pytest.raises(ServerProtocolError, match="holds no certificate"):
        await _issue(client, solver, "empty.hostile.test")


async def test_alternate_links_are_bounded_and_kept_to_the_origin(
    client: Client, solver: StandaloneHttpSolver, hostile: Hostile
) -> None:
    def flood(body: bytes, path: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        links = [(b"link", f'<{path}>;rel="alternate"'.encode()) for _ in range(50)]
        links += [
            (b"link", b'<http://169.254.169.254/latest/meta-data/>;rel="alternate"'),
            (b"link", b'<https://127.0.0.1:1/admin>;rel="alternate"'),
        ]
        return body, links

    hostile.rewrite = flood
    start = len(hostile.hosts)
    _, issued = await _issue(client, solver, "links.hostile.test", preferred_chain="nobody")
    assert len(issued.alternates) == MAX_ALTERNATES
    later = hostile.hosts[start:]
    assert set(later) == {"ca.test"}
    downloads = [p for p in hostile.paths[start:] if "/cert/" in p]
    assert len(downloads) == 1 + MAX_ALTERNATES


def _tokens(value: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def rewrite(doc: dict[str, Any]) -> dict[str, Any]:
        for challenge in doc.get("challenges", []):
            challenge["token"] = value
        return doc

    return rewrite


@pytest.mark.parametrize(
    "token",
    ["../../../../etc/cron.d/owned-by-the-ca-0000000", "x" * 30 + "\n* * * * * root id"],
)
async def test_a_malformed_token_is_not_presented(
    client: Client, solver: StandaloneHttpSolver, hostile: Hostile, token: str
) -> None:
    hostile.rewrite_authz = _tokens(token)
    with pytest.raises(ServerProtocolError, match="malformed token"):
        await _issue(client, solver, "token.hostile.test")
    assert solver.presented == 0


async def test_an_authorization_for_a_name_not_ordered_is_not_presented(
    client: Client, solver: StandaloneHttpSolver, hostile: Hostile
) -> None:
    def elsewhere(doc: dict[str, Any]) -> dict[str, Any]:
        doc["identifier"] = {"type": "dns", "value": "victim.elsewhere.test"}
        return doc

    hostile.rewrite_authz = elsewhere
    with pytest.raises(ServerProtocolError, match=r"victim\.elsewhere\.test, not ordered"):
        await _issue(client, solver, "asked.hostile.test")
    assert solver.presented == 0


async def test_an_order_for_other_names_is_refused(
    client: Client, solver: StandaloneHttpSolver, hostile: Hostile
) -> None:
    """The names the client then authorizes are the order's: they must be those asked."""
    inner = hostile.app

    async def swapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not scope["path"].endswith("/new-order"):
            await inner(scope, receive, send)
            return

        async def altered(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                doc = json.loads(message["body"])
                doc["identifiers"] = [{"type": "dns", "value": "victim.elsewhere.test"}]
                message = {**message, "body": json.dumps(doc).encode()}
            elif message["type"] == "http.response.start":
                drop = b"content-length"
                message = {**message, "headers": [h for h in message["headers"] if h[0] != drop]}
            await send(message)

        await inner(scope, receive, altered)

    hostile.app = swapped
    with pytest.raises(ServerProtocolError, match="not for the names asked"):
        await _issue(client, solver, "asked.hostile.test")
    assert solver.presented == 0


async def test_a_leaf_with_names_not_ordered_is_refused(
    client: Client, solver: StandaloneHttpSolver, hostile: Hostile
) -> None:
    """An extra name would be installed (nginx's `server_name`) and renewed: one that
    carries directives most of all."""
    key, csr = make_csr("extra.hostile.test")
    crafted = "x.test;\n\tlocation / { alias /etc/; }"
    hostile.rewrite = lambda body, _: (_self_signed(key, "extra.hostile.test", crafted), [])
    with pytest.raises(ServerProtocolError, match="not ordered"):
        await client.issue(["extra.hostile.test"], {ChallengeType.HTTP_01: solver}, csr)
