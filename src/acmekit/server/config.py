"""Server settings: frozen dataclasses, filled from TOML and overridden by flags.

The TOML file uses the flag names (`listen`, `state_dir`, `db`, `dns_resolver`,
`http01_port`, `tlsalpn01_port`, ...) at top level, and tables for the CA's policy:
`[rate_limits]` (one sub-table per limit), `[profiles.NAME]`, `[crl]`, `[ari]`, `[keys]`,
`[caa]`, `[validation]`, `[lint]`, `[hsm]`, `[ct]` and `[purge]`.
Durations are seconds. Every setting and its default is listed in docs/server.md.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from acmekit.hostport import parse_host_port

# the [limits] table; the listeners' own, shared with the CT log
from acmekit.http1 import ListenerLimits as ListenerLimits
from acmekit.protocol.dnslabels import operator_name
from acmekit.protocol.jose import b64d
from acmekit.protocol.messages import looks_like_ip
from acmekit.protocol.problems import AcmeError
from acmekit.server.caa import LOOKUPS_IN_FLIGHT, LOOKUPS_PER_ACCOUNT
from acmekit.server.mpic.quorum import Remote, Rir, check_remotes
from acmekit.server.validation import ValidationConfig
from acmekit.server.validation.dnssec import DnssecMode
from acmekit.server.validation.reserved import parse_networks
from acmekit.settings import SettingTypeError, check_type, in_file, span

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


class NonceScope(StrEnum):
    """Where used nonces are remembered (see acmekit.server.nonces)."""

    PROCESS = "process"
    DATABASE = "database"


@dataclass(frozen=True)
class Limit:
    """A token bucket: `count` tokens at most, refilled steadily over `period`.

    `overrides` maps an account ID or a registered domain to another `count`.
    """

    count: int
    period: timedelta
    overrides: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RateLimits:
    """Let's Encrypt's limits, by their names and default sizes."""

    enabled: bool = True
    new_accounts_per_ip: Limit = Limit(10, 3 * HOUR)
    new_orders_per_account: Limit = Limit(300, 3 * HOUR)
    certificates_per_domain: Limit = Limit(50, 7 * DAY)
    duplicate_certificates: Limit = Limit(5, 7 * DAY)
    failed_validations: Limit = Limit(5, HOUR)
    # Not a rate but a ceiling, as Let's Encrypt had: authorizations an account may hold
    # pending at once; a new order that would need more is refused with rateLimited.
    pending_authorizations_per_account: int = 1000


@dataclass(frozen=True)
class Profile:
    """A certificate profile (draft-ietf-acme-profiles): lifetimes and what it accepts."""

    description: str
    certificate_lifetime: timedelta = timedelta(days=90)
    order_lifetime: timedelta = timedelta(days=7)
    pending_authz_lifetime: timedelta = timedelta(days=7)
    valid_authz_lifetime: timedelta = timedelta(days=30)
    ip_identifiers: bool = True
    # How old a valid authorization (counted from its validation) may be and still be
    # reused for a new order of this profile; None: as long as it is valid. The Baseline
    # Requirements §4.2.1 bound both this and valid_authz_lifetime (schedule.py).
    authz_reuse: timedelta | None = None
    # What the certificate holds beyond the names (Let's Encrypt's `tlsserver` leaves
    # all three out): a subject commonName, the SKI extension, and the clientAuth EKU.
    common_name: bool = True
    subject_key_identifier: bool = True
    client_auth: bool = True
    # Challenge types from drafts, off unless a profile turns them on (as Boulder does):
    # dns-persist-01 (draft-ietf-acme-dns-persist) and dns-account-01
    # (draft-ietf-acme-dns-account-label). `acmekit.server.persist` says what they need.
    dns_persist_01: bool = False
    dns_account_01: bool = False


SHORTLIVED = Profile(
    description="Certificates valid for 160 hours; IP address identifiers allowed",
    certificate_lifetime=timedelta(hours=160),
    order_lifetime=timedelta(hours=7),
    pending_authz_lifetime=timedelta(hours=7),
    valid_authz_lifetime=timedelta(hours=7),
    ip_identifiers=True,
)


# As Let's Encrypt's `tlsserver` from 2026: 45-day certificates for DNS names with no
# commonName, SKI or clientAuth, and a validation reused for at most 7 hours (their 2028
# figure); inside the Baseline Requirements' schedule in 2029 too (schedule.py).
TLSSERVER = Profile(
    description="Certificates valid for 45 days for DNS names; validations reused for 7 hours",
    certificate_lifetime=timedelta(days=45),
    order_lifetime=timedelta(days=7),
    pending_authz_lifetime=timedelta(days=7),
    valid_authz_lifetime=timedelta(days=10),
    ip_identifiers=False,
    authz_reuse=timedelta(hours=7),
    common_name=False,
    subject_key_identifier=False,
    client_auth=False,
)


@dataclass(frozen=True)
class LintSettings:
    """Certificate linting before signing (lint.py; Baseline Requirements §4.3.1.2).

    `ignored`: lint codes (pkilint's) whose findings are neither errors nor warnings
    here, for a private CA that knowingly departs from a rule. `as_errors`: codes that
    block issuance although the linter calls them warnings: the CA's own policy, stricter
    than the Baseline Requirements (whose keyUsage is only a SHOULD, §7.1.2.7.11, yet a
    certificate of ours without it can only come from a broken profile).
    """

    enabled: bool = True
    ignored: tuple[str, ...] = ()
    as_errors: tuple[str, ...] = ("cabf.serverauth.subscriber.key_usage_extension_absent",)


@dataclass(frozen=True)
class CrlSettings:
    """Sharded CRLs served on plain HTTP (RFC 5280 §5)."""

    listen: str | None = "127.0.0.1:14080"  # None: no CRL listener in this process
    base_url: str | None = None  # default: http://LISTEN
    shards: int = 4
    regenerate_every: timedelta = timedelta(minutes=5)
    next_update: timedelta = DAY


@dataclass(frozen=True)
class CtSettings:
    """Certificate Transparency (RFC 6962; acmekit.server.ctsubmit): with `log_lists`
    set, every certificate is first logged as a precertificate and carries the SCTs.

    `log_lists`: files in Chrome's log list v3 schema (such as `acmekit ct` writes);
    the CA submits to every log they name. `required_scts`: how many SCTs a certificate
    needs; 0 means Chrome's and Apple's policies (2 for a lifetime up to 180 days, 3
    beyond; always from at least 2 operators when 2 or more are needed). `timeout`:
    seconds the CA waits for the logs before the order fails. `ca_bundle`: PEM roots
    that an `https://` log's certificate must chain to (default: the system's). Off (no
    lists) by default: a private CA logs nothing.
    """

    log_lists: tuple[str, ...] = ()
    required_scts: int = 0
    timeout: float = 10.0
    submit_final: bool = True  # add-chain of the final certificate, best effort
    ca_bundle: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.log_lists)


@dataclass(frozen=True)
class AriSettings:
    """ACME Renewal Information (RFC 9773)."""

    retry_after: timedelta = timedelta(hours=6)


@dataclass(frozen=True)
class PurgeSettings:
    """Deleting what the CA no longer needs (server/purge.py): orders and authorizations
    `grace` after they expired (an order only if never finalized), an authorization that
    was validated and an order whose issuance failed only `retention` after any
    certificate it could have backed expired, and rate-limit buckets that are full
    again. The housekeeping loop deletes at most `batches` batches of `batch` rows of
    each kind every `every`; `acmekit server db purge` deletes everything due. The
    grace in force is at least every profile's order_lifetime
    (`ServerConfig.purge_settings`), so no order whose status an authorization decides
    outlives it."""

    enabled: bool = True
    grace: timedelta = timedelta(days=30)
    # Baseline Requirements §5.5.2: the records of a certificate's request and its
    # validation are kept two years after the certificate ceases to be valid.
    retention: timedelta = timedelta(days=730)
    batch: int = 500
    batches: int = 1
    every: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class KeySettings:
    """Which keys the CA accepts (checked on CSRs and account keys)."""

    rsa_min_bits: int = 2048
    rsa_max_bits: int = 4096
    allow_ed25519_accounts: bool = True
    # SHA-256 hex of SubjectPublicKeyInfo; keys of certificates revoked for
    # keyCompromise are added to the database's blocklist automatically.
    blocked: tuple[str, ...] = ()


@dataclass(frozen=True)
class ValidationSettings:
    """Exceptions to what the CA refuses to validate (docs/security.md); none by default.

    `allow_networks`: CIDR networks the validation authority may connect to, and IP
    identifiers may name, although they are reserved (loopback for tests and demos).
    `allowed_special_names`: special-use domain names (RFC 6761) that may be ordered,
    each with every name under it (e.g. "test" for the demo's names).
    `dnssec`: "off", or "require-validating-resolver": every lookup asks the resolver for
    the AD bit and the CA refuses to start unless the SOA of `dnssec_probe` (a signed zone,
    the root by default) comes back authenticated (acmekit.server.validation.dnssec). In
    both modes a validating resolver's SERVFAIL for a bogus answer fails the validation.
    """

    allow_networks: tuple[str, ...] = ()
    allowed_special_names: tuple[str, ...] = ()
    dnssec: str = "off"
    dnssec_probe: str = "."


@dataclass(frozen=True)
class CaaSettings:
    """CAA (RFC 8659, RFC 8657): checked at validation and again at finalize."""

    enabled: bool = True
    recheck_after: timedelta = timedelta(hours=8)
    timeout: float = 5.0
    # Of the process's CAA lookups in flight, how many one account's checks may hold
    # (acmekit.server.caa): its share, so that an account whose names lead to silent
    # nameservers cannot leave another's check waiting out its time for a slot.
    lookups_per_account: int = LOOKUPS_PER_ACCOUNT


@dataclass(frozen=True)
class HsmSettings:
    """The intermediate's key in a PKCS#11 token (acmekit.server.hsm), as written by
    `acmekit server keys`. The PIN is read from `pin_file` or from the environment
    variable `pin_env` (exactly one), never from the command line or this file."""

    module: str
    token_label: str
    key_label: str
    pin_file: str | None = None
    pin_env: str | None = None


def _hsm(doc: Any, where: str) -> HsmSettings:
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a table")
    known = {f.name for f in fields(HsmSettings)}
    unknown = set(doc) - known
    if unknown:
        raise ValueError(f"unknown settings in {where}: {', '.join(sorted(unknown))}")
    for key in ("module", "token_label", "key_label"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ValueError(f"{where}.{key} must be set (a string)")
    for key in ("pin_file", "pin_env"):
        if doc.get(key) is not None:
            check_type(f"{where}.{key}", doc[key], "")
    if (doc.get("pin_file") is None) == (doc.get("pin_env") is None):
        raise ValueError(f"{where}: set exactly one of pin_file and pin_env")
    return HsmSettings(**doc)


@dataclass(frozen=True)
class PerspectiveSettings:
    """A remote validation perspective the CA asks (`acmekit server perspective`)."""

    url: str  # https://HOST:PORT
    name: str
    rir: str  # ARIN, RIPE, APNIC, LACNIC or AFRINIC


@dataclass(frozen=True)
class MpicSettings:
    """Multi-perspective issuance corroboration (BR §3.2.2.9; acmekit.server.mpic).

    Off by default (a private CA). On, every validation that passes at the CA is asked
    again of `perspectives`, and CAA with it, within `timeout` seconds. `client_cert` and
    `client_key` are the CA's client certificate for mutual TLS; by default
    `mpic-client.pem` / `.key` in the state directory, issued by the CA at start.
    """

    enabled: bool = False
    timeout: float = 10.0
    client_cert: str | None = None
    client_key: str | None = None
    perspectives: tuple[PerspectiveSettings, ...] = ()


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:14000"
    state_dir: Path = Path("state")
    db: str | None = None  # default: sqlite in state_dir
    # Upgrade the database's schema on start; off, a start on an old schema is refused.
    auto_upgrade: bool = True
    dns_resolver: str | None = None  # HOST:PORT; None means the system's resolver
    http01_port: int = 80
    tlsalpn01_port: int = 443
    validation_timeout: float = 10.0
    base_url: str | None = None  # default: https://<Host header>
    terms_of_service: str | None = None
    website: str | None = None
    # The organization in the root's and the intermediate's names ("NAME root" and "NAME
    # intermediate" their common names), when the CA makes its hierarchy on first start.
    ca_name: str = "acmekit"
    caa_identities: tuple[str, ...] = ("acmekit",)
    eab_required: bool = False
    eab_keys: dict[str, str] = field(default_factory=dict)  # kid -> base64url HMAC key
    # The `classic` profile's lifetimes (other profiles carry their own).
    certificate_lifetime: timedelta = timedelta(days=90)
    order_lifetime: timedelta = timedelta(days=7)
    pending_authz_lifetime: timedelta = timedelta(days=7)
    valid_authz_lifetime: timedelta = timedelta(days=30)
    max_body: int = 64 * 1024
    max_identifiers: int = 100
    # Where used nonces are remembered (acmekit.server.nonces): "process" or "database";
    # unset, "database" on PostgreSQL (several processes serve one CA) and "process" on
    # SQLite.
    nonce_scope: str | None = None
    listener_hosts: tuple[str, ...] = ("localhost", "127.0.0.1")
    # How long finalize waits for issuance before answering `processing` (§7.4).
    finalize_wait: float = 5.0
    # How long a challenge's answer waits for its validation before answering
    # `processing` (§7.5.1); a validation done by then is answered valid or invalid.
    challenge_wait: float = 1.0
    # Validations and issuances without an outcome after this many seconds are taken
    # over by any server process (after a crash or a SIGKILL).
    stale_after: float = 30.0
    # Fault injection for drills and tests: seconds each signature is held back.
    issuance_delay: float = 0.0
    rate_limits: RateLimits = RateLimits()
    default_profile: str = "classic"
    profiles: Mapping[str, Profile] = field(default_factory=dict)  # added to / replacing
    crl: CrlSettings = CrlSettings()
    ari: AriSettings = AriSettings()
    purge: PurgeSettings = PurgeSettings()
    keys: KeySettings = KeySettings()
    caa: CaaSettings = CaaSettings()
    validation: ValidationSettings = ValidationSettings()
    limits: ListenerLimits = field(default_factory=ListenerLimits)
    lint: LintSettings = LintSettings()
    hsm: HsmSettings | None = None  # the intermediate's key in a token; None: a file key
    mpic: MpicSettings = MpicSettings()
    ct: CtSettings = CtSettings()
    # The `classic` profile's draft challenge types (other profiles carry their own).
    dns_persist_01: bool = False
    dns_account_01: bool = False
    # dns-persist-01 (draft-ietf-acme-dns-persist-02 §3.1, §4.1): the names a record may
    # give as its issuer (empty: `caa_identities`, of which they must be a subset, §3.2),
    # and the prefix of hashed account URIs (unset: BASE/acme/account-hash/).
    issuer_domain_names: tuple[str, ...] = ()
    account_hash_prefix: str | None = None
    # draft-ietf-acme-dns-persist-02 §4.4: how long a new-order request may wait while a
    # standing dns-persist-01 record is checked for its new authorizations (validation,
    # CAA, MPIC); past it they stay pending. 0 turns just-in-time validation off.
    persist_jit_timeout: float = 2.0

    @property
    def host_port(self) -> tuple[str, int]:
        return split_host_port(self.listen)

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.state_dir / 'acmekit.db'}"

    @property
    def nonces(self) -> NonceScope:
        if self.nonce_scope is not None:
            return NonceScope(self.nonce_scope)
        sqlite = self.db_url.startswith("sqlite")
        return NonceScope.PROCESS if sqlite else NonceScope.DATABASE

    def purge_settings(self) -> PurgeSettings:
        """`[purge]` with its grace raised to the longest order_lifetime of any profile: an
        order made at an authorization's last moment must have expired (its status no
        longer decided by the authorization, RFC 8555 §7.1.6) before the authorization
        may go (server/purge.py). Raised, not refused, so that a configuration whose
        orders live longer than the default grace still starts."""
        longest = max(p.order_lifetime for p in self.all_profiles.values())
        return replace(self.purge, grace=max(self.purge.grace, longest))

    @property
    def all_profiles(self) -> dict[str, Profile]:
        """`classic` (from the top-level lifetimes), `shortlived`, `tlsserver`, then the
        configured ones."""
        classic = Profile(
            description=_classic_description(self.certificate_lifetime, self.default_profile),
            certificate_lifetime=self.certificate_lifetime,
            order_lifetime=self.order_lifetime,
            pending_authz_lifetime=self.pending_authz_lifetime,
            valid_authz_lifetime=self.valid_authz_lifetime,
            # As Let's Encrypt's: IP address certificates only from `shortlived`.
            ip_identifiers=False,
            dns_persist_01=self.dns_persist_01,
            dns_account_01=self.dns_account_01,
        )
        return {
            "classic": classic,
            "shortlived": SHORTLIVED,
            "tlsserver": TLSSERVER,
            **self.profiles,
        }

    @property
    def persist_issuers(self) -> tuple[str, ...]:
        """dns-persist-01's issuerDomainNames (§3.1: lowercase, no trailing dot, 1 to 10)."""
        names = self.issuer_domain_names or self.caa_identities
        return tuple(dict.fromkeys(n.lower().rstrip(".") for n in names))[:10]

    @property
    def offers_dns_persist(self) -> bool:
        return any(p.dns_persist_01 for p in self.all_profiles.values())

    def persist_hash_prefix(self, base: str) -> str:
        """§4.1: where hashed account URIs live; stable for an account's lifetime (§4.5)."""
        return self.account_hash_prefix or f"{base.rstrip('/')}/acme/account-hash/"

    @property
    def crl_base_url(self) -> str:
        if self.crl.base_url:
            return self.crl.base_url.rstrip("/")
        host, port = split_host_port(self.crl.listen or "127.0.0.1:14080")
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}"

    def validation_config(self) -> ValidationConfig:
        resolver = None
        if self.dns_resolver:
            resolver = split_host_port(self.dns_resolver)
        return ValidationConfig(
            dns_resolver=resolver,
            http01_port=self.http01_port,
            tlsalpn01_port=self.tlsalpn01_port,
            timeout=self.validation_timeout,
            allow_networks=self.validation.allow_networks,
            dnssec=DnssecMode(self.validation.dnssec),
        )


