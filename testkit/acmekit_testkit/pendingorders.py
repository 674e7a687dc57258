"""Records straight into a CA's store, for tests of the store's statements: an account
(`stored_account`), a pending order of one name, one authorization with an http-01
and a dns-01 challenge, for an account that exists already, and a lone pending
authorization (`pending_authorization`); and an account registered through the app,
with its record (`registered`). For the replacement claim's tests (RFC 9773 §5): an
authorization and an order as records not yet written (`authorization_record`,
`order_record`), and a certificate to replace (`reserved_certificate`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from acmekit.protocol import jose
from acmekit.protocol.messages import (
    AccountStatus,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    Identifier,
    IdentifierType,
)
from acmekit.server.authority import NewOrderReads
from acmekit.server.records import (
    AccountRecord,
    AuthorizationRecord,
    CertificateRecord,
    ChallengeRecord,
    OrderRecord,
)
from acmekit.server.run import Assembly
from acmekit.server.store import Store
from acmekit_testkit.acme_raw import Flow, Http01Responder, RawAcme


def stored_account(
    store: Store, created: datetime, contact: tuple[str, ...] = (), account_id: str = "acct"
) -> AccountRecord:
    """The valid account `acct` (or `account_id`), of a P-256 key whose coordinates are
    placeholders."""
    return store.accounts.add_account(
        AccountRecord(
            id=account_id,
            thumbprint="t" * 43,
            jwk={"kty": "EC", "crv": "P-256", "x": "x" * 43, "y": "y" * 43},
            contact=contact,
            status=AccountStatus.VALID,
            created=created,
        )
    )


def order_with_two_challenges(
    store: Store, n: int, now: datetime, account_id: str = "acct"
) -> AuthorizationRecord:
    """Order `order-{n}` for `n{n}.example.test`; its authorization `authz-{n}`."""
    authz_id = f"authz-{n}"
    authz = AuthorizationRecord(
        id=authz_id,
        account_id=account_id,
        identifier=Identifier(IdentifierType.DNS, f"n{n}.example.test"),
        wildcard=False,
        stored_status=AuthorizationStatus.PENDING,
        expires=now + timedelta(days=7),
        challenges=tuple(
            ChallengeRecord(
                f"{authz_id}-{t.value}", authz_id, t, f"tok{n}{t.value}", ChallengeStatus.PENDING
            )
            for t in (ChallengeType.HTTP_01, ChallengeType.DNS_01)
        ),
    )
    order = OrderRecord(
        f"order-{n}", account_id, (authz.identifier,), (authz_id,), now + timedelta(days=1), now
    )
    store.orders.add_order(order, [authz])
    return authz


async def registered(assembly: Assembly, responder: Http01Responder) -> tuple[Flow, AccountRecord]:
    """A client of `assembly`'s app with a new account, and the account's record."""
    flow = Flow(RawAcme(assembly.app), responder)
    assert (await flow.account()).status == 201
    found = assembly.store.accounts.account(flow.kid.rsplit("/", 1)[1])
    assert found is not None
    return flow, found


def pending_authorization(store: Store, account_id: str, name: str, expires: datetime) -> str:
    """Authorization `z-{name}` of the account for the DNS name, pending with one http-01
    challenge, in no order; its id."""
    authz_id = f"z-{name}"
    ch = ChallengeRecord(
        f"{authz_id}h", authz_id, ChallengeType.HTTP_01, f"t-{name}", ChallengeStatus.PENDING
    )
    ident = Identifier(IdentifierType.DNS, name)
    store.orders.add_authorization(
        AuthorizationRecord(
            authz_id, account_id, ident, False, AuthorizationStatus.PENDING, expires, (ch,)
        )
    )
    return authz_id


def new_order_payload(*names: str) -> dict[str, Any]:
    """newOrder's payload for these DNS names."""
    return {"identifiers": [{"type": "dns", "value": n} for n in names]}


def new_order_read_ahead(
    assembly: Assembly, flow: Flow, account: AccountRecord, *names: str
) -> NewOrderReads:
    """newOrder's reads for `names`, made from its signed request and sent with the
    account's read as a request's are (at the app's clock now), for `new_order`."""
    signed = jose.sign(flow.key, new_order_payload(*names), url="u", nonce="n", kid=flow.kid)
    reads = assembly.app.authority.new_order_reads()
    assembly.store.accounts.account(account.id, reads(jose.parse_jws(signed), account.id))
    return reads


def authorization_record(
    authz_id: str,
    name: str,
    now: datetime,
    *,
    wildcard: bool = False,
    challenge: ChallengeType = ChallengeType.HTTP_01,
) -> AuthorizationRecord:
    """Authorization `authz_id` of account "acct" for the DNS name, pending a week from
    `now`, with one pending challenge of that type (`{authz_id}h`); not written."""
    ch = ChallengeRecord(
        f"{authz_id}h", authz_id, challenge, f"t-{authz_id}", ChallengeStatus.PENDING
    )
    ident = Identifier(IdentifierType.DNS, name)
    return AuthorizationRecord(
        authz_id,
        "acct",
        ident,
        wildcard,
        AuthorizationStatus.PENDING,
        now + timedelta(days=7),
        (ch,),
    )


def order_record(
    order_id: str, authz_ids: tuple[str, ...], now: datetime, replaces: str | None = None
) -> OrderRecord:
    """Order `order_id` of account "acct" for `{authz id}.example.test` of each
    authorization, expiring a day from `now`, replacing certificate `replaces`."""
    names = tuple(Identifier(IdentifierType.DNS, f"{a}.example.test") for a in authz_ids)
    return OrderRecord(
        order_id, "acct", names, authz_ids, now + timedelta(days=1), now, replaces=replaces
    )


def reserved_certificate(
    store: Store,
    cert_id: str,
    now: datetime,
    serial: str = "1001",
    name: str = "reused.example.test",
) -> None:
    """A certificate row of account "acct" (its serial reserved) for an order to replace."""
    names = (Identifier(IdentifierType.DNS, name),)
    rec = CertificateRecord(
        cert_id, serial, None, "acct", None, names, now, now + timedelta(days=90), now
    )
    store.certificates.reserve_serial(rec)
