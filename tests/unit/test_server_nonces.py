"""Replay nonces in both scopes, on a real SQLite store; and which scope a config gets."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acmekit.protocol.jose import b64d, b64e
from acmekit.protocol.problems import AcmeError, ProblemType
from acmekit.server.config import NonceScope, load_config
from acmekit.server.nonces import NonceService
from acmekit.server.store import Store


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.from_url(f"sqlite:///{tmp_path / 'ca.db'}")


def refused(service: NonceService, nonce: str) -> str:
    with pytest.raises(AcmeError) as info:
        service.redeem(nonce)
    assert info.value.problem.type == ProblemType.BAD_NONCE
    return info.value.problem.detail


@pytest.mark.parametrize("scope", list(NonceScope))
def test_a_nonce_is_good_once(store: Store, scope: NonceScope) -> None:
    service = NonceService(store, Clock(), scope=scope)
    nonce = service.issue()
    service.redeem(nonce)
    assert "already been used" in refused(service, nonce)


@pytest.mark.parametrize("scope", list(NonceScope))
def test_expired_and_forged_nonces_are_refused(store: Store, scope: NonceScope) -> None:
    clock = Clock()
    service = NonceService(store, clock, max_age=timedelta(minutes=5), scope=scope)
    old = service.issue()
    clock.t += timedelta(minutes=6)
    assert "expired" in refused(service, old)
    raw = bytearray(b64d(service.issue()))
    raw[-1] ^= 1
    assert "not issued by this server" in refused(service, b64e(bytes(raw)))


def _macs(key: bytes, body: bytes) -> dict[str, bytes]:
    """MACs of a nonce's body that this CA must not take for its own."""
    return {
        "another key": hashlib.blake2b(body, key=bytes(32), digest_size=16).digest(),
        "another size": hashlib.blake2b(body, key=key, digest_size=32).digest()[:16],
        "hmac-sha256": hmac.digest(key, body, "sha256")[:16],
        "unkeyed": hashlib.blake2b(body, digest_size=16).digest(),
    }


@pytest.mark.parametrize("scope", list(NonceScope))
@pytest.mark.parametrize("how", sorted(_macs(b"", b"")))
def test_a_nonce_with_another_mac_is_refused(store: Store, scope: NonceScope, how: str) -> None:
    """The body of a good nonce, MACed with another key or algorithm, is badNonce."""
    service = NonceService(store, Clock(), scope=scope)
    key = bytes.fromhex(store.accounts.setting("nonce_key", ""))
    body = b64d(service.issue())[:16]
    assert "not issued by this server" in refused(service, b64e(body + _macs(key, body)[how]))
    service.redeem(b64e(body + hashlib.blake2b(body, key=key, digest_size=16).digest()))


def test_process_scope_refuses_another_process_nonce(store: Store) -> None:
    clock = Clock()
    first = NonceService(store, clock, scope=NonceScope.PROCESS)
    second = NonceService(store, clock, scope=NonceScope.PROCESS)
    nonce = first.issue()
    # The other process cannot know whether `first` took it already: it refuses it,
    # and the nonce stays good where it was issued.
    assert "another server process" in refused(second, nonce)
    first.redeem(nonce)


def test_database_scope_shares_redemption_between_processes(store: Store) -> None:
    clock = Clock()
    first = NonceService(store, clock, scope=NonceScope.DATABASE)
    second = NonceService(store, clock, scope=NonceScope.DATABASE)
    nonce = first.issue()
    second.redeem(nonce)
    assert "already been used" in refused(first, nonce)


def test_process_scope_forgets_only_what_has_expired(store: Store) -> None:
    clock = Clock()
    service = NonceService(store, clock, max_age=timedelta(minutes=5), scope=NonceScope.PROCESS)
    early = service.issue()
    service.redeem(early)
    clock.t += timedelta(minutes=3)
    late = service.issue()
    service.redeem(late)
    clock.t += timedelta(minutes=3)  # `early` is now too old to be accepted anyway
    assert service.prune() == 1
    assert "already been used" in refused(service, late)
    assert "expired" in refused(service, early)