_LIFETIMES = (
    "certificate_lifetime",
    "order_lifetime",
    "pending_authz_lifetime",
    "valid_authz_lifetime",
)


def _check_ranges(config: ServerConfig) -> None:
    """Refuse at start, in one line, what would otherwise fail every issuance later: a
    lifetime of zero or less gives notAfter before notBefore (RFC 5280 §4.1.2.5), and no
    CRL shard leaves no CRL to name in a certificate (`serial % shards`)."""
    for name, profile in config.all_profiles.items():
        for setting in _LIFETIMES:
            value = getattr(profile, setting)
            if value <= timedelta(0):
                # `classic` holds the top-level value unless its table set another: name
                # what the operator wrote (a [profiles.classic] with only a description
                # was reported as profiles.classic.certificate_lifetime)
                top = name == "classic" and value == getattr(config, setting)
                where = setting if top else f"profiles.{name}.{setting}"
                raise ValueError(f"{where} must be more than 0 seconds")
        if profile.authz_reuse is not None and profile.authz_reuse < timedelta(0):
            raise ValueError(f"profiles.{name}.authz_reuse must be 0 seconds or more")
    if config.crl.shards < 1:
        raise ValueError(f"crl.shards = {config.crl.shards}: there must be at least 1 shard")
    if config.crl.next_update <= timedelta(0):
        raise ValueError("crl.next_update must be more than 0 seconds")
    _check_service_ranges(config)


