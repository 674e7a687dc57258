"""What certbot's commands do, over the client library and certbot's files on disk.

`CertManager` holds one config dir (lineages, accounts, renewal hooks) and one work
dir (locks), and one `Client` per ACME server, shared by every lineage of a run.

- `obtain` (certonly): find or register the account; under the lock of the name,
  look again: the lineage with exactly these names (or `--cert-name`) is renewed only
  when due or forced, otherwise kept; a new lineage gets the first free name (`NAME`,
  `NAME-0001`, ...). A dry run talks to the server but saves nothing and runs no
  deploy hook.
- `renew`: every lineage (ours and certbot's), each under its lock, renewed when the
  renewal policy says so, with the options given for the run over its renewal conf.
- `obtain_for_csr` (certonly --csr): a certificate for a CSR made elsewhere, no lineage.
- Hooks, for all three alike (see `hooks`): pre hooks before the first request, deploy
  hooks after each success, post hooks once at the end; none when nothing is requested
  or deployed. A version a stopped run left live, or about to go live, without its
  deploy hooks (`LineageStore.deploy_owed`) is deployed by the next run that looks at
  its lineage, and that run's post hooks follow, as they would have followed the
  stopped run's; no pre hook runs for it, nothing being requested.
- `revoke` (then delete the lineage, as certbot does), `delete`, and the account
  commands (`register`, `account`, `update_account`, `unregister`).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acmekit.certbot.accounts import AccountStore, StoredAccount
from acmekit.certbot.hooks import HookRunner
from acmekit.certbot.lineage import CertFiles, Lineage, LineageError, LineageStore
from acmekit.certbot.locks import lineage_lock
from acmekit.certbot.renewalconf import get_str
from acmekit.certbot.renewalparams import (
    Overrides,
    Prompt,
    RenewalParams,
    build_solvers,
    nginx_control,
    params_from_conf,
)
from acmekit.client.client import Client, ExternalAccountBinding
from acmekit.client.errors import ClientError, ServerProtocolError
from acmekit.client.persist import PersistRecordText
from acmekit.client.renewal import AriWindow, RenewalDecision, decide, parse_interval
from acmekit.client.resources import Account, IssuedCertificate, RenewalInfo
from acmekit.client.solvers import close_solvers
from acmekit.client.transport import TransportError
from acmekit.clock import Clock, SystemClock
from acmekit.files import atomic_write
from acmekit.lifecycle import AsyncClosing
from acmekit.protocol.ari import cert_id_of
from acmekit.protocol.csr import make_csr
from acmekit.protocol.jose import PrivateKey
from acmekit.protocol.problems import AcmeError

if TYPE_CHECKING:
    from acmekit.certbot.nginx.installer import InstallReport

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    work_dir: Path
    logs_dir: Path


@dataclass(frozen=True)
class AccountOptions:
    email: tuple[str, ...] = ()
    agree_tos: bool = False
    without_email: bool = False
    eab: ExternalAccountBinding | None = None
    account_id: str | None = None


@dataclass(frozen=True)
class RunOptions:
    """certbot's flags that change one run, never saved in a renewal conf:
    `new_key` (a fresh key even with reuse_key), `directory_hooks` (run
    `renewal-hooks/`), `run_deploy_hooks` (deploy hooks on a dry run too),
    `user_agent`, and `issuance_timeout` (seconds to wait for the certificate after
    finalize)."""

    new_key: bool = False
    directory_hooks: bool = True
    run_deploy_hooks: bool = False
    user_agent: str | None = None
    issuance_timeout: float | None = None


# `extra` of a log record whose message the caller also reports to the user: a console
# handler leaves it out, so that nothing is printed twice (the log file keeps it).
REPORTED = {"reported": True}


# Asks the person at the terminal a question; their answer (stripped), "" for none.
Question = Callable[[str], Awaitable[str]]

EMAIL_QUESTION = (
    "Enter email address (used for urgent renewal and security notices)\n (Enter 'c' to cancel): "
)


def terms_question(url: str) -> str:
    return (
        f"Please read the Terms of Service at\n{url}\nYou must agree in order to register "
        "with the ACME server. Do you agree?\n(Y)es/(N)o: "
    )


@dataclass(frozen=True)
class Outcome:
    """What happened to one certificate."""

    name: str
    domains: tuple[str, ...]
    # "issued", "renewed", "kept", "simulated", "failed", "not due", "adopted": a
    # version a killed run had written and not switched to, taken up and deployed, or
    # "deployed": the live version, whose deploy hooks a stopped run had not finished
    action: str
    live_dir: Path | None = None
    not_after: datetime | None = None
    error: str | None = None
    # "not due": when it becomes due, and by what (the CA's ARI window, or the lifetime)
    renew_at: datetime | None = None
    by_ari: bool = False
    exception: BaseException | None = field(default=None, compare=False)  # "failed"


@dataclass(frozen=True)
class RenewOptions:
    cert_name: str | None = None
    dry_run: bool = False
    force: bool = False
    max_random_sleep: float = 0.0
    # Told the seconds of the random delay before it starts (certbot says it, too).
    before_sleep: Callable[[float], None] | None = None
    # Options given on the command line: used over each renewal conf, and saved in it
    # when the certificate is renewed (certbot's `renew` does both).
    overrides: Overrides | None = None


@dataclass(frozen=True)
class RenewReport:
    outcomes: tuple[Outcome, ...] = field(default_factory=tuple)
    hook_failures: int = 0

    @property
    def ok(self) -> bool:
        return self.hook_failures == 0 and all(o.action != "failed" for o in self.outcomes)


def csr_names(csr: x509.CertificateSigningRequest) -> list[str]:
    """The DNS names and IP addresses a CSR asks for."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    return names + [str(i) for i in san.get_values_for_type(x509.IPAddress)]