def test_process_scope_reads_the_account(store: Store) -> None:
    service = NonceService(store, Clock(), scope=NonceScope.PROCESS)
    assert service.redeem(service.issue(), account_id="no-such-account") is None


def test_scope_follows_the_database_unless_set(tmp_path: Path) -> None:
    assert load_config(None, {"state_dir": str(tmp_path)}).nonces == NonceScope.PROCESS
    pg = load_config(None, {"db": "postgresql://postgres@127.0.0.1/test"})
    assert pg.nonces == NonceScope.DATABASE
    shared = load_config(None, {"state_dir": str(tmp_path), "nonce_scope": "database"})
    assert shared.nonces == NonceScope.DATABASE
    with pytest.raises(ValueError, match="nonce_scope 'everywhere'"):
        load_config(None, {"nonce_scope": "everywhere"})


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _respellings(nonce: str) -> dict[str, str]:
    """Other texts that a lax base64url decoder reads as the same 32 bytes."""
    last = _ALPHABET.index(nonce[-1])
    spare = _ALPHABET[last ^ 1]  # 43 characters carry 258 bits: the low 2 are spare
    return {
        "spare bit": nonce[:-1] + spare,
        "padding": nonce + "=",
        "whitespace": nonce[:20] + " " + nonce[20:],
        "stray character": nonce[:20] + "!" + nonce[20:],
        "standard alphabet": nonce.replace("-", "+").replace("_", "/"),
    }


@pytest.mark.parametrize("scope", list(NonceScope))
@pytest.mark.parametrize("how", sorted(_respellings("A" * 43)))
def test_a_respelled_nonce_is_refused(store: Store, scope: NonceScope, how: str) -> None:
    service = NonceService(store, Clock(), scope=scope)
    nonce = service.issue()
    while how == "standard alphabet" and not {"-", "_"} & set(nonce):
        nonce = service.issue()
    service.redeem(nonce)
    assert "not base64url" in refused(service, _respellings(nonce)[how])
    assert "already been used" in refused(service, nonce)


@pytest.mark.parametrize("scope", list(NonceScope))
def test_a_respelled_unused_nonce_is_refused(store: Store, scope: NonceScope) -> None:
    service = NonceService(store, Clock(), scope=scope)
    nonce = service.issue()
    assert "not base64url" in refused(service, _respellings(nonce)["spare bit"])
    service.redeem(nonce)


def test_a_pruner_with_a_fast_clock_does_not_make_a_used_nonce_good_again(store: Store) -> None:
    """Database scope, two processes: the one that prunes runs 5 minutes ahead. A nonce
    used 2 minutes before its expiry must stay used at the slower one."""
    slow, fast = Clock(), Clock()
    fast.t += timedelta(minutes=5)
    acceptor = NonceService(store, slow, scope=NonceScope.DATABASE)
    pruner = NonceService(store, fast, scope=NonceScope.DATABASE)
    nonce = acceptor.issue()
    slow.t += timedelta(minutes=58)
    fast.t += timedelta(minutes=58)
    acceptor.redeem(nonce)
    pruner.prune()
    assert "already been used" in refused(acceptor, nonce)
    # and once it has expired everywhere, it is forgotten
    slow.t += timedelta(minutes=20)
    fast.t += timedelta(minutes=20)
    assert pruner.prune() == 1
    assert "expired" in refused(acceptor, nonce)


@pytest.mark.parametrize("scope", list(NonceScope))
def test_a_nonce_from_the_future_is_refused(store: Store, scope: NonceScope) -> None:
    """A nonce stamped far ahead (a process whose clock runs fast) would otherwise be
    good for longer than max_age everywhere else."""
    now, ahead = Clock(), Clock()
    ahead.t += timedelta(hours=3)
    fast = NonceService(store, ahead, scope=scope)
    service = NonceService(store, now, scope=scope)
    future = fast.issue()
    assert "future" in refused(service, future)
    ahead.t = now.t + timedelta(minutes=1)  # a little ahead is fine
    if scope == NonceScope.DATABASE:
        service.redeem(fast.issue())
