"""Whatever arrives as a JWS `nonce`, redeeming it is a badNonce or success, nothing else.

The nonce codec (`server.nonces`): base64url of a time stamp, the issuing process, random
bytes and a truncated MAC. Junk of every JSON type, random and mutated base64url, and
fresh nonces with one byte changed are refused with badNonce; a fresh nonce is good once.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from acmekit.protocol.jose import b64d, b64e
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.config import NonceScope
from acmekit.server.nonces import NonceService
from acmekit.server.store import Store

STORE = Store.from_url("sqlite:///:memory:")
NOW = datetime(2026, 12, 1, tzinfo=UTC)
SERVICES = {scope: NonceService(STORE, lambda: NOW, scope=scope) for scope in NonceScope}
FAST = settings(max_examples=250, deadline=None)

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=60),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def bad_nonce(service: NonceService, nonce: object) -> None:
    try:
        service.redeem(nonce)
    except AcmeError as err:
        assert err.problem.type == ProblemType.BAD_NONCE
    else:
        raise AssertionError(f"{nonce!r} was accepted")


@FAST
@given(st.sampled_from(list(NonceScope)), junk | st.binary(max_size=48).map(b64e))
@example(NonceScope.PROCESS, "A")
@example(NonceScope.PROCESS, "====")
@example(NonceScope.PROCESS, "é" * 43)
@example(NonceScope.DATABASE, b64e(bytes(32)))
@example(NonceScope.DATABASE, b64e(b"\xff" * 8 + bytes(24)))
def test_junk_is_bad_nonce(scope: NonceScope, nonce: object) -> None:
    bad_nonce(SERVICES[scope], nonce)


@FAST
@given(st.sampled_from(list(NonceScope)), st.integers(0, 31), st.integers(1, 255))
def test_a_changed_byte_is_bad_nonce(scope: NonceScope, at: int, flip: int) -> None:
    service = SERVICES[scope]
    raw = bytearray(b64d(service.issue()))
    raw[at] ^= flip
    bad_nonce(service, b64e(bytes(raw)))


@FAST
@given(st.sampled_from(list(NonceScope)), st.integers(0, 42), st.characters())
def test_a_changed_character_is_bad_nonce_or_the_same_bytes(
    scope: NonceScope, at: int, char: str
) -> None:
    service = SERVICES[scope]
    nonce = service.issue()
    changed = nonce[:at] + char + nonce[at + 1 :]
    if changed == nonce:
        return
    try:
        service.redeem(changed)
    except AcmeError as err:
        assert err.problem.type == ProblemType.BAD_NONCE
    else:
        # Only another spelling of the same bytes may pass (the last character's unused bits).
        assert b64d(changed) == b64d(nonce)
        bad_nonce(service, nonce)


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@FAST
@given(st.sampled_from(list(NonceScope)), st.sampled_from(B64URL))
@example(NonceScope.DATABASE, "B")  # a replay once passed as another spelling of the last
@example(NonceScope.DATABASE, "A")  # character (its 2 unused bits) in database scope
def test_a_used_nonce_is_refused_in_any_spelling(scope: NonceScope, last: str) -> None:
    service = SERVICES[scope]
    nonce = service.issue()
    service.redeem(nonce)
    bad_nonce(service, nonce[:-1] + last)


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(list(NonceScope)))
def test_a_fresh_nonce_is_good_once(scope: NonceScope) -> None:
    service = SERVICES[scope]
    nonce = service.issue()
    service.redeem(nonce)
    bad_nonce(service, nonce)
