"""acme-dns style registrations: delegated `_acme-challenge` names with their own credentials.

A user CNAMEs `_acme-challenge.example.org` to `<subdomain>.<delegation domain>` once; from
then on a client holding only that registration's username and password can publish the
challenge TXT there (`POST /update`), and nothing else. As in acme-dns, the two most
recent values are kept so that a name and its wildcard can be validated together.

Passwords are 40 random characters, so a salted SHA-256 is enough to keep them out of
the state file; comparison is constant-time. Randomness comes from the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import dns.name

KEEP_TXT = 2
_SUBDOMAIN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


@dataclass(frozen=True)
class Registration:
    username: str
    subdomain: str
    fulldomain: str
    salt: str
    password_hash: str


def hash_password(salt: str, password: str) -> str:
    return hashlib.sha256(f"{salt}:{password}".encode()).hexdigest()


def subdomain_is_wellformed(subdomain: str) -> bool:
    return bool(_SUBDOMAIN.fullmatch(subdomain))  # `$` would take a final "\n"


class Registry:
    """Registrations by username; the domain under which their subdomains live."""

    def __init__(self, domain: dns.name.Name, registrations: Iterable[Registration] = ()) -> None:
        self.domain = domain
        self._by_user = {r.username: r for r in registrations}
        self.on_change: list[Callable[[], None]] = []

    def register(self, username: str, password: str, subdomain: str, salt: str) -> Registration:
        if not subdomain_is_wellformed(subdomain) or username in self._by_user:
            raise ValueError("bad or duplicate registration")
        fulldomain = dns.name.Name((subdomain.encode(), *self.domain.labels))
        reg = Registration(
            username=username,
            subdomain=subdomain,
            fulldomain=fulldomain.to_text(omit_final_dot=True),
            salt=salt,
            password_hash=hash_password(salt, password),
        )
        self._by_user[username] = reg
        for observer in self.on_change:
            observer()
        return reg

    def authenticate(self, username: str, password: str) -> Registration | None:
        """The registration these credentials belong to, or None."""
        reg = self._by_user.get(username)
        if reg is None:
            # Spend the same work either way, so that a miss is not faster than a bad key.
            hmac.compare_digest(hash_password("", password), "0" * 64)
            return None
        if hmac.compare_digest(hash_password(reg.salt, password), reg.password_hash):
            return reg
        return None

    def __len__(self) -> int:
        return len(self._by_user)

    def snapshot(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self._by_user.values()]

    @classmethod
    def restore(cls, domain: dns.name.Name, docs: Iterable[dict[str, Any]]) -> Registry:
        return cls(domain, (Registration(**{k: str(v) for k, v in d.items()}) for d in docs))