CA_NAME_MAX = 64 - len(" intermediate")


def _check_service_ranges(config: ServerConfig) -> None:
    """As `_check_ranges`, for what would refuse every client: max_identifiers below 1
    refused every order and, as the validations cap, every challenge (rateLimited); a
    negative [limits] bound is not off (0 is) but always passed: header_timeout -1
    closed every connection at once, max_body_bytes -1 answered every request 413."""
    name = config.ca_name
    if not 0 < len(name) <= CA_NAME_MAX or not name.isprintable() or name != name.strip():
        # RFC 5280 Appendix A: an organizationName or commonName holds at most 64
        # characters, and the common names add " intermediate" to this name. Spaces
        # around it would be part of the name in every certificate.
        raise ValueError(
            f"ca_name must be 1 to {CA_NAME_MAX} printable characters, no spaces around them"
        )
    if config.max_identifiers < 1:
        raise ValueError(f"max_identifiers = {config.max_identifiers}: it must be 1 or more")
    for name in ("validation_timeout", "stale_after"):
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be more than 0 seconds")
    for name in ("challenge_wait", "finalize_wait"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be 0 seconds or more")
    per_account = config.caa.lookups_per_account
    if type(per_account) is not int or not 1 <= per_account <= LOOKUPS_IN_FLIGHT:
        # A share of 0 would refuse every check's lookups; above the total, no share.
        raise ValueError(
            f"caa.lookups_per_account = {per_account}: it must be a whole number from 1 to"
            f" {LOOKUPS_IN_FLIGHT} (the process's CAA lookups in flight)"
        )
    for f in fields(config.limits):
        if getattr(config.limits, f.name) < 0:
            raise ValueError(f"limits.{f.name} must be 0 or more (0 switches it off)")


def _classic_description(lifetime: timedelta, default_profile: str) -> str:
    """The description follows the settings: an operator who shortens the lifetime or
    makes another profile the default must not see the directory say otherwise."""
    default = " (the default)" if default_profile == "classic" else ""
    return f"Certificates valid for {span(lifetime.total_seconds())} for DNS names{default}"


def split_host_port(text: str) -> tuple[str, int]:
    return parse_host_port(text)


_DURATIONS = {
    "certificate_lifetime",
    "order_lifetime",
    "pending_authz_lifetime",
    "valid_authz_lifetime",
    "period",
    "regenerate_every",
    "next_update",
    "retry_after",
    "recheck_after",
    "authz_reuse",
    "grace",
    "retention",
    "every",
}


def _seconds(value: Any, where: str) -> timedelta:
    """A duration in seconds; one past timedelta's range (or inf, nan) refused in one
    line rather than an OverflowError."""
    try:
        return timedelta(seconds=float(value))
    except (OverflowError, ValueError):
        raise SettingTypeError(where, value, "a number of seconds that fits a date") from None


def _table(cls: type[Any], default: Any, doc: Any, where: str, **nested: Callable[..., Any]) -> Any:
    """`default` with the fields that `doc` (a TOML table) sets; unknown keys are errors."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a table")
    known = {f.name for f in fields(cls)}
    unknown = set(doc) - known
    if unknown:
        raise ValueError(f"unknown settings in {where}: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in nested and key != "overrides":
            _check_type(f"{where}.{key}", value, getattr(default, key))
        if key in nested:
            values[key] = nested[key](getattr(default, key), value, f"{where}.{key}")
        elif key in _DURATIONS:
            values[key] = _seconds(value, f"{where}.{key}")
        elif key == "overrides":
            values[key] = _overrides(value, f"{where}.overrides")
        else:
            values[key] = value
    return replace(default, **values)


def _overrides(doc: Any, where: str) -> dict[str, int]:
    """A limit's overrides: key (account ID, registered domain, IP) to a whole `count`."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a table of KEY = COUNT")
    for key, count in doc.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f'{where}: "{key}" = {count!r} must be a whole number, 0 or more')
    return {str(k): int(v) for k, v in doc.items()}