@dataclass(frozen=True)
class CsrOutputs:
    """Where certonly --csr writes: given paths, else certbot's `NNNN_cert.pem` and
    siblings, numbered from 0000 in the current directory."""

    cert: Path | None = None
    chain: Path | None = None
    fullchain: Path | None = None

    def write(self, issued: IssuedCertificate) -> list[Path]:
        written = []
        for path, stem, text in (
            (self.cert, "cert", issued.cert_pem),
            (self.chain, "chain", issued.chain_pem),
            (self.fullchain, "fullchain", issued.fullchain_pem),
        ):
            target = path or _free_numbered(stem)
            atomic_write(target.absolute(), text.encode())
            written.append(target)
        return written


def _free_numbered(stem: str) -> Path:
    for n in range(10000):
        candidate = Path(f"{n:04d}_{stem}.pem")
        if not candidate.exists():
            return candidate
    raise ClientError(f"no free file name for {stem}")


def key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, None)
    if not isinstance(key, PrivateKey):
        raise ClientError("unsupported private key type")
    return key


async def choose_profile(client: Client, params: RenewalParams) -> str | None:
    """certbot's rule: a required profile is asked for as is (a CA without it refuses);
    a preferred one only when the CA's directory offers it, else the CA's default."""
    wanted = params.preferred_profile
    if params.required_profile or not wanted:
        return params.required_profile
    if wanted in (await client.directory()).profiles:
        return wanted
    log.info("the server offers no profile %r; using its default", wanted)
    return None


def version_string() -> str:
    try:
        return package_version("acmekit")
    except Exception:  # not installed as a distribution
        return "0.0.0"


