"""Server settings: one frozen dataclass, filled from TOML and overridden by flags.

The TOML file uses the flag names (`listen`, `state_dir`, `db`, `dns_resolver`,
`http01_port`, `tlsalpn01_port`, ...) at top level; see docs/server.md.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from acmekit.server.validation import ValidationConfig


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:14000"
    state_dir: Path = Path("state")
    db: str | None = None  # default: sqlite in state_dir
    dns_resolver: str | None = None  # HOST:PORT; None means the system's resolver
    http01_port: int = 80
    tlsalpn01_port: int = 443
    validation_timeout: float = 10.0
    base_url: str | None = None  # default: https://<Host header>
    terms_of_service: str | None = None
    website: str | None = None
    caa_identities: tuple[str, ...] = ("acmekit",)
    eab_required: bool = False
    eab_keys: dict[str, str] = field(default_factory=dict)  # kid -> base64url HMAC key
    certificate_lifetime: timedelta = timedelta(days=90)
    order_lifetime: timedelta = timedelta(days=7)
    pending_authz_lifetime: timedelta = timedelta(days=7)
    valid_authz_lifetime: timedelta = timedelta(days=30)
    max_body: int = 64 * 1024
    max_identifiers: int = 100
    listener_hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
    # How long finalize waits for issuance before answering `processing` (§7.4).
    finalize_wait: float = 5.0
    # Validations and issuances without an outcome after this many seconds are taken
    # over by any server process (after a crash or a SIGKILL).
    stale_after: float = 30.0
    # Fault injection for drills and tests: seconds each signature is held back.
    issuance_delay: float = 0.0

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.state_dir / 'acmekit.db'}"

    def validation(self) -> ValidationConfig:
        resolver = None
        if self.dns_resolver:
            host, _, port = self.dns_resolver.rpartition(":")
            resolver = (host.strip("[]"), int(port))
        return ValidationConfig(
            dns_resolver=resolver,
            http01_port=self.http01_port,
            tlsalpn01_port=self.tlsalpn01_port,
            timeout=self.validation_timeout,
        )


_DURATIONS = {
    "certificate_lifetime",
    "order_lifetime",
    "pending_authz_lifetime",
    "valid_authz_lifetime",
}


def _coerce(name: str, value: Any) -> Any:
    if name in _DURATIONS:
        return timedelta(seconds=float(value))
    if name == "state_dir":
        return Path(value)
    if name in ("caa_identities", "listener_hosts"):
        return tuple(value)
    return value


def load_config(path: Path | None, overrides: dict[str, Any]) -> ServerConfig:
    """TOML file first (if any), then every override that is not None."""
    known = {f.name for f in fields(ServerConfig)}
    values: dict[str, Any] = {}
    if path is not None:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"{path}: unknown settings: {', '.join(sorted(unknown))}")
        values.update(doc)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return replace(ServerConfig(), **{k: _coerce(k, v) for k, v in values.items()})
