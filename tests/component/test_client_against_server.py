"""Our client library against our CA, in-process (ASGI), with real validation on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import replace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from acmekit.client import Client
from acmekit.client.client import ExternalAccountBinding
from acmekit.client.resources import Challenge, Order
from acmekit.client.solvers.errors import SolverError
from acmekit.client.solvers.standalone import StandaloneHttpSolver
from acmekit.client.transport import AsgiTransport
from acmekit.protocol import jose
from acmekit.protocol.messages import ChallengeType, Identifier
from acmekit.protocol.problems import AcmeError
from acmekit.server.app import Receive, Scope, Send
from acmekit.server.config import ServerConfig
from acmekit.server.run import Assembly, assemble
from acmekit_testkit.acme_raw import Http01Responder, new_key
from acmekit_testkit.csr import make_csr

DIRECTORY = "https://ca.test/directory"


@pytest.fixture
async def solver(responder: Http01Responder) -> AsyncIterator[StandaloneHttpSolver]:
    # The CA validates on the responder fixture's port; free it for the client's solver.
    port = responder.port
    await responder.stop()
    async with StandaloneHttpSolver("127.0.0.1", port) as s:
        yield s


@pytest.fixture
async def client(ca: Assembly) -> AsyncIterator[Client]:
    async with Client(DIRECTORY, new_key(), transport=AsgiTransport(ca.app)) as c:
        yield c


async def test_client_issues_from_our_ca(client: Client, solver: StandaloneHttpSolver) -> None:
    await client.register(contact=("mailto:ops@client.test",))
    _, csr = make_csr("one.client.test", "two.client.test")
    issued = await client.issue(
        ["one.client.test", "two.client.test"], {ChallengeType.HTTP_01: solver}, csr
    )
    leaf = x509.load_pem_x509_certificates(issued.fullchain_pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["one.client.test", "two.client.test"]
    assert solver.presented == 0  # cleaned up


async def test_client_reuses_authorizations(client: Client, solver: StandaloneHttpSolver) -> None:
    await client.register()
    solvers = {ChallengeType.HTTP_01: solver}
    await client.issue(["again.client.test"], solvers, make_csr("again.client.test")[1])
    order = await client.new_order(["again.client.test"])
    assert order.status == "ready"


async def test_client_revokes_and_rolls_key(client: Client, solver: StandaloneHttpSolver) -> None:
    await client.register()
    issued = await client.issue(
        ["rev.client.test"], {ChallengeType.HTTP_01: solver}, make_csr("rev.client.test")[1]
    )
    der = x509.load_pem_x509_certificates(issued.fullchain_pem.encode())[0].public_bytes(
        Encoding.DER
    )
    await client.key_change(new_key())
    await client.revoke(der, reason=4)
    with pytest.raises(AcmeError) as err:
        await client.revoke(der)
    assert err.value.problem.type.endswith("alreadyRevoked")


async def test_failed_name_is_reported_per_identifier(
    client: Client, solver: StandaloneHttpSolver
) -> None:
    class Silent:
        async def present(self, *args: object) -> None:
            return None

        async def cleanup(self, *args: object) -> None:
            return None

    await client.register()
    with pytest.raises(AcmeError) as err:
        await client.issue(
            ["nobody.client.test"], {ChallengeType.HTTP_01: Silent()}, make_csr("x.test")[1]
        )
    subs = err.value.problem.subproblems
    assert [s.identifier for s in subs] == [{"type": "dns", "value": "nobody.client.test"}]


class OrderKeeping(Client):
    """A Client that keeps the orders it opens, for a test to look at afterwards."""

    orders: list[Order]

    async def new_order(
        self,
        identifiers: Iterable[Identifier | str],
        *,
        profile: str | None = None,
        replaces: str | None = None,
    ) -> Order:
        order = await super().new_order(identifiers, profile=profile, replaces=replaces)
        self.orders.append(order)
        return order


async def test_failed_order_leaves_no_authorization_pending(
    ca: Assembly, solver: StandaloneHttpSolver
) -> None:
    class Refusing:
        async def present(self, identifier: Identifier, challenge: Challenge, ka: str) -> None:
            if identifier.value.startswith("b."):
                raise SolverError("cannot serve b")
            await solver.present(identifier, challenge, ka)

        async def cleanup(self, identifier: Identifier, challenge: Challenge, ka: str) -> None:
            await solver.cleanup(identifier, challenge, ka)

    names = ["a.relinquish.client.test", "b.relinquish.client.test"]
    async with OrderKeeping(DIRECTORY, new_key(), transport=AsgiTransport(ca.app)) as client:
        client.orders = []
        await client.register()
        with pytest.raises(SolverError):
            await client.issue(names, {ChallengeType.HTTP_01: Refusing()}, make_csr(*names)[1])
        (order,) = client.orders
        authzs = [await client.authorization(url) for url in order.authorizations]
    assert [a.status for a in authzs] == ["deactivated", "deactivated"]


async def test_external_account_binding_required(ca_config: ServerConfig) -> None:
    hmac_key = b"k" * 32
    config = replace(
        ca_config,
        eab_required=True,
        eab_keys={"kid-1": jose.b64e(hmac_key)},
    )
    assembly = assemble(config)
    try:
        transport = AsgiTransport(assembly.app)
        async with Client(DIRECTORY, new_key(), transport=transport) as c:
            assert (await c.directory()).external_account_required is True
            with pytest.raises(AcmeError) as err:
                await c.register()
            assert err.value.problem.type.endswith("externalAccountRequired")
            with pytest.raises(AcmeError) as bad:
                await c.register(eab=ExternalAccountBinding("kid-1", b"wrong" * 8))
            assert bad.value.problem.type.endswith("unauthorized")
            account = await c.register(eab=ExternalAccountBinding("kid-1", hmac_key))
            assert account.status == "valid"
        async with Client(DIRECTORY, new_key(), transport=transport) as other:
            with pytest.raises(AcmeError) as reused:
                await other.register(eab=ExternalAccountBinding("kid-1", hmac_key))
            assert "already bound" in reused.value.problem.detail
    finally:
        await assembly.app.close()
        assembly.store.engine.dispose()


async def test_client_takes_a_valid_challenge_answer_as_final(
    ca: Assembly, solver: StandaloneHttpSolver
) -> None:
    """The CA answers the challenge with its outcome when validation is quick (§7.5.1):
    a `valid` answer makes the authorization valid (§7.1.6), so the client does not
    fetch the authorization again before it finalizes."""
    paths: list[str] = []

    async def recording(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            paths.append(scope["path"])
        await ca.app(scope, receive, send)

    async with Client(DIRECTORY, new_key(), transport=AsgiTransport(recording)) as client:
        await client.register()
        csr = make_csr("final.client.test")[1]
        await client.issue(["final.client.test"], {ChallengeType.HTTP_01: solver}, csr)
    authz = [p for p in paths if "/authz/" in p]
    answered = next(i for i, p in enumerate(paths) if "/chall/" in p)
    assert len(authz) == 1 and paths.index(authz[0]) < answered  # fetched once, before