def _limit(default: Limit, doc: Any, where: str) -> Limit:
    limit: Limit = _table(Limit, default, doc, where)
    return limit


def _rate_limits(default: RateLimits, doc: Any, where: str) -> RateLimits:
    names = {f.name for f in fields(RateLimits) if isinstance(f.default, Limit)}
    limits: RateLimits = _table(RateLimits, default, doc, where, **dict.fromkeys(names, _limit))
    return limits


def _profiles(config: ServerConfig, doc: Any, where: str) -> dict[str, Profile]:
    """The `[profiles.NAME]` tables over the built-in profiles of `config`, whose
    top-level settings are already read: a table changes only the fields it names, so
    `[profiles.classic]` keeps the top-level lifetimes it does not set."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a table of profiles")
    builtin = config.all_profiles
    # A new profile starts from `classic`'s defaults (docs/server.md), IP identifiers
    # refused included: a bare Profile() would allow them (RFC 8738) unasked.
    base = replace(ServerConfig().all_profiles["classic"], description="")
    out: dict[str, Profile] = {}
    for name, table in doc.items():
        profile = _table(Profile, builtin.get(name) or base, table, f"{where}.{name}")
        if name == "classic" and "description" not in table:
            lifetime = profile.certificate_lifetime
            profile = replace(
                profile, description=_classic_description(lifetime, config.default_profile)
            )
        out[name] = profile
    return out


_NESTED: dict[str, Callable[..., Any]] = {
    "rate_limits": _rate_limits,
    "crl": lambda d, doc, w: _table(CrlSettings, d, doc, w),
    "ari": lambda d, doc, w: _table(AriSettings, d, doc, w),
    "purge": lambda d, doc, w: _table(PurgeSettings, d, doc, w),
    "keys": lambda d, doc, w: replace(
        _table(KeySettings, d, doc, w), blocked=tuple(doc.get("blocked", d.blocked))
    ),
    "caa": lambda d, doc, w: _table(CaaSettings, d, doc, w),
    "validation": lambda d, doc, w: _validation(_table(ValidationSettings, d, doc, w)),
    "limits": lambda d, doc, w: _table(ListenerLimits, d, doc, w),
    "lint": lambda d, doc, w: replace(
        _table(LintSettings, d, doc, w),
        ignored=tuple(doc.get("ignored", d.ignored)),
        as_errors=tuple(doc.get("as_errors", d.as_errors)),
    ),
    "hsm": lambda d, doc, w: _hsm(doc, w),
    "mpic": lambda d, doc, w: _mpic(_table(MpicSettings, d, doc, w, perspectives=_perspectives)),
    "ct": lambda d, doc, w: replace(
        _table(CtSettings, d, doc, w), log_lists=tuple(doc.get("log_lists", d.log_lists))
    ),
}


def _perspectives(default: object, doc: Any, where: str) -> tuple[PerspectiveSettings, ...]:
    if not isinstance(doc, list):
        raise ValueError(f"{where} must be an array of tables (url, name, rir)")
    out = []
    for i, table in enumerate(doc):
        at = f"{where}[{i}]"
        if not isinstance(table, dict) or set(table) != {"url", "name", "rir"}:
            raise ValueError(f"{at} needs exactly url, name and rir")
        if not all(isinstance(v, str) for v in table.values()):
            raise ValueError(f"{at}: url, name and rir are strings")
        if not table["url"].startswith("https://"):
            raise ValueError(f"{at}.url {table['url']!r}: perspectives are asked over https")
        # Upper case for ASCII only: the dotless i (U+0131) upper-cases to "I", so that
        # "ar\u0131n" read as "ARIN".
        rir = table["rir"].upper() if table["rir"].isascii() else table["rir"]
        out.append(PerspectiveSettings(table["url"], table["name"], rir))
    return tuple(out)


def _mpic(settings: MpicSettings) -> MpicSettings:
    """Perspectives that could never meet the quorum rule are refused at start."""
    rirs = " ".join(Rir)
    for p in settings.perspectives:
        if p.rir not in tuple(Rir):
            raise ValueError(f"mpic perspective {p.name!r}: rir {p.rir!r} is not one of {rirs}")
    if settings.enabled:
        try:
            check_remotes([Remote(p.name, Rir(p.rir)) for p in settings.perspectives])
        except ValueError as exc:
            raise ValueError(f"mpic: {exc}") from None
    return settings


def _validation(settings: ValidationSettings) -> ValidationSettings:
    """Lists as tuples; a network that does not parse is refused at start."""
    networks = tuple(settings.allow_networks)
    parse_networks(networks)
    names = special_names("validation.allowed_special_names", settings.allowed_special_names)
    if settings.dnssec not in tuple(DnssecMode):
        modes = " or ".join(repr(str(m)) for m in DnssecMode)
        raise ValueError(f"validation.dnssec {settings.dnssec!r}: use {modes}")
    return replace(settings, allow_networks=networks, allowed_special_names=names)


def operator_names(where: str, names: Iterable[str]) -> tuple[str, ...]:
    """Names the operator gives (a domain name of one label or more), each checked as a
    dns identifier is and lower-cased (`acmekit.protocol.dnslabels.operator_name`): ValueError in
    one line naming `where` and the first bad value."""
    return tuple(operator_name(where, n, single_label=True) for n in names)


def special_names(where: str, names: Iterable[str]) -> tuple[str, ...]:
    """`allowed_special_names` as the name policy compares them: `operator_names`, a
    leading dot (`.test`, the names under it) dropped."""
    return operator_names(where, (n.removeprefix(".") for n in names))


def _host_names(where: str, hosts: Iterable[str]) -> tuple[str, ...]:
    """`listener_hosts`: IP addresses as given, names as `operator_names`."""
    return tuple(_host_name(where, h) for h in hosts)


def _host_name(where: str, host: str) -> str:
    """One of `listener_hosts`. An IPv6 address in brackets, as a URL or a Host header
    writes it (RFC 3986 §3.2.2's IP-literal), is that address: the listener's certificate
    always took it so, and a setting a server ran on is not refused after an upgrade."""
    if looks_like_ip(host):
        return host
    inner = host[1:-1] if host[:1] == "[" and host[-1:] == "]" else ""
    if ":" in inner and looks_like_ip(inner):
        return ipaddress.ip_address(inner).compressed
    return operator_names(where, [host])[0]


def _check_type(where: str, value: Any, default: Any) -> None:
    """A setting must have its default's type (a number where seconds are meant): a typo
    is refused at start, not discovered as a failure on the first request."""
    check_type(where, value, default, seconds=where.rsplit(".")[-1] in _DURATIONS)


def _coerce(name: str, value: Any, default: ServerConfig) -> Any:
    if name not in _NESTED:
        _check_type(name, value, getattr(default, name))
    if name in _NESTED:
        return _NESTED[name](getattr(default, name), value, name)
    if name in _DURATIONS:
        return _seconds(value, name)
    if name == "state_dir":
        return Path(value)
    if name in ("caa_identities", "listener_hosts", "issuer_domain_names"):
        return tuple(value)
    return value


_VALIDATION_FLAGS = ("allow_networks", "allowed_special_names")


def _check_persist(config: ServerConfig) -> None:
    """draft-ietf-acme-dns-persist-02 §3.1/§3.2: 1 to 10 issuer domain names, each also
    among the CAA identities the directory advertises."""
    names = config.issuer_domain_names
    if len(names) > 10:
        raise ValueError("issuer_domain_names: at most 10 names")
    caa = {n.lower().rstrip(".") for n in config.caa_identities}
    missing = [n for n in config.persist_issuers if n not in caa]
    if missing:
        raise ValueError(f"issuer_domain_names {missing} must also be in caa_identities")


# `[purge]`'s bounds. A batch's authorizations' challenges go in one DELETE with a
# parameter per authorization: PostgreSQL takes at most 65,535 (70,000 committed the
# orders' batch, then failed the authorizations' every round); a batch of 10,000 is
# already a long transaction beside the requests. A duration past a century only
# overflowed the cutoffs' dates (`now - grace` before year 1: every purge failed).
PURGE_MAX_BATCH = 10_000
PURGE_MAX_BATCHES = 1_000
PURGE_MAX_DURATION = timedelta(days=36_500)


def _check_purge(config: ServerConfig) -> None:
    """Whole numbers of rows and batches within their bounds, durations within a
    century: what would otherwise fail every purge, refused at start in one line."""
    purge = config.purge
    for name, most in (("batch", PURGE_MAX_BATCH), ("batches", PURGE_MAX_BATCHES)):
        value = getattr(purge, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise ValueError(f"purge.{name} = {value!r} must be a whole number from 1 to {most}")
    years = PURGE_MAX_DURATION.days // 365
    for name, least in (("grace", 0), ("retention", 0), ("every", 1)):
        value = getattr(purge, name)
        if not timedelta(seconds=least) <= value <= PURGE_MAX_DURATION:
            raise ValueError(
                f"purge.{name} = {value.total_seconds():g} must be from {least} seconds "
                f"to {years} years ({PURGE_MAX_DURATION.total_seconds():.0f} seconds)"
            )


def _check_eab_key(kid: str, key: object) -> None:
    """An EAB key the CA could not decode would fail every client that uses it, blamed on
    them (RFC 8555 §7.3.4 keys are base64url, read strictly); refuse it at start."""
    try:
        if not isinstance(key, str) or not b64d(key):
            raise ValueError
    except (AcmeError, ValueError):
        raise ValueError(f"eab_keys.{kid}: not an unpadded base64url key") from None


def load_config(path: Path | None, overrides: dict[str, Any]) -> ServerConfig:
    """TOML file first (if any), then every override that is not None.

    `crl_listen` in `overrides` sets `crl.listen` (the `--crl-listen` flag);
    `allow_networks` and `allowed_special_names` extend the `[validation]` lists.
    """
    known = {f.name for f in fields(ServerConfig)}
    values: dict[str, Any] = {}
    if path is not None:
        with path.open("rb") as fh:
            try:
                doc = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"{path}: not valid TOML: {exc}") from None
        unknown = set(doc) - known
        if unknown:
            raise ValueError(f"{path}: unknown settings: {', '.join(sorted(unknown))}")
        values.update(doc)
    crl_listen = overrides.pop("crl_listen", None)
    ct_log_lists = tuple(overrides.pop("ct_log_lists", None) or ())
    ct_required = overrides.pop("ct_required_scts", None)
    extra = {k: tuple(overrides.pop(k, None) or ()) for k in _VALIDATION_FLAGS}
    values.update({k: v for k, v in overrides.items() if v is not None})
    profiles = values.pop("profiles", None)
    base = ServerConfig()
    try:
        config = replace(base, **{k: _coerce(k, v, base) for k, v in values.items()})
        if profiles is not None:  # after the top-level settings that `classic` is made of
            config = replace(config, profiles=_profiles(config, profiles, "profiles"))
    except SettingTypeError as exc:  # only the file's values can be of the wrong type
        raise ValueError(in_file(path or "flags", exc)) from None
    if crl_listen is not None:
        config = replace(config, crl=replace(config.crl, listen=crl_listen or None))
    if ct_log_lists or ct_required is not None:
        ct = config.ct
        ct = replace(ct, log_lists=(*ct.log_lists, *ct_log_lists))
        if ct_required is not None:
            ct = replace(ct, required_scts=int(ct_required))
        config = replace(config, ct=ct)
    if config.ct.required_scts < 0 or config.ct.timeout <= 0:
        raise ValueError("[ct] required_scts must be 0 or more and timeout positive")
    if any(extra.values()):
        given = config.validation
        doc = {k: (*getattr(given, k), *extra[k]) for k in _VALIDATION_FLAGS}
        config = replace(config, validation=_NESTED["validation"](given, doc, "flags"))
    if config.default_profile not in config.all_profiles:
        raise ValueError(f"default_profile {config.default_profile!r} is not a profile")
    _check_ranges(config)
    _check_purge(config)
    for kid, key in config.eab_keys.items():
        _check_eab_key(kid, key)
    config = replace(
        config,
        caa_identities=operator_names("caa_identities", config.caa_identities),
        issuer_domain_names=operator_names("issuer_domain_names", config.issuer_domain_names),
        listener_hosts=_host_names("listener_hosts", config.listener_hosts),
    )
    _check_persist(config)
    if config.db and not config.db.startswith(("sqlite:///", "postgresql://", "postgresql+")):
        raise ValueError(f"db {config.db!r}: use sqlite:///FILE or postgresql://USER@HOST/DB")
    if config.nonce_scope not in (None, *NonceScope):
        scopes = " or ".join(repr(str(s)) for s in NonceScope)
        raise ValueError(f"nonce_scope {config.nonce_scope!r}: use {scopes}")
    for name in ("listen", "dns_resolver"):
        if getattr(config, name):
            parse_host_port(getattr(config, name))
    return config