class CertManager(AsyncClosing):
    def __init__(
        self,
        paths: Paths,
        *,
        ca_bundle: str | None = None,
        clock: Clock | None = None,
        prompt: Prompt | None = None,
        question: Question | None = None,
        lock_timeout: float = 600.0,
        account_options: AccountOptions = AccountOptions(),
        rand: Callable[[], float] = random.random,
        run_options: RunOptions = RunOptions(),
    ) -> None:
        self.paths = paths
        self.lineages = LineageStore(paths.config_dir)
        self.accounts = AccountStore(paths.config_dir)
        self.ca_bundle = ca_bundle
        self.clock = clock or SystemClock()
        self.prompt = prompt
        self.question = question  # None: never ask (no terminal, or --non-interactive)
        self.lock_timeout = lock_timeout
        self.account_options = account_options
        self.run_options = run_options
        # Where in an ARI window to renew (RFC 9773 §4.2: uniformly at random).
        self.rand = rand
        self._clients: dict[tuple[str, str, str | None], Client] = {}

    async def close(self) -> None:
        """Close every server's Client made by this run."""
        for client in self._clients.values():
            await client.close()

    # -- accounts ------------------------------------------------------------------

    def _client(
        self,
        server: str,
        account: StoredAccount | None,
        key: PrivateKey,
        saved_ca_bundle: str | None = None,
    ) -> Client:
        """`saved_ca_bundle` (a lineage's) counts when this run was given none."""
        ident = account.id if account else "new"
        bundle = self.ca_bundle or saved_ca_bundle
        client = self._clients.get((server, ident, bundle))
        if client is None:
            url = account.uri if account else None
            client = Client(
                server,
                key,
                account_url=url,
                ca_bundle=bundle,
                user_agent=self.run_options.user_agent,
                issuance_timeout=self.run_options.issuance_timeout,
            )
            self._clients[(server, ident, bundle)] = client
        return client

    def stored_account(self, server: str, ident: str | None = None) -> StoredAccount | None:
        found = self.accounts.find(server, ident)
        if found is None and ident is not None:
            found = self.accounts.find(server)
        return found

    async def account_client(self, server: str, *, register: bool = True) -> tuple[Client, str]:
        """A client with a usable account for `server`, registering one if allowed."""
        opts = self.account_options
        found = self.stored_account(server, opts.account_id)
        if found is not None:
            return self._client(server, found, found.key), found.id
        if not register:
            raise ClientError(f"no account for {server} in {self.paths.config_dir}")
        return await self.register(server)

    async def register(self, server: str) -> tuple[Client, str]:
        opts = self.account_options
        if self.accounts.find(server) is not None:
            raise ClientError(f"there is an existing account for {server}")
        key = ec.generate_private_key(ec.SECP256R1())
        client = Client(
            server, key, ca_bundle=self.ca_bundle, user_agent=self.run_options.user_agent
        )
        try:
            emails, agreed = await self._registration(client, opts)
            contact = [f"mailto:{e}" for e in emails]
            account = await client.register(contact, agree_tos=agreed, eab=opts.eab)
        except BaseException:
            await client.close()  # nothing else will: it is not kept on failure
            raise
        stored = self.accounts.save(server, key, account.url, self.clock.now())
        self._clients[(server, stored.id, self.ca_bundle)] = client
        log.info("registered account %s", stored.id)
        return client, stored.id

    async def _registration(
        self, client: Client, opts: AccountOptions
    ) -> tuple[tuple[str, ...], bool]:
        """The contacts and the terms' agreement for a new account: from the flags, else
        asked at the terminal as certbot asks; what is still missing is named at once.
        Terms are agreed to only where the server publishes some (RFC 8555 §7.1.1
        `meta.termsOfService`); EAB only where it requires it."""
        directory = await client.directory()
        terms = directory.terms_of_service
        emails, agreed = opts.email, opts.agree_tos
        missing: list[str] = []
        if not emails and not opts.without_email:
            if self.question is not None:
                answer = await self.question(EMAIL_QUESTION)
                if answer.lower() == "c":
                    raise ClientError("registration cancelled: no e-mail address given")
                emails = tuple(e.strip() for e in answer.split(",") if e.strip())
            if not emails:
                missing.append("-m EMAIL (or --register-unsafely-without-email)")
        if terms is not None and not agreed:
            if self.question is not None:
                answer = await self.question(terms_question(terms))
                if answer.lower() not in ("y", "yes"):
                    raise ClientError(f"the server's terms of service ({terms}) were not agreed to")
                agreed = True
            else:
                missing.append(f"--agree-tos (to the terms of service at {terms})")
        if directory.external_account_required and opts.eab is None:
            missing.append("--eab-kid KID --eab-hmac-key KEY (the server requires EAB)")
        if missing:
            raise ClientError(f"registering needs {'; '.join(missing)}")
        return emails, agreed

    async def account(self, server: str) -> Account:
        """The stored account for `server` as the server has it now."""
        client, _ = await self.account_client(server, register=False)
        return await client.account()

    async def persist_records(
        self,
        server: str,
        names: Sequence[str],
        *,
        wildcard: bool = False,
        persist_until: int | None = None,
        issuer: str | None = None,
        any_domain: bool = False,
    ) -> list[PersistRecordText]:
        """The dns-persist-01 records for the stored account (draft-ietf-acme-dns-persist
        -02 §4.5): made from the directory and the account, no order placed."""
        client, _ = await self.account_client(server, register=False)
        return [
            await client.persist_record(
                name,
                wildcard=wildcard,
                persist_until=persist_until,
                issuer=issuer,
                any_domain=any_domain,
            )
            for name in names
        ]

    async def update_account(self, server: str, contact: Sequence[str]) -> Account:
        client, _ = await self.account_client(server, register=False)
        return await client.update_account(contact)

    async def unregister(self, server: str) -> None:
        """Deactivate the account at the server (RFC 8555 §7.3.6), then forget it here."""
        found = self.stored_account(server, self.account_options.account_id)
        if found is None:
            raise ClientError(f"no account for {server}")
        client, _ = await self.account_client(server, register=False)
        await client.deactivate_account()
        self.accounts.delete(found)

    # -- issuing ---------------------------------------------------------------------

    async def _issue(
        self,
        client: Client,
        params: RenewalParams,
        names: Sequence[str],
        csr_der: bytes,
        hooks: HookRunner,
        replacing: Lineage | None = None,
        dry_run: bool = False,
    ) -> IssuedCertificate:
        """The one place a certificate is requested, for certonly (with or without a
        CSR) and renew alike: pre hooks first, post hooks scheduled for the end of the
        run (certbot runs neither when nothing is requested)."""
        await hooks.pre([params.pre_hook])
        hooks.schedule_post([params.post_hook])
        solvers = build_solvers(params, self.prompt)
        replaces = await self._replaces(client, replacing)
        try:
            return await client.issue(
                names,
                solvers,
                csr_der,
                preference=params.pref_challs or None,
                profile=await choose_profile(client, params),
                preferred_chain=params.preferred_chain,
                replaces=replaces,
                fresh=dry_run,
            )
        finally:
            await close_solvers(solvers.values())

    async def obtain(
        self,
        names: Sequence[str],
        params: RenewalParams,
        *,
        cert_name: str | None = None,
        dry_run: bool = False,
        force: bool = False,
        expand: bool = False,
        duplicate: bool = False,
    ) -> Outcome:
        """certonly: a new lineage, or a new version of the one with these names (with
        `expand`, of one whose names are all among them, as certbot's --expand; with
        `duplicate`, always a new lineage, as certbot's --duplicate)."""
        if cert_name is None and not duplicate:
            grown = await self._expandable(names, expand)
            cert_name = grown.name if grown is not None else None
        client, account = await self.account_client(params.server)
        params = dataclasses.replace(params, account=account)
        hooks = HookRunner(self.paths.config_dir, use_directories=False)

        async def work(names: Sequence[str]) -> Outcome:
            return await self._obtain(
                client, names, params, cert_name, dry_run, force, hooks, duplicate
            )

        subset = self._subset(names, work, params.allow_subset_of_names)
        return await _then_post_hooks(hooks, names, subset)

    async def _subset(
        self, names: Sequence[str], work: Callable[[Sequence[str]], Awaitable[T]], allowed: bool
    ) -> T:
        """certbot's --allow-subset-of-names: when some names' authorizations fail, the
        certificate is ordered again for the others (with a new order and CSR)."""
        try:
            return await work(names)
        except AcmeError as exc:
            if not allowed:
                raise
            failed = {
                str((sub.identifier or {}).get("value", "")).lower()
                for sub in exc.problem.subproblems
            }
            rest = [n for n in names if n.lower().removeprefix("*.") not in failed]
            if not failed or not rest or len(rest) == len(names):
                raise
            log.warning(
                "authorization failed for %s; ordering %s",
                ", ".join(sorted(failed)),
                ", ".join(rest),
            )
            return await work(rest)

    async def _obtain(
        self,
        client: Client,
        names: Sequence[str],
        params: RenewalParams,
        cert_name: str | None,
        dry_run: bool,
        force: bool,
        hooks: HookRunner,
        duplicate: bool = False,
    ) -> Outcome:
        base = cert_name or names[0].removeprefix("*.")
        async with lineage_lock(self.paths.work_dir, base, self.lock_timeout):
            found = None if duplicate else self._existing(names, cert_name, dry_run)
            if found is not None:
                existing, owed = found
                return await self._replace(
                    client, existing, names, params, dry_run, force, hooks, owed is not None
                )
            name = cert_name or self.lineages.free_name(base)
            if name == base:
                return await self._create(client, name, names, params, dry_run, hooks)
            async with lineage_lock(self.paths.work_dir, name, self.lock_timeout):
                return await self._create(client, name, names, params, dry_run, hooks)

    async def _expandable(self, names: Sequence[str], expand: bool) -> Lineage | None:
        """The lineage with these names, else one whose names are all among them, which
        only --expand (or a "yes" at the terminal) may grow: certbot's
        `_handle_subset_cert_request`, which refuses rather than quietly make NAME-0001."""
        found = self.lineages.find_expandable(list(names))
        if found is None or expand or _same_names(found.names, names):
            return found
        question = (
            f"You have an existing certificate that contains a portion of the domains you "
            f"requested (ref: {found.conf_path}). It contains these names: "
            f"{', '.join(found.names)}. You requested these names for the new certificate: "
            f"{', '.join(names)}. Do you want to expand and replace this existing certificate "
            "with the new certificate? (E)xpand/(C)ancel: "
        )
        if self.question is not None and (await self.question(question)).lower() in ("e", "y"):
            return found
        raise ClientError(
            f"an existing certificate ({found.conf_path}) contains a portion of the names "
            f"requested: {', '.join(found.names)}; give --expand to expand and replace it, "
            "or --duplicate for a new certificate beside it"
        )

    def _existing(
        self, names: Sequence[str], cert_name: str | None, dry_run: bool
    ) -> tuple[Lineage, str | None] | None:
        """The lineage these names (or this name) renew, repaired unless in a dry run,
        and what it is owed (`_recovered`)."""
        if cert_name is not None:
            found = self.lineages.load(cert_name) if self.lineages.exists(cert_name) else None
        else:
            found = self.lineages.find_by_names(list(names))
        if found is None or dry_run:
            return None if found is None else (found, None)
        return self._recovered(found)

    def _recovered(self, lineage: Lineage) -> tuple[Lineage, str | None]:
        """The lineage repaired (`LineageStore.recover`), and the deploy it is owed:
        "adopted" when the repair took up the version a killed run left, "deployed" when
        a stopped run left the live version without its deploy hooks, else None."""
        lineage, moved = self.lineages.recover(lineage, self.clock.now())
        if moved:
            return lineage, "adopted"
        return lineage, "deployed" if self.lineages.deploy_owed(lineage) else None

    async def _deploy_hooks(
        self,
        hooks: HookRunner,
        lineage: Lineage,
        params: RenewalParams,
        names: Sequence[str],
        directories: bool | None = None,
    ) -> None:
        """The live version's deploy hooks; only when they are done is it no longer owed
        them (a run stopped during one leaves it owed, for the next run)."""
        await hooks.deploy(params.renew_hook, lineage.live_dir, names, directories)
        self.lineages.deployed(lineage)

    async def _create(
        self,
        client: Client,
        name: str,
        names: Sequence[str],
        params: RenewalParams,
        dry_run: bool,
        hooks: HookRunner,
    ) -> Outcome:
        key = params.new_key()
        issued = await self._issue(
            client, params, names, make_csr(key, names), hooks, None, dry_run
        )
        if dry_run:
            return Outcome(name, tuple(names), "simulated")
        files = _files(issued, key_pem(key))
        lineage = self.lineages.create(name, files, params.to_section(), version_string())
        log.info("lineage %s created", name)
        await self._deploy_hooks(hooks, lineage, params, lineage.names, directories=False)
        return Outcome(name, tuple(names), "issued", lineage.live_dir, lineage.not_after)

    async def _replace(
        self,
        client: Client,
        lineage: Lineage,
        names: Sequence[str],
        params: RenewalParams,
        dry_run: bool,
        force: bool,
        hooks: HookRunner,
        owed: bool = False,
    ) -> Outcome:
        same = {n.lower() for n in lineage.names} == {n.lower() for n in names}
        directories = self.run_options.directory_hooks
        if same and not force and not dry_run and not await self._due(lineage, client):
            if owed:  # the live version a stopped run did not deploy: as it would have
                hooks.schedule_post([params.post_hook])
                await self._deploy_hooks(hooks, lineage, params, lineage.names, directories)
            return Outcome(lineage.name, tuple(names), "kept", lineage.live_dir, lineage.not_after)
        key = self._key(lineage, params)
        csr = make_csr(key, names)
        replacing = lineage if same else None
        issued = await self._issue(client, params, names, csr, hooks, replacing, dry_run)
        # certbot's renew_cert: a new version of an existing lineage runs the deploy
        # directory hooks too, for certonly as for renew.
        if dry_run:
            if self.run_options.run_deploy_hooks:
                await hooks.deploy(params.renew_hook, lineage.live_dir, names, directories)
            return Outcome(lineage.name, tuple(names), "simulated")
        updated = self.lineages.add_version(lineage, _files(issued, key_pem(key)))
        self._save_params(lineage, params)
        await self._deploy_hooks(hooks, updated, params, updated.names, directories)
        return Outcome(lineage.name, tuple(names), "renewed", updated.live_dir, updated.not_after)

    async def obtain_for_csr(
        self, csr: x509.CertificateSigningRequest, params: RenewalParams, names: Sequence[str]
    ) -> IssuedCertificate:
        """certonly --csr: a certificate for a CSR made elsewhere, for `names` or else
        the CSR's own; no lineage is kept, as certbot keeps none."""
        names = list(names) or csr_names(csr)
        if not names:
            raise ClientError("the CSR names nothing: give -d NAME")
        client, _ = await self.account_client(params.server)
        hooks = HookRunner(self.paths.config_dir, use_directories=False)
        der = csr.public_bytes(serialization.Encoding.DER)
        return await _then_post_hooks(hooks, names, self._issue(client, params, names, der, hooks))

    def _key(self, lineage: Lineage, params: RenewalParams) -> PrivateKey:
        """The lineage's key with reuse_key, unless this run asks for a new one."""
        if params.reuse_key and not self.run_options.new_key:
            return load_key(lineage.read_privkey())
        return params.new_key()

    def _save_params(self, lineage: Lineage, params: RenewalParams) -> None:
        conf = {**lineage.conf, "version": version_string(), "renewalparams": params.to_section()}
        self.lineages.write_conf(lineage.name, conf, lineage.comment)

    async def _due(self, lineage: Lineage, client: Client | None) -> bool:
        return (await self._decision(lineage, client))[0].due

    async def _decision(
        self, lineage: Lineage, client: Client | None
    ) -> tuple[RenewalDecision, bool]:
        """The decision, and whether the CA's renewal information made it: due by the
        CA's window when it offers one, else by lifetime; the lineage's own
        `renew_before_expiry` counts beside either (`acmekit.client.renewal`)."""
        margin_text = get_str(lineage.conf, "renew_before_expiry")
        margin = parse_interval(margin_text, self.clock.now()) if margin_text else None
        info = await self._renewal_info(client, lineage) if client is not None else None
        retry = info.retry_after if info else None
        decision = decide(
            lineage.not_before,
            lineage.not_after,
            self.clock.now(),
            ari=AriWindow(info.start, info.end) if info else None,
            ari_retry_after=timedelta(seconds=retry) if retry else None,
            rand=self.rand(),
            renew_before_expiry=margin,
        )
        log.info("lineage %s: %s", lineage.name, decision.reason)
        return decision, decision.by_ari

    async def _renewal_info(self, client: Client, lineage: Lineage) -> RenewalInfo | None:
        """RFC 9773 §4.2; a CA that cannot answer leaves the decision to the lifetime rule."""
        try:
            return await client.renewal_info(_leaf(lineage))
        except (AcmeError, TransportError, ServerProtocolError, ValueError) as exc:
            log.warning("no renewal information for %s: %s", lineage.name, exc)
            return None

    async def _replaces(self, client: Client, lineage: Lineage | None) -> str | None:
        """The certID a renewal names in `replaces` (RFC 9773 §5), when the CA has ARI."""
        if lineage is None or (await client.directory()).renewal_info is None:
            return None
        try:
            return str(cert_id_of(_leaf(lineage)))
        except ValueError:  # no authority key identifier: nothing to name
            return None

    # -- renew -----------------------------------------------------------------------

    async def renew(self, options: RenewOptions) -> RenewReport:
        names = [options.cert_name] if options.cert_name else self.lineages.names()
        if options.cert_name and not self.lineages.exists(options.cert_name):
            raise ClientError(f"no certificate named {options.cert_name}")
        runner = HookRunner(self.paths.config_dir, self.run_options.directory_hooks)
        outcomes: list[Outcome] = []
        try:
            await self._renew_each(names, options, runner, outcomes)
        finally:
            # certbot's `renew` runs them in a `finally`: a run stopped after a pre hook
            # (a server stopped for standalone) still ends with its post hooks.
            await _post_hooks(runner, outcomes)
        return RenewReport(tuple(outcomes), len(runner.failures))

    async def _renew_each(
        self, names: Sequence[str], options: RenewOptions, runner: HookRunner, into: list[Outcome]
    ) -> None:
        slept = False
        for name in names:
            async with lineage_lock(self.paths.work_dir, name, self.lock_timeout):
                outcome, attempted = await self._renew_one(name, options, runner, slept)
            slept = slept or attempted
            into.append(outcome)

    async def _renew_one(
        self, name: str, options: RenewOptions, runner: HookRunner, slept: bool
    ) -> tuple[Outcome, bool]:
        try:
            lineage, owed = self._load_for_renewal(name, options.dry_run)
            params = params_from_conf(lineage.conf)
            if options.overrides is not None:
                params = params.overridden(options.overrides)
        except (LineageError, ValueError) as exc:
            return Outcome(name, (), "failed", error=str(exc)), False
        domains = tuple(lineage.names)
        try:
            client, params = self._lineage_client(params)
        except ClientError as exc:
            return Outcome(name, domains, "failed", error=str(exc)), False
        if not (options.force or options.dry_run):
            try:
                decision, by_ari = await self._decision(lineage, client)
            except (LineageError, ValueError) as exc:
                # certbot's `renew` too: a lineage it cannot read is one failure in the
                # report, and the others are still looked at.
                return Outcome(name, domains, "failed", error=str(exc)), False
            if owed is not None and not decision.due:
                # The live version a stopped run left (or that went live now) is deployed
                # as that run would have deployed it, or the server keeps the old one.
                # A due one is renewed instead, as certonly does: the new version's deploy
                # covers it, and a deploy hook that keeps being stopped (a hang a
                # timeout ends) must not keep the lineage from renewing until it expires.
                log.info("lineage %s: the live version's deploy hooks are owed", name)
                adoption = Outcome(name, domains, owed, lineage.live_dir, lineage.not_after)
                return await self._deploy(adoption, lineage, params, runner), False
            if not decision.due:
                live, not_after = lineage.live_dir, lineage.not_after
                return Outcome(
                    name, domains, "not due", live, not_after, None, decision.renew_at, by_ari
                ), False
        if not slept and options.max_random_sleep > 0:
            delay = random.uniform(1.0, options.max_random_sleep)
            log.info("Non-interactive renewal: random delay of %s seconds", delay)
            if options.before_sleep is not None:
                options.before_sleep(delay)
            await self.clock.sleep(delay)
        try:
            outcome = await self._renew_lineage(client, lineage, params, options, runner)
        except Exception as exc:  # one lineage's failure must not stop the rest
            # For the log file: the caller reports it to the user (REPORTED), once.
            log.error("renewal of %s failed: %s", name, exc, extra=REPORTED)
            outcome = Outcome(name, domains, "failed", error=_one_line(exc), exception=exc)
            return outcome, True
        if outcome.action == "simulated" and self.run_options.run_deploy_hooks:
            await runner.deploy(params.renew_hook, lineage.live_dir, list(domains))
        if outcome.action == "renewed":
            return await self._deploy(outcome, lineage, params, runner), True
        return outcome, True

    def _load_for_renewal(self, name: str, dry_run: bool) -> tuple[Lineage, str | None]:
        """The lineage, repaired, and the deploy it is owed (`_recovered`); a dry run
        changes nothing on disk, so it looks at the lineage as it is."""
        lineage = self.lineages.load(name)
        if dry_run:
            return lineage, None
        return self._recovered(lineage)

    async def _deploy(
        self, outcome: Outcome, lineage: Lineage, params: RenewalParams, runner: HookRunner
    ) -> Outcome:
        """A new version is live: the deploy hooks, then the installer's reload, and the
        post hooks at the end of the run (a deploy without a request schedules them too)."""
        assert outcome.live_dir is not None
        runner.schedule_post([params.post_hook])
        await runner.deploy(params.renew_hook, outcome.live_dir, list(outcome.domains))
        done = outcome
        try:
            await restart_installer(params, self.paths.work_dir)
        except Exception as exc:  # the certificate is saved; the server did not take it
            log.error("%s %s, but the installer failed: %s", outcome.name, outcome.action, exc)
            why = f"{outcome.action}, but {params.installer} did not reload: {_one_line(exc)}"
            done = dataclasses.replace(outcome, action="failed", error=why)
        self.lineages.deployed(lineage)  # done, well or not: only a stop leaves it owed
        return done

    def _lineage_client(self, params: RenewalParams) -> tuple[Client, RenewalParams]:
        """The client for the lineage's server, and its params naming the account used."""
        found = self.stored_account(params.server, params.account)
        if found is None:
            which = f"account {params.account}" if params.account else "account"
            raise ClientError(f"no {which} for {params.server} in {self.paths.config_dir}")
        client = self._client(params.server, found, found.key, params.ca_bundle)
        return client, dataclasses.replace(params, account=found.id)

    async def _renew_lineage(
        self,
        client: Client,
        lineage: Lineage,
        params: RenewalParams,
        options: RenewOptions,
        hooks: HookRunner,
    ) -> Outcome:
        names = lineage.names
        key = self._key(lineage, params)
        replacing = None if options.dry_run else lineage

        async def attempt(names: Sequence[str]) -> IssuedCertificate:
            csr = make_csr(key, names)
            return await self._issue(client, params, names, csr, hooks, replacing, options.dry_run)

        issued = await self._subset(names, attempt, params.allow_subset_of_names)
        if options.dry_run:
            return Outcome(lineage.name, tuple(names), "simulated")
        updated = self.lineages.add_version(lineage, _files(issued, key_pem(key)))
        if params != params_from_conf(lineage.conf):
            self._save_params(lineage, params)
        log.info("lineage %s renewed", lineage.name)
        return Outcome(lineage.name, tuple(names), "renewed", updated.live_dir, updated.not_after)

    # -- reconfigure -----------------------------------------------------------------

    async def reconfigure(self, name: str, overrides: Overrides) -> RenewalParams:
        """certbot's `reconfigure`: the lineage's renewal parameters with `overrides`,
        tried first in a test run (a dry-run renewal: nothing is saved, no deploy hook
        runs) and written to its renewal conf only when the test run succeeds."""
        async with lineage_lock(self.paths.work_dir, name, self.lock_timeout):
            # No repair: the test run is a dry run, and a dry run changes nothing on disk.
            lineage = self.lineages.load(name)
            wanted = params_from_conf(lineage.conf).overridden(overrides)
            if "webroot_path" in overrides.fields:
                # The new -w serves every name; an old map would still send them to
                # the old folders.
                wanted = dataclasses.replace(wanted, webroot_map={})
            client, params = self._lineage_client(wanted)
            runner = HookRunner(self.paths.config_dir, use_directories=False)
            options = RenewOptions(cert_name=name, dry_run=True)
            work = self._test_run(client, lineage, params, options, runner)
            await _then_post_hooks(runner, [name], work)
            if runner.failures:
                hooks = ", ".join(f"{f.kind} hook {f.command!r}" for f in runner.failures)
                raise ClientError(f"the test run succeeded, but its {hooks} failed")
            self._save_params(lineage, params)
        return params

    async def _test_run(
        self,
        client: Client,
        lineage: Lineage,
        params: RenewalParams,
        options: RenewOptions,
        runner: HookRunner,
    ) -> Outcome:
        """reconfigure's dry run; with --run-deploy-hooks (certbot's), its deploy hooks
        run too, on the lineage's live files."""
        outcome = await self._renew_lineage(client, lineage, params, options, runner)
        if self.run_options.run_deploy_hooks:
            directories = self.run_options.directory_hooks
            await runner.deploy(params.renew_hook, lineage.live_dir, lineage.names, directories)
        return outcome

    # -- install ---------------------------------------------------------------------

    async def install_nginx(
        self,
        name: str,
        params: RenewalParams,
        *,
        https_port: int = 443,
        redirect: bool = False,
    ) -> InstallReport:
        """certbot's `install --nginx` (and the second half of `run`): the lineage's
        files into the server blocks of its names; the renewal conf then names nginx
        as its installer, so that `renew` reloads nginx after each renewal."""
        from acmekit.certbot.nginx.installer import Installation, NginxInstaller

        async with lineage_lock(self.paths.work_dir, name, self.lock_timeout):
            lineage = self.lineages.load(name)
            saved = params_from_conf(lineage.conf)
            live = lineage.live_dir
            inst = Installation(
                lineage.names,
                live / "fullchain.pem",
                live / "privkey.pem",
                https_port=https_port,
                http_port=params.http01_port or saved.http01_port or 80,
                redirect=redirect,
            )
            installer = NginxInstaller(nginx_control(params), self.paths.work_dir)
            report = await installer.install(inst)
            updated = dataclasses.replace(
                saved,
                installer="nginx",
                nginx_server_root=params.nginx_server_root or saved.nginx_server_root,
                nginx_ctl=params.nginx_ctl or saved.nginx_ctl,
                nginx_sleep_seconds=(
                    saved.nginx_sleep_seconds
                    if params.nginx_sleep_seconds is None
                    else params.nginx_sleep_seconds
                ),
            )
            if updated != saved:
                self._save_params(lineage, updated)
            return report

    # -- revoke --------------------------------------------------------------------

    async def revoke(
        self,
        cert_path: Path,
        reason: int,
        server: str | None,
        *,
        delete_after: bool = True,
        key_path: Path | None = None,
    ) -> Lineage | None:
        """Revoke with the account that holds the lineage (or the first for the server),
        or with the certificate's own key (`key_path`, RFC 8555 §7.6: no account needed);
        then delete the lineage unless told not to, as certbot does. The lineage, if any."""
        der = _cert_der(cert_path)  # a path that is no certificate is said first, as such
        lineage = self.lineage_of(cert_path)
        params = params_from_conf(lineage.conf) if lineage else None
        url = server or (params.server if params else None)
        if url is None:
            raise ClientError("--server is needed for a certificate outside any lineage")
        if key_path is not None:
            key = _certificate_key(key_path, der, cert_path)
            saved = params.ca_bundle if params else None
            await self._client(url, None, key, saved).revoke(der, reason, key=key)
        elif params is not None and url == params.server:
            # The lineage's account and the roots it was obtained with (`ca_bundle`), as
            # `renew` uses them: revoking from the same shell works as renewing does.
            await self._lineage_client(params)[0].revoke(der, reason)
        else:
            client, _ = await self.account_client(url, register=False)
            await client.revoke(der, reason)
        if lineage is not None and delete_after:
            await self.delete(lineage.name)
        return lineage

    async def delete(self, name: str) -> None:
        """Remove a lineage's conf, live links and archive, under its lock."""
        async with lineage_lock(self.paths.work_dir, name, self.lock_timeout):
            self.lineages.delete(name)

    async def update_symlinks(self) -> list[str]:
        """Every lineage's live links repointed at its conf's archive_dir, each under its
        lock; what could not be done, one line per lineage (the others are still done)."""
        failed: list[str] = []
        for found in self.lineages.load_all():
            if isinstance(found, LineageError):
                failed.append(str(found))
                continue
            try:
                async with lineage_lock(self.paths.work_dir, found.name, self.lock_timeout):
                    self.lineages.update_symlinks(found)
            except (LineageError, OSError) as exc:
                failed.append(_one_line(exc))
        return failed

    def cert_path(self, name: str) -> Path:
        return self.lineages.load(name).path("cert")

    def lineage_of(self, cert_path: Path) -> Lineage | None:
        target = cert_path.resolve()
        for found in self.lineages.load_all():
            if isinstance(found, Lineage):
                paths = {found.path(k).resolve() for k in ("cert", "fullchain")}
                if target in paths or target.parent == found.archive_dir.resolve():
                    return found
        return None


