"""How a certificate is obtained, as certbot's `[renewalparams]` records it.

`RenewalParams` is what `certonly` was told (authenticator, server, key, challenge
ports, webroots, hooks); it is saved in the lineage's renewal conf under certbot's key
names, and read back by `renew` (from our confs and from certbot's). Keys this
program does not know are carried in `extra` and written back unchanged.

`build_solvers` turns it into the challenge solvers of the client library. Each solver
module is imported only when its authenticator is used.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acmekit.certbot import renewalconf
from acmekit.certbot.renewalconf import Section
from acmekit.client.solvers import Solver
from acmekit.hostport import parse_host_port
from acmekit.protocol.jose import PrivateKey
from acmekit.protocol.messages import ChallengeType

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from acmekit.certbot.nginx.control import NginxControl


class Authenticator(StrEnum):
    STANDALONE = "standalone"
    WEBROOT = "webroot"
    MANUAL = "manual"
    DNS_RFC2136 = "dns-rfc2136"
    DNS_HOOK = "dns-hook"
    NGINX = "nginx"


class KeyType(StrEnum):
    ECDSA = "ecdsa"
    RSA = "rsa"


_CHALLENGE_ALIASES = {
    "http": "http-01",
    "dns": "dns-01",
    "tls-alpn": "tls-alpn-01",
    "dns-persist": "dns-persist-01",
    "dns-account": "dns-account-01",
}
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1,
}


def parse_challenges(text: str | list[str]) -> tuple[ChallengeType, ...]:
    """certbot's --preferred-challenges: comma separated, short names allowed."""
    items = text if isinstance(text, list) else re.split(r"[,\s]+", text)
    found: list[ChallengeType] = []
    for item in (i.strip().lower() for i in items):
        if item:
            found.append(ChallengeType(_CHALLENGE_ALIASES.get(item, item)))
    return tuple(found)


WebrootArg = tuple[Literal["-w", "-d"], str]


def map_webroots(args: Sequence[WebrootArg]) -> dict[str, str]:
    """certbot's rule for `-w PATH` and `-d NAME` taken in command-line order: each name
    goes to the `-w` most recently before it; names before the first `-w` go to the last
    one, and are refused when there are several `-w` (certbot refuses them too)."""
    roots: list[str] = []
    names: list[str] = []
    mapping: dict[str, str] = {}
    name_first = False
    for flag, value in args:
        if flag == "-d":
            names.append(value)
            continue
        if name_first:
            raise ValueError("with several -w, one of them must come before every -d")
        if roots:
            mapping.update((n, roots[-1]) for n in names if n not in mapping)
        name_first = bool(names) and not roots
        roots.append(value)
    if roots:
        mapping.update((n, roots[-1]) for n in names if n not in mapping)
    return mapping


@dataclass(frozen=True)
class RenewalParams:
    authenticator: Authenticator
    server: str
    account: str | None = None
    key_type: KeyType = KeyType.ECDSA
    elliptic_curve: str | None = None
    rsa_key_size: int | None = None
    reuse_key: bool = False
    # certbot's: names whose authorization fails are dropped, the rest ordered again.
    allow_subset_of_names: bool = False
    pref_challs: tuple[ChallengeType, ...] = ()
    http01_port: int | None = None
    http01_address: str | None = None
    tls_alpn_01_port: int | None = None
    webroot_path: tuple[str, ...] = ()
    webroot_map: Mapping[str, str] = field(default_factory=dict)
    manual_auth_hook: str | None = None
    manual_cleanup_hook: str | None = None
    dns_rfc2136_credentials: str | None = None
    dns_propagation_seconds: float | None = None
    dns_hook: str | None = None
    dns_resolver: str | None = None
    installer: str | None = None
    nginx_server_root: str | None = None
    nginx_ctl: str | None = None
    nginx_sleep_seconds: float | None = None
    renew_hook: str | None = None
    pre_hook: str | None = None
    post_hook: str | None = None
    preferred_chain: str | None = None
    preferred_profile: str | None = None
    required_profile: str | None = None
    config_dir: str | None = None
    work_dir: str | None = None
    logs_dir: str | None = None
    # The roots the server's certificate was checked against (--ca-bundle, or
    # REQUESTS_CA_BUNDLE), so an unattended `renew` trusts the same server. certbot has
    # no such key; it keeps it among the other parameters, and certbot ignores it.
    ca_bundle: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    # -- keys ---------------------------------------------------------------------

    def new_key(self) -> PrivateKey:
        if self.key_type == KeyType.RSA:
            return rsa.generate_private_key(65537, self.rsa_key_size or 2048)
        curve = _CURVES.get(self.elliptic_curve or "secp256r1")
        if curve is None:
            raise ValueError(f"unsupported elliptic curve {self.elliptic_curve}")
        return ec.generate_private_key(curve())

    @property
    def profile(self) -> str | None:
        return self.required_profile or self.preferred_profile

    def overridden(self, given: Overrides) -> RenewalParams:
        """These params with the fields `given` on the command line taken from it."""
        changes = {name: getattr(given.values, name) for name in given.fields}
        return dataclasses.replace(self, **changes)

    # -- renewal conf ---------------------------------------------------------------

    def to_section(self) -> Section:
        doc: Section = {}
        for key, value in _ordered_items(self):
            if key not in self.extra and (value in (None, (), {}) or value is False):
                continue
            if isinstance(value, bool):
                doc[key] = "True"
            elif isinstance(value, tuple | list):
                doc[key] = [str(v) for v in value]
            elif isinstance(value, Mapping):
                doc[key] = {str(k): str(v) for k, v in value.items()}
            else:
                doc[key] = _scalar(value)
        return doc

    @classmethod
    def from_section(cls, doc: Section) -> RenewalParams:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        names = {_CONF_NAMES.get(k, k): k for k in known}
        raw = {names[k]: v for k, v in doc.items() if k in names}
        extra = {k: v for k, v in doc.items() if k not in names}
        return cls(**{k: _convert(k, v) for k, v in raw.items()}, extra=extra)


@dataclass(frozen=True)
class Overrides:
    """Options given to `renew`: certbot uses each over the lineage's renewal conf and
    saves it with the renewed certificate. Only `fields` of `values` count."""

    values: RenewalParams
    fields: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = self.fields - {f.name for f in dataclasses.fields(RenewalParams)}
        if unknown:
            raise ValueError(f"not renewal parameters: {sorted(unknown)}")


# Field name -> certbot's key (where they differ).
_CONF_NAMES = {"dns_propagation_seconds": "dns_rfc2136_propagation_seconds"}
_INT_FIELDS = {"rsa_key_size", "http01_port", "tls_alpn_01_port"}


def _ordered_items(params: RenewalParams) -> list[tuple[str, Any]]:
    items = [
        (_CONF_NAMES.get(f.name, f.name), getattr(params, f.name))
        for f in dataclasses.fields(params)
        if f.name != "extra"
    ]
    return [*items, *params.extra.items()]


def _scalar(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _convert(name: str, value: Any) -> Any:
    if name == "extra":
        return value
    if name == "webroot_map":
        return dict(value) if isinstance(value, dict) else {}
    if name == "webroot_path":
        return tuple(value) if isinstance(value, list) else (value,) if value else ()
    if name == "pref_challs":
        return parse_challenges(value) if isinstance(value, str | list) else ()
    text = value[0] if isinstance(value, list) and value else value
    if not isinstance(text, str):
        return None
    if name in ("reuse_key", "allow_subset_of_names"):
        return text.strip().lower() == "true"
    if name in _INT_FIELDS:
        return int(text)
    if name in ("dns_propagation_seconds", "nginx_sleep_seconds"):
        return float(text)
    if name == "authenticator":
        return Authenticator(text)
    if name == "key_type":
        return KeyType(text)
    return text


def params_from_conf(conf: Section) -> RenewalParams:
    section = renewalconf.get_section(conf, "renewalparams")
    if "key_type" not in section:  # certbot before 2.0 wrote no key_type: RSA
        section = {**section, "key_type": "rsa"}
    return RenewalParams.from_section(section)


# -- solvers ------------------------------------------------------------------------

Prompt = Callable[[str], Awaitable[None]]


def _resolver(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    return parse_host_port(text)


def build_solvers(
    params: RenewalParams, prompt: Prompt | None = None
) -> dict[ChallengeType, Solver]:
    """The solvers for `params.authenticator`, keyed by the challenge type each answers,
    with dns-persist-01 when --preferred-challenges asks for it (any authenticator)."""
    solvers = _authenticator_solvers(params, prompt)
    if ChallengeType.DNS_PERSIST_01 in params.pref_challs:
        solvers[ChallengeType.DNS_PERSIST_01] = _persist_solver(params, solvers, prompt)
    return solvers


def _persist_solver(
    params: RenewalParams, solvers: dict[ChallengeType, Solver], prompt: Prompt | None
) -> Solver:
    """draft-ietf-acme-dns-persist-02: publish the standing record once through the DNS
    plugin if there is one; else show it (and, interactively, wait for Enter). Once it
    stands, every later order and renewal finds it and changes nothing in DNS."""
    from acmekit.client.persist import PersistRecordText
    from acmekit.client.solvers.accountbound import DnsPersistSolver
    from acmekit.client.solvers.dns01 import Dns01Solver

    publisher = solvers.get(ChallengeType.DNS_01)
    if isinstance(publisher, Dns01Solver):
        return DnsPersistSolver(publisher)

    async def announce(record: PersistRecordText) -> None:
        text = (
            "Publish this persistent TXT record (it stays; later orders and renewals "
            f"need no DNS change):\n\n{record.zone_line()}\n"
        )
        if prompt is not None:
            await prompt(text)
        else:
            log.info("dns-persist-01 expects %s", record.zone_line())

    return DnsPersistSolver(announce=announce)


def _authenticator_solvers(
    params: RenewalParams, prompt: Prompt | None
) -> dict[ChallengeType, Solver]:
    kind = params.authenticator
    if kind == Authenticator.STANDALONE:
        return _standalone(params)
    if kind == Authenticator.WEBROOT:
        from acmekit.client.solvers.webroot import WebrootSolver

        roots = {name: Path(root) for name, root in params.webroot_map.items()}
        default = Path(params.webroot_path[-1]) if params.webroot_path else None
        return {ChallengeType.HTTP_01: WebrootSolver(roots, default_root=default)}
    if kind == Authenticator.NGINX:
        from acmekit.certbot.nginx.authenticator import NginxSolver

        solver = NginxSolver(nginx_control(params), _work_dir(params), params.http01_port or 80)
        return {ChallengeType.HTTP_01: solver}
    if kind == Authenticator.MANUAL:
        from acmekit.client.solvers.manual import ManualSolver

        manual = ManualSolver(params.manual_auth_hook, params.manual_cleanup_hook, prompt=prompt)
        return {
            ChallengeType.HTTP_01: manual,
            ChallengeType.DNS_01: manual,
            ChallengeType.DNS_ACCOUNT_01: manual,
        }
    dns01 = _dns_solver(params)
    return {
        ChallengeType.DNS_01: dns01,
        # draft-ietf-acme-dns-account-label-03: the same provider at the account's label.
        ChallengeType.DNS_ACCOUNT_01: _dns_solver(params, account_label=True),
    }


def nginx_control(params: RenewalParams) -> NginxControl:
    """How to reach nginx, from --nginx-server-root, --nginx-ctl, --nginx-sleep-seconds."""
    from acmekit.certbot.nginx.control import (
        DEFAULT_CTL,
        DEFAULT_SERVER_ROOT,
        DEFAULT_SLEEP_SECONDS,
        NginxControl,
    )

    sleep = params.nginx_sleep_seconds
    return NginxControl(
        Path(params.nginx_server_root or DEFAULT_SERVER_ROOT),
        params.nginx_ctl or DEFAULT_CTL,
        DEFAULT_SLEEP_SECONDS if sleep is None else sleep,
    )


def _work_dir(params: RenewalParams) -> Path:
    return Path(params.work_dir or "/var/lib/letsencrypt")


def _standalone(params: RenewalParams) -> dict[ChallengeType, Solver]:
    from acmekit.client.solvers.standalone import StandaloneHttpSolver

    address = params.http01_address or ""
    solvers: dict[ChallengeType, Solver] = {
        ChallengeType.HTTP_01: StandaloneHttpSolver(address, params.http01_port or 80)
    }
    if ChallengeType.TLS_ALPN_01 in params.pref_challs:
        from acmekit.client.solvers.tlsalpn import StandaloneTlsAlpnSolver

        port = params.tls_alpn_01_port or 443
        solvers[ChallengeType.TLS_ALPN_01] = StandaloneTlsAlpnSolver(address, port)
    return solvers


def _dns_solver(params: RenewalParams, *, account_label: bool = False) -> Solver:
    from acmekit.client.solvers.accountbound import DnsAccountSolver
    from acmekit.client.solvers.dns01 import Dns01Solver

    provider: Any
    resolver = _resolver(params.dns_resolver)
    if params.authenticator == Authenticator.DNS_RFC2136:
        from acmekit.client.solvers.rfc2136 import Rfc2136DnsProvider

        if not params.dns_rfc2136_credentials:
            raise ValueError("--dns-rfc2136 needs --dns-rfc2136-credentials")
        provider = Rfc2136DnsProvider.from_certbot_ini(Path(params.dns_rfc2136_credentials))
        # The server that takes the UPDATEs is the one to watch, not the system's resolver.
        resolver = resolver or (provider.server, provider.port)
    else:
        from acmekit.client.solvers.dnshook import HookDnsProvider

        if not params.dns_hook:
            raise ValueError("--dns-hook needs a command")
        provider = HookDnsProvider(params.dns_hook)
    timeout = params.dns_propagation_seconds
    kind = DnsAccountSolver if account_label else Dns01Solver
    solver: Solver = kind(
        provider,
        resolver=resolver,
        propagation_timeout=120.0 if timeout is None else timeout,
    )
    return solver


def preference(params: RenewalParams) -> tuple[ChallengeType, ...] | None:
    return params.pref_challs or None