async def restart_installer(params: RenewalParams, work_dir: Path) -> None:
    """After a renewal, as certbot does: the installer's server reads the new files."""
    if params.installer != "nginx":
        return
    from acmekit.certbot.nginx.installer import NginxInstaller

    await NginxInstaller(nginx_control(params), work_dir).restart()


async def _then_post_hooks(hooks: HookRunner, names: Sequence[str], work: Awaitable[T]) -> T:
    """Await `work`, then the post hooks it scheduled, whether it failed or not."""
    try:
        result = await work
    except BaseException:
        await hooks.post([], names)
        raise
    await hooks.post(names, [])
    return result


async def _post_hooks(hooks: HookRunner, outcomes: Sequence[Outcome]) -> None:
    """The post hooks a request or a deploy scheduled (certbot: none when nothing was
    renewed); a deploy the last run owed counts, its post hooks never having run."""
    renewed = [
        d
        for o in outcomes
        if o.action in ("renewed", "adopted", "deployed", "simulated")
        for d in o.domains
    ]
    failed = [d for o in outcomes if o.action == "failed" for d in o.domains]
    await hooks.post(renewed, failed)


def _same_names(ours: Sequence[str], names: Sequence[str]) -> bool:
    return {n.lower() for n in ours} == {n.lower() for n in names}


def _files(issued: IssuedCertificate, privkey: str) -> CertFiles:
    return CertFiles(issued.cert_pem, issued.chain_pem, issued.fullchain_pem, privkey)


def _leaf(lineage: Lineage) -> x509.Certificate:
    return x509.load_pem_x509_certificate(lineage.path("cert").read_bytes())


def _cert_der(path: Path) -> bytes:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ClientError(f"cannot read certificate {path}: {exc}") from exc
    return cert.public_bytes(serialization.Encoding.DER)


def _certificate_key(key_path: Path, cert_der: bytes, cert_path: Path) -> PrivateKey:
    """The private key at `key_path`, which must be the certificate's own: certbot checks
    the pair before it asks the CA, so a wrong file is named here, not as a CA's refusal."""
    try:
        key = load_key(key_path.read_bytes())
    except (OSError, ValueError, TypeError) as exc:  # TypeError: encrypted, no password
        raise ClientError(f"cannot read private key {key_path}: {_one_line(exc)}") from exc
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    cert_key = x509.load_der_x509_certificate(cert_der).public_key()
    if key.public_key().public_bytes(*spki) != cert_key.public_bytes(*spki):
        raise ClientError(f"the private key {key_path} is not the key of certificate {cert_path}")
    return key


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
