"""The certbot-compatible client commands: certonly, renew, revoke, certificates, delete,
register, show_account, update_account, unregister, and check.

Flags mean what certbot's flags mean, and the files go where certbot puts them (see
`acmekit.certbot.lineage`). `--ca-bundle` names the roots to trust for the ACME server;
without it `REQUESTS_CA_BUNDLE` is used, as certbot does. Exit status is 0 only on
success; a failure prints one line (one per failed name for failed authorizations).

`certificates --json` prints one object, stable across versions (fields are only
ever added):

    {"certificates": [{"name", "domains": [...], "serial" (lower-case hex),
      "key_type" ("ECDSA"|"RSA"), "not_before", "not_after" (ISO 8601 UTC),
      "days_left" (int, negative once expired), "valid" (bool), "version" (int),
      "cert_path", "fullchain_path", "privkey_path", "chain_path",
      "server", "authenticator",
      "scts": [{"log", "log_id", "timestamp", "known", "verified" (bool, or null
               without --ct-log-list)}],
      "ct_policy": {"compliant", "reason"} or null without --ct-log-list}],
     "errors": [{"name", "error"}]}
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click

from acmekit.protocol.messages import RevocationReason

if TYPE_CHECKING:  # the library loads only when a command runs
    from cryptography import x509

    from acmekit.certbot.certmanager import (
        AccountOptions,
        CertManager,
        Outcome,
        RenewReport,
    )
    from acmekit.certbot.lineage import Lineage
    from acmekit.certbot.nginx.installer import InstallReport
    from acmekit.certbot.renewalparams import Overrides, RenewalParams
    from acmekit.client.persist import PersistRecordText
    from acmekit.protocol.problems import AcmeError

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_CONFIG_DIR = "/etc/letsencrypt"
DEFAULT_WORK_DIR = "/var/lib/letsencrypt"
DEFAULT_LOGS_DIR = "/var/log/letsencrypt"
# certbot's default server: Let's Encrypt's production directory.
LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
# certbot's --staging (--test-cert): Let's Encrypt's staging directory.
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
RENEW_MAX_SLEEP = 480.0  # certbot sleeps up to 8 minutes before a non-interactive renew

F = TypeVar("F", bound=Callable[..., Any])


def _directory_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """--server is an absolute http(s) URL (RFC 8555 §7.1.1: the client starts from the
    directory's URL); anything else would surface only as a transport's bare message."""
    from urllib.parse import urlsplit

    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise click.BadParameter(
            f"{value!r} is not an ACME directory URL (https://HOST[:PORT]/PATH)"
        )
    return value


_staging_option = click.option(
    "--staging",
    "--test-cert",
    "staging",
    is_flag=True,
    help=f"use Let's Encrypt's staging server, as certbot: --server {LETS_ENCRYPT_STAGING}",
)


def _server_option(func: F) -> F:
    """The ACME server a command talks to, Let's Encrypt's by default as in certbot."""
    func = _staging_option(func)
    return click.option(
        "--server",
        default=LETS_ENCRYPT,
        show_default=True,
        help="ACME directory URL",
        callback=_directory_url,
    )(func)


def _use_staging(ctx: click.Context) -> None:
    """certbot's --staging: the staging directory, unless --server names another."""
    if not ctx.params.get("staging"):
        return
    source = ctx.get_parameter_source("server")
    given = source not in (None, click.core.ParameterSource.DEFAULT)
    if given and ctx.params.get("server") not in (LETS_ENCRYPT_STAGING, None):
        raise click.UsageError("--server value conflicts with --staging")
    ctx.params["server"] = LETS_ENCRYPT_STAGING


# -- certbot's cli.ini ------------------------------------------------------------------

# certbot reads these, then -c FILE; later files win, the command line wins over all.
SYSTEM_CLI_INI = Path("/etc/letsencrypt/cli.ini")
_TRUE = {"true", "yes", "on", "1", ""}
_FALSE = {"false", "no", "off", "0"}


def _cli_ini_paths(config_dir: str | None, given: str | None) -> list[Path]:
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    found = [SYSTEM_CLI_INI, Path(xdg) / "letsencrypt" / "cli.ini"]
    if config_dir is not None:  # a config dir of one's own keeps its cli.ini beside it
        found.append(Path(config_dir) / "cli.ini")
    unique = list(dict.fromkeys(p.absolute() for p in found))
    return [*unique, Path(given)] if given else unique


def read_cli_ini(path: Path) -> dict[str, str]:
    """certbot's cli.ini (ConfigArgParse): `key = value` lines, a key being a long flag
    without its dashes, `key` alone for a flag that is on; `#` and `;` start comments."""
    found: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;" or line.startswith("["):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, sep, value = line.partition(":")
        key = key.strip().removeprefix("--")
        if not key or " " in key:
            raise click.UsageError(f"{path}:{number}: not a `key = value` line")
        found[key] = value.strip()
    return found


def _ini_defaults(command: click.Command, values: dict[str, str], path: Path) -> dict[str, Any]:
    """Click defaults from cli.ini keys; keys of certbot's that this command does not
    have (another plugin's, logging's) are left out, as certbot's own plugins' are."""
    options: dict[str, tuple[click.Option, bool]] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for opt in param.opts:
                options[opt.removeprefix("--")] = (param, True)
            for opt in param.secondary_opts:
                options[opt.removeprefix("--")] = (param, False)
    defaults: dict[str, Any] = {}
    for key, value in values.items():
        if key not in options:
            log.debug("%s: %s is not an option of this command; ignored", path, key)
            continue
        param, on = options[key]
        if param.is_flag:
            word = value.lower()
            if word not in _TRUE | _FALSE:
                raise click.UsageError(f"{path}: {key} = {value}: give true or false")
            defaults[str(param.name)] = (word in _TRUE) == on
        elif param.multiple:
            defaults[str(param.name)] = (value,)
        else:
            defaults[str(param.name)] = value
    return defaults


class _Certbot(click.Command):
    """A certbot command: defaults from certbot's cli.ini files (and -c FILE), and
    --staging resolved to its server before the command runs."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        opts, _, _ = self.make_parser(ctx).parse_args(list(args))
        given, config_dir = opts.get("config_file"), opts.get("config_dir")
        defaults: dict[str, Any] = {}
        for path in _cli_ini_paths(config_dir, given):
            if path.is_file() or path == (Path(given) if given else None):
                try:
                    values = read_cli_ini(path)
                except OSError as exc:
                    raise click.UsageError(f"cannot read {path}: {exc.strerror}") from None
                defaults.update(_ini_defaults(self, values, path))
        ctx.default_map = {**(ctx.default_map or {}), **defaults}
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        if "staging" in ctx.params:
            _use_staging(ctx)
        return super().invoke(ctx)


# -- shared options ---------------------------------------------------------------------


def _dir_options(func: F) -> F:
    options = [
        click.option(
            "-c",
            "--config",
            "config_file",
            default=None,
            help="a certbot cli.ini (key = value, long flags without dashes); read after "
            "/etc/letsencrypt/cli.ini, ~/.config/letsencrypt/cli.ini and the config dir's",
        ),
        click.option("--config-dir", default=DEFAULT_CONFIG_DIR, type=click.Path(path_type=Path)),
        click.option("--work-dir", default=DEFAULT_WORK_DIR, type=click.Path(path_type=Path)),
        click.option("--logs-dir", default=DEFAULT_LOGS_DIR, type=click.Path(path_type=Path)),
        click.option("--ca-bundle", default=None, help="PEM roots for the ACME server"),
        click.option("-n", "--non-interactive", "non_interactive", is_flag=True),
        click.option("--lock-timeout", default=600.0, type=float, show_default=True),
        click.option("--user-agent", default=None, help="the User-Agent sent to the server"),
        click.option("--debug", is_flag=True, help="show tracebacks of errors"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _account_options(func: F) -> F:
    options = [
        click.option("--agree-tos", is_flag=True),
        click.option("-m", "--email", "email", default=None, help="comma-separated e-mails"),
        click.option("--register-unsafely-without-email", "without_email", is_flag=True),
        click.option("--eab-kid", default=None),
        click.option("--eab-hmac-key", default=None),
        click.option("--account", "account_id", default=None),
        click.option(
            "--eff-email/--no-eff-email",
            "eff_email",
            default=None,
            help="accepted for certbot's scripts; acmekit shares no e-mail with anyone",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def missing_program(command: str) -> tuple[str, str] | None:
    """certbot's hook validation: the command's first word must be on PATH or an
    executable file. None when it is; else the program and what is wrong with it."""
    try:
        program = shlex.split(command)[0]
    except (ValueError, IndexError):
        return command, "is not a command"
    if shutil.which(program) is not None:
        return None
    if "/" not in program:
        return program, "is not found on PATH"
    return program, "is not an executable file" if Path(program).exists() else "does not exist"


def _dns_hook(ctx: click.Context, param: click.Parameter, command: str | None) -> str | None:
    """The hook's program must be there before any account or order is made, not found
    missing when the first challenge is to be presented."""
    if command is None:
        return None
    missing = missing_program(command)
    if missing is not None:
        raise click.BadParameter(" ".join(missing), ctx, param)
    return command


_HOOK_FLAGS = (("pre_hook", "pre"), ("post_hook", "post"), ("deploy_hook", "deploy"))


def _validate_hooks(args: dict[str, Any]) -> None:
    """certbot's validate_hooks: a hook command that cannot run is refused before any
    order (and before it is saved in a renewal conf), unless --disable-hook-validation."""
    if args.get("disable_hook_validation"):
        return
    for key, kind in _HOOK_FLAGS:
        command = args.get(key)
        missing = missing_program(command) if command else None
        if missing is None:
            continue
        program, why = missing
        if why == "is not found on PATH":
            path = os.environ.get("PATH", "")
            _fail(f"Unable to find {kind}-hook command {program} in the PATH. (PATH is {path})")
        _fail(f"{kind}-hook command {program} {why}")


def _must_staple(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """OCSP Must-Staple (RFC 7633) makes a certificate unusable where no OCSP response
    can be stapled: Let's Encrypt ended OCSP in 2025 and refuses such CSRs. Refused here
    with that reason rather than accepted and ignored: whoever asks for the extension
    expects it in the certificate."""
    if value:
        raise click.BadParameter(
            "OCSP Must-Staple is not supported: Let's Encrypt ended OCSP and refuses "
            "certificates that require it; leave the flag out",
            ctx,
            param,
        )
    return value


def _rsa_key_size(ctx: click.Context, param: click.Parameter, bits: int | None) -> int | None:
    """certbot's rule (crypto_util.make_key): at least 1024 bits, checked before any
    account or order is made."""
    if bits is not None and bits < 1024:
        raise click.BadParameter(
            f"{bits} bits is too small: give 2048, 3072 or 4096 (at least 1024)", ctx, param
        )
    return bits


def _obtain_options(func: F) -> F:
    """How to obtain a certificate: what `certonly` records in the renewal conf, and
    what `renew` takes over it, as certbot's `renew` accepts every `certonly` flag."""
    options = [
        click.option("--standalone", is_flag=True),
        click.option("--webroot", is_flag=True),
        click.option("-w", "--webroot-path", "webroot_path", multiple=True),
        click.option("--manual", is_flag=True),
        click.option("--manual-auth-hook", default=None),
        click.option("--manual-cleanup-hook", default=None),
        click.option("--dns-rfc2136", is_flag=True),
        click.option("--dns-rfc2136-credentials", default=None),
        click.option(
            "--dns-hook",
            default=None,
            callback=_dns_hook,
            help="command run as CMD present|cleanup FQDN VALUE",
        ),
        click.option(
            "--dns-propagation-seconds",
            "--dns-rfc2136-propagation-seconds",
            "dns_propagation_seconds",
            type=float,
            default=None,
        ),
        click.option("--dns-resolver", default=None, help="HOST:PORT to check TXT propagation"),
        click.option("--nginx", is_flag=True, help="obtain (and install) through nginx"),
        click.option(
            "--nginx-server-root",
            default=None,
            help="the directory of nginx.conf [default: /etc/nginx]",
        ),
        click.option("--nginx-ctl", default=None, help="the nginx binary [default: nginx]"),
        click.option(
            "--nginx-sleep-seconds",
            type=float,
            default=None,
            help="seconds to wait after each nginx reload [default: 1]",
        ),
        click.option("-a", "--authenticator", default=None),
        click.option("-i", "--installer", default=None, help="nginx (the one installer)"),
        click.option("--preferred-challenges", default=None),
        click.option("--http-01-port", type=click.IntRange(0, 65535), default=None),
        click.option("--http-01-address", default=None),
        click.option("--tls-alpn-01-port", type=click.IntRange(0, 65535), default=None),
        click.option("--key-type", type=click.Choice(["ecdsa", "rsa"]), default="ecdsa"),
        click.option(
            "--elliptic-curve", type=click.Choice(["secp256r1", "secp384r1"]), default=None
        ),
        click.option("--rsa-key-size", type=int, default=None, callback=_rsa_key_size),
        click.option(
            "--reuse-key/--no-reuse-key",
            default=False,
            help="keep the lineage's key when renewing (--no-reuse-key unsets it)",
        ),
        click.option(
            "--new-key",
            is_flag=True,
            help="a new key for this certificate even with --reuse-key (then kept by it)",
        ),
        click.option(
            "--allow-subset-of-names",
            is_flag=True,
            help="drop the names whose authorization failed and order the others",
        ),
        click.option(
            "--must-staple",
            is_flag=True,
            expose_value=False,
            callback=_must_staple,
            help="refused: Let's Encrypt ended OCSP",
        ),
        click.option(
            "--issuance-timeout",
            type=click.FloatRange(min=0),
            default=None,
            help="seconds to wait for the certificate after finalize [default: 300]",
        ),
        click.option("--preferred-chain", default=None),
        click.option("--preferred-profile", default=None),
        click.option("--required-profile", default=None),
        click.option("--deploy-hook", "--renew-hook", "deploy_hook", default=None),
        click.option("--pre-hook", default=None),
        click.option("--post-hook", default=None),
        click.option(
            "--disable-hook-validation",
            is_flag=True,
            help="do not check that the hooks' programs exist before ordering",
        ),
        click.option(
            "--no-directory-hooks",
            "no_directory_hooks",
            is_flag=True,
            help="do not run the executables in the config dir's renewal-hooks/",
        ),
        click.option(
            "--run-deploy-hooks",
            is_flag=True,
            help="with --dry-run, run the deploy hooks too (on the lineage's live files)",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _manager(args: dict[str, Any], prompt: bool = False) -> CertManager:
    from acmekit.certbot.certmanager import CertManager, Paths, RunOptions

    paths = Paths(args["config_dir"], args["work_dir"], args["logs_dir"])
    _setup_logs(paths.logs_dir)
    ask = None if (args.get("non_interactive") or not prompt) else _prompt
    # Questions (e-mail, terms) only to a person at a terminal, as certbot asks them.
    question = None if args.get("non_interactive") or not sys.stdin.isatty() else _question
    return CertManager(
        paths,
        ca_bundle=args.get("ca_bundle") or os.environ.get("REQUESTS_CA_BUNDLE") or None,
        prompt=ask,
        question=question,
        lock_timeout=args.get("lock_timeout", 600.0),
        account_options=_account(args),
        run_options=RunOptions(
            new_key=bool(args.get("new_key")),
            directory_hooks=not args.get("no_directory_hooks"),
            run_deploy_hooks=bool(args.get("run_deploy_hooks")),
            user_agent=args.get("user_agent"),
            issuance_timeout=args.get("issuance_timeout"),
        ),
    )


def _account(args: dict[str, Any]) -> AccountOptions:
    from acmekit.certbot.certmanager import AccountOptions
    from acmekit.client.client import ExternalAccountBinding

    eab = None
    if args.get("eab_kid") and args.get("eab_hmac_key"):
        eab = ExternalAccountBinding.from_base64url(args["eab_kid"], args["eab_hmac_key"])
    emails = tuple(e.strip() for e in (args.get("email") or "").split(",") if e.strip())
    return AccountOptions(
        emails,
        bool(args.get("agree_tos")),
        bool(args.get("without_email")),
        eab,
        args.get("account_id"),
    )


def _setup_logs(logs_dir: Path) -> None:
    for console in logging.getLogger().handlers:
        console.addFilter(_not_reported)  # the command prints these itself
    try:
        logs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        handler = logging.FileHandler(logs_dir / "acmekit.log")
    except OSError:
        return
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    console_level = root.getEffectiveLevel()
    for existing in root.handlers:
        if existing.level == logging.NOTSET:
            existing.setLevel(console_level)
    root.addHandler(handler)
    root.setLevel(min(console_level, logging.INFO))


def _not_reported(record: logging.LogRecord) -> bool:
    return not getattr(record, "reported", False)


async def _prompt(text: str) -> None:
    click.echo(text)
    await asyncio.get_running_loop().run_in_executor(None, input, "Press Enter to Continue")


async def _question(text: str) -> str:
    click.echo(text, nl=False)
    line: str = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip()


def _fail(message: str) -> None:
    click.echo(f"acmekit: {message}", err=True)
    sys.exit(1)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's work; every expected failure becomes one line and exit 1:
    the CA's problem (one line per failed name), or what failed on this side. With
    --debug, as certbot's, the traceback is shown first."""
    from acmekit.client.errors import ClientError, ServerProtocolError
    from acmekit.client.retry import DeadlineExceeded
    from acmekit.client.transport import TransportError
    from acmekit.protocol.problems import AcmeError

    expected = (
        AcmeError, TransportError, DeadlineExceeded, ServerProtocolError, ClientError,
        OSError, ValueError,
    )  # fmt: skip
    try:
        with _sigterm_as_ctrl_c():
            return asyncio.run(coro)
    except expected as exc:
        ctx = click.get_current_context(silent=True)
        if ctx is not None and ctx.params.get("debug"):
            traceback.print_exception(exc)
        if isinstance(exc, AcmeError):
            _say_failures(exc)
        else:
            click.echo(f"acmekit: {explain(exc)}", err=True)
    sys.exit(1)


def _say_failures(exc: AcmeError) -> None:
    from acmekit.client.client import describe_failures

    lines = describe_failures(exc)
    if len(lines) > 1:
        click.echo(f"acmekit: {exc.problem.detail}", err=True)
    for line in lines:
        click.echo(f"acmekit: {line}", err=True)


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (a systemd stop, a `kill`) does what Ctrl-C does: the running command is
    cancelled, so its cleanup runs (challenge responses withdrawn, pending
    authorizations deactivated, locks released) and it exits with "aborted"."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        # asyncio.run's own SIGINT handler while it runs (it cancels the main task),
        # else the default one, which raises KeyboardInterrupt.
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler (and only it gets signals)
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# The flag that moves each standalone responder's port.
_PORT_FLAGS = {"http-01": "--http-01-port", "tls-alpn-01": "--tls-alpn-01-port"}
_ADDRESS_FLAGS = {"http-01": "--http-01-address"}
_UNTRUSTED = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed")


def explain(exc: BaseException) -> str:
    """A failure on this side as one line, with what to do about it where we know."""
    from acmekit.client.errors import ServerProtocolError
    from acmekit.client.retry import DeadlineExceeded
    from acmekit.client.solvers.errors import NoManualAuth, PortUnavailable
    from acmekit.client.transport import TransportError

    text = " ".join(str(exc).split())
    if isinstance(exc, PortUnavailable):
        flag = _PORT_FLAGS.get(exc.kind, "the port flag")
        if exc.errno == errno.EADDRINUSE:
            what = f"port {exc.port} is already in use by another process"
        elif exc.errno == errno.EACCES:
            what = f"port {exc.port} needs privileges (ports below 1024 do)"
        else:
            what = text
        also = (
            f" (and the address with {_ADDRESS_FLAGS[exc.kind]})"
            if exc.kind in _ADDRESS_FLAGS
            else ""
        )
        return (
            f"the {exc.kind} responder cannot listen: {what}; choose another port with "
            f"{flag} N{also}, the port the CA connects to, or stop what holds it"
        )
    if isinstance(exc, NoManualAuth):
        return (
            "--manual without a terminal to prompt on needs --manual-auth-hook CMD "
            "(and --manual-cleanup-hook CMD); see certbot's manual hooks"
        )
    if isinstance(exc, TransportError) and any(m in text for m in _UNTRUSTED):
        request = text.split(": ", 1)[0]  # "GET URL"
        found = re.search(r"certificate verify failed: ([^(')\]]+)", text)
        reason = f": {found[1].strip()}" if found else ""
        return (
            f"{request}: the ACME server's certificate is not trusted by "
            f"{_roots_named(exc.roots)}{reason}; give its root with --ca-bundle FILE or "
            "REQUESTS_CA_BUNDLE=FILE"
        )
    if isinstance(exc, DeadlineExceeded | ServerProtocolError):
        return f"{type(exc).__name__}: {text}"  # the kind says what the server did
    return text


def _roots_named(roots: str | None) -> str:
    """Which roots were trusted, saying when REQUESTS_CA_BUNDLE names them: set for
    other programs, it also replaces the ca_bundle a renewal conf keeps."""
    if roots is None:
        return "the system's roots"
    env = os.environ.get("REQUESTS_CA_BUNDLE")
    named = env is not None and Path(env).absolute() == Path(roots).absolute()
    return f"the roots in {roots}{' (named by REQUESTS_CA_BUNDLE)' if named else ''}"


async def _with(manager: CertManager, work: Callable[[CertManager], Awaitable[T]]) -> T:
    async with manager:
        return await work(manager)


# -- certonly -----------------------------------------------------------------------------


def _authenticator(args: dict[str, Any], default: str | None = None) -> str:
    chosen = [
        name
        for flag, name in (
            ("standalone", "standalone"),
            ("webroot", "webroot"),
            ("manual", "manual"),
            ("dns_rfc2136", "dns-rfc2136"),
            ("nginx", "nginx"),
        )
        if args.get(flag)
    ]
    if args.get("dns_hook"):
        chosen.append("dns-hook")
    if args.get("authenticator"):
        chosen.append(args["authenticator"])
    if not chosen and default is not None:
        return default
    if len(set(chosen)) != 1:
        raise click.UsageError(
            "choose one of --standalone, --webroot, --manual, --dns-rfc2136, --dns-hook, --nginx"
        )
    return chosen[0]


_ORDER = "acmekit.option_order"


class _InOrder(_Certbot):
    """Keeps the order the options came in (`ctx.meta[_ORDER]`, names repeated): certbot
    pairs each -d with the -w before it, which click's one tuple per option loses."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _, _, order = self.make_parser(ctx).parse_args(list(args))
        ctx.meta[_ORDER] = tuple(p.name for p in order)
        return super().parse_args(ctx, args)


def _webroot_map(args: dict[str, Any]) -> dict[str, str]:
    from acmekit.certbot.renewalparams import WebrootArg, map_webroots

    given = {key: iter(args.get(key) or ()) for key in ("domains", "ip_addresses")}
    roots = iter(args["webroot_path"])
    found: list[WebrootArg] = []
    for key in click.get_current_context().meta.get(_ORDER, ()):
        if key == "webroot_path":
            found.append(("-w", str(Path(next(roots)).absolute())))
        elif key == "domains":
            found += [("-d", n) for n in _split_domains(next(given[key]))]
        elif key == "ip_addresses":
            found += [("-d", a) for a in _addresses([next(given[key])])]
    try:
        return map_webroots(found)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _params(args: dict[str, Any], default_authenticator: str | None = None) -> RenewalParams:
    from acmekit.certbot.renewalparams import (
        Authenticator,
        KeyType,
        RenewalParams,
        parse_challenges,
    )

    authenticator = Authenticator(_authenticator(args, default_authenticator))
    webroots = tuple(str(Path(w).absolute()) for w in args["webroot_path"])
    creds = args.get("dns_rfc2136_credentials")
    return RenewalParams(
        authenticator=authenticator,
        server=args["server"],
        key_type=KeyType(args["key_type"]),
        elliptic_curve=args.get("elliptic_curve"),
        rsa_key_size=args.get("rsa_key_size"),
        reuse_key=bool(args.get("reuse_key")),
        allow_subset_of_names=bool(args.get("allow_subset_of_names")),
        pref_challs=parse_challenges(args.get("preferred_challenges") or ""),
        http01_port=args.get("http_01_port"),
        http01_address=args.get("http_01_address"),
        tls_alpn_01_port=args.get("tls_alpn_01_port"),
        webroot_path=webroots,
        webroot_map=_webroot_map(args) if authenticator == "webroot" else {},
        manual_auth_hook=args.get("manual_auth_hook"),
        manual_cleanup_hook=args.get("manual_cleanup_hook"),
        dns_rfc2136_credentials=str(Path(creds).absolute()) if creds else None,
        dns_propagation_seconds=args.get("dns_propagation_seconds"),
        dns_hook=args.get("dns_hook"),
        dns_resolver=args.get("dns_resolver"),
        installer=_installer(args),
        nginx_server_root=_absolute(args.get("nginx_server_root")),
        nginx_ctl=args.get("nginx_ctl"),
        nginx_sleep_seconds=args.get("nginx_sleep_seconds"),
        renew_hook=args.get("deploy_hook"),
        pre_hook=args.get("pre_hook"),
        post_hook=args.get("post_hook"),
        preferred_chain=args.get("preferred_chain"),
        preferred_profile=args.get("preferred_profile"),
        required_profile=args.get("required_profile"),
        config_dir=str(Path(args["config_dir"]).absolute()),
        work_dir=str(Path(args["work_dir"]).absolute()),
        logs_dir=str(Path(args["logs_dir"]).absolute()),
        ca_bundle=_ca_bundle(args),
    )


def _installer(args: dict[str, Any]) -> str | None:
    """certbot's `--nginx` names nginx as both authenticator and installer; `-i` names
    the installer alone."""
    chosen = args.get("installer") or ("nginx" if args.get("nginx") else None)
    if chosen not in (None, "nginx"):
        raise click.UsageError(f"unknown installer {chosen!r}: the one installer is nginx")
    return chosen


def _absolute(path: str | None) -> str | None:
    return str(Path(path).absolute()) if path else None


def _ca_bundle(args: dict[str, Any]) -> str | None:
    """The roots given for the server (--ca-bundle, else REQUESTS_CA_BUNDLE), absolute:
    saved in the renewal conf, so that a renewal run from cron trusts the same server."""
    given = args.get("ca_bundle") or os.environ.get("REQUESTS_CA_BUNDLE")
    return str(Path(given).absolute()) if given else None


def _split_domains(value: str) -> list[str]:
    """One -d value's names (comma-separated), each checked as certbot checks it."""
    from acmekit.certbot.requested import BadName, requested_domain

    try:
        return [requested_domain(n.strip()) for n in value.split(",") if n.strip()]
    except BadName as exc:
        raise click.BadParameter(str(exc), param_hint="'-d' / '--domains'") from None


def _requested(name: str) -> str:
    """One -d name, checked as certbot checks it (no comma splitting)."""
    from acmekit.certbot.requested import BadName, requested_domain

    try:
        return requested_domain(name)
    except BadName as exc:
        raise click.BadParameter(str(exc), param_hint="'-d' / '--domains'") from None


def _addresses(values: Sequence[str]) -> list[str]:
    from acmekit.certbot.requested import BadName, requested_address

    try:
        return [requested_address(a) for a in values]
    except BadName as exc:
        raise click.BadParameter(str(exc), param_hint="'--ip-address'") from None


def _domains(args: dict[str, Any]) -> list[str]:
    names = [n for d in args["domains"] for n in _split_domains(d)]
    names += _addresses(args.get("ip_addresses") or ())
    return list(dict.fromkeys(names))


@click.command(cls=_InOrder)
@_server_option
@click.option("-d", "--domains", "domains", multiple=True, help="a name (repeat, or commas)")
@click.option("--ip-address", "ip_addresses", multiple=True, help="an IP address to certify")
@click.option("--cert-name", default=None)
@click.option("--csr", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--cert-path", type=click.Path(path_type=Path), default=None)
@click.option("--chain-path", type=click.Path(path_type=Path), default=None)
@click.option("--fullchain-path", type=click.Path(path_type=Path), default=None)
@_obtain_options
@click.option("--dry-run", is_flag=True)
@click.option("--force-renewal", "--renew-by-default", "force_renewal", is_flag=True)
@click.option("--keep-until-expiring", "--keep", is_flag=True, help="(the default)")
@click.option("--expand", is_flag=True, help="grow the lineage whose names are all among -d")
@click.option("--duplicate", is_flag=True, help="a new lineage even if one has these names")
@_account_options
@_dir_options
def certonly(**args: Any) -> None:
    """Obtain a certificate and save it in certbot's layout."""
    if args["required_profile"] and args["preferred_profile"]:
        raise click.UsageError("--preferred-profile and --required-profile exclude each other")
    domains = _domains(args)
    _validate_hooks(args)
    if args["csr"] is not None:
        csr = load_csr(args["csr"])
        _csr_domains(csr, domains)
        _run(_certonly_csr(args, csr, domains))
        return
    missing = [] if domains else ["at least one -d NAME"]
    try:
        _authenticator(args)
    except click.UsageError as exc:
        missing.append(exc.message.removeprefix("choose "))
    if missing:  # all at once, not one per run
        raise click.UsageError(f"give {'; and '.join(missing)}")
    params = _params(args)
    outcome = _run(_certonly(args, domains, params))
    _report_certonly(outcome)


async def _certonly(args: dict[str, Any], domains: list[str], params: RenewalParams) -> Outcome:
    async with _manager(args, prompt=True) as manager:
        return await manager.obtain(
            domains,
            params,
            cert_name=args["cert_name"],
            dry_run=args["dry_run"],
            force=args["force_renewal"],
            expand=args["expand"],
            duplicate=args.get("duplicate", False),
        )


def _report_certonly(outcome: Outcome) -> None:
    live = outcome.live_dir
    if outcome.action == "simulated" or live is None:  # only a dry run saves nothing
        click.echo("The dry run was successful.")
    elif outcome.action == "kept":
        click.echo("Certificate not yet due for renewal; no action taken.")
        click.echo(f"Certificate is saved at: {live / 'fullchain.pem'}")
    else:
        click.echo("Successfully received certificate.")
        click.echo(f"Certificate is saved at: {live / 'fullchain.pem'}")
        click.echo(f"Key is saved at:         {live / 'privkey.pem'}")
        click.echo(f"This certificate expires on {outcome.not_after:%Y-%m-%d}.")


def load_csr(path: Path) -> x509.CertificateSigningRequest:
    """certbot's --csr: PEM or DER (crypto_util.import_csr_file)."""
    from cryptography import x509

    data = path.read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except ValueError as exc:
        _fail(f"{path} is not a CSR (PEM or DER): {exc}")
        raise


def _csr_domains(csr: x509.CertificateSigningRequest, domains: list[str]) -> None:
    """certbot's rule: -d names, when given, are the CSR's own; else it refuses before
    anything is ordered (the CA would refuse the CSR only after the names are proven)."""
    from acmekit.certbot.certmanager import csr_names

    ours = csr_names(csr)
    if domains and {d.lower() for d in domains} != {n.lower() for n in ours}:
        _fail(
            "Inconsistent domain requests: from the CSR: "
            f"{', '.join(ours)}; from the command line: {', '.join(domains)}"
        )


async def _certonly_csr(
    args: dict[str, Any], csr: x509.CertificateSigningRequest, domains: list[str]
) -> None:
    from acmekit.certbot.certmanager import CsrOutputs

    async with _manager(args) as manager:
        issued = await manager.obtain_for_csr(csr, _params(args), domains)
    if args["dry_run"]:
        click.echo("The dry run was successful.")
        return
    outputs = CsrOutputs(args["cert_path"], args["chain_path"], args["fullchain_path"])
    for path in outputs.write(issued):
        click.echo(f"Saved {path}")


# -- run, install, rollback (the nginx installer) -----------------------------------------


def _install_options(func: F) -> F:
    options = [
        click.option(
            "--https-port",
            type=click.IntRange(1, 65535),
            default=443,
            show_default=True,
            help="the port nginx serves HTTPS on",
        ),
        click.option(
            "--redirect/--no-redirect",
            default=False,
            help="redirect HTTP to HTTPS for the certificate's names [default: no]",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command(cls=_InOrder)
@click.option("--server", required=True, help="ACME directory URL", callback=_directory_url)
@click.option("-d", "--domains", "domains", multiple=True, help="a name (repeat, or commas)")
@click.option("--ip-address", "ip_addresses", multiple=True, help="an IP address to certify")
@click.option("--cert-name", default=None)
@_obtain_options
@_install_options
@click.option("--dry-run", is_flag=True)
@click.option("--force-renewal", "--renew-by-default", "force_renewal", is_flag=True)
@click.option("--keep-until-expiring", "--keep", is_flag=True, help="(the default)")
@click.option("--expand", is_flag=True, help="grow the lineage whose names are all among -d")
@click.option("--duplicate", is_flag=True, help="a new lineage even if one has these names")
@_account_options
@_dir_options
def run(**args: Any) -> None:
    """Obtain a certificate and install it (certbot's default command): `--nginx`, or
    `-i nginx` with another authenticator. `acmekit --nginx ...` means `acmekit run`."""
    if _installer(args) is None:
        raise click.UsageError("run installs the certificate: give --nginx or -i nginx")
    domains = _domains(args)
    if not domains:
        raise click.UsageError("give at least one -d NAME")
    _validate_hooks(args)
    params = _params(args, default_authenticator="nginx" if args["installer"] else None)
    outcome = _run(_certonly(args, domains, params))
    _report_certonly(outcome)
    if args["dry_run"] or outcome.live_dir is None:
        return
    report = _run(_install(args, outcome.name, params))
    _report_install(report)


async def _install(args: dict[str, Any], name: str, params: RenewalParams) -> InstallReport:
    async with _manager(args) as manager:
        return await manager.install_nginx(
            name, params, https_port=args["https_port"], redirect=args["redirect"]
        )


def _report_install(report: InstallReport) -> None:
    for where, names in report.blocks.items():
        click.echo(f"Deployed the certificate for {' '.join(names)} to {where}")
    if report.created:
        click.echo(f"Added a server block for {' '.join(report.created)}")


@click.command(cls=_Certbot)
@click.option("--cert-name", required=True)
@click.option("--nginx", is_flag=True)
@click.option("-i", "--installer", default=None, help="nginx (the one installer)")
@click.option("--nginx-server-root", default=None)
@click.option("--nginx-ctl", default=None)
@click.option("--nginx-sleep-seconds", type=float, default=None)
@click.option("--http-01-port", type=click.IntRange(1, 65535), default=None)
@_install_options
@_dir_options
def install(**args: Any) -> None:
    """Install a certificate already obtained into nginx's server blocks."""
    from acmekit.certbot.renewalparams import Authenticator, RenewalParams

    if _installer(args) is None:
        raise click.UsageError("give --nginx or -i nginx")
    params = RenewalParams(
        authenticator=Authenticator.NGINX,
        server="",
        http01_port=args["http_01_port"],
        nginx_server_root=_absolute(args["nginx_server_root"]),
        nginx_ctl=args["nginx_ctl"],
        nginx_sleep_seconds=args["nginx_sleep_seconds"],
    )
    report = _run(_install(args, args["cert_name"], params))
    _report_install(report)


@click.command(cls=_Certbot)
@click.option("--checkpoints", type=click.IntRange(1), default=1, show_default=True)
@click.option("--nginx", is_flag=True, help="(the one installer)")
@click.option("--nginx-server-root", default=None)
@click.option("--nginx-ctl", default=None)
@click.option("--nginx-sleep-seconds", type=float, default=None)
@_dir_options
def rollback(**args: Any) -> None:
    """Undo the last installations into nginx (each one's files as they were before)."""
    from acmekit.certbot.nginx.installer import NginxInstaller
    from acmekit.certbot.renewalparams import Authenticator, RenewalParams, nginx_control

    params = RenewalParams(
        authenticator=Authenticator.NGINX,
        server="",
        nginx_server_root=_absolute(args["nginx_server_root"]),
        nginx_ctl=args["nginx_ctl"],
        nginx_sleep_seconds=args["nginx_sleep_seconds"],
    )
    installer = NginxInstaller(nginx_control(params), args["work_dir"])
    restored = _run(installer.rollback(args["checkpoints"]))
    if not restored:
        click.echo("No installation to roll back.")
    for path in restored:
        click.echo(f"Restored {path}")


# -- renew --------------------------------------------------------------------------------


# `renew` and `reconfigure`: a server given replaces the one each renewal conf saved.
_saved_server_option = click.option(
    "--server",
    default=None,
    help="use this server instead of the saved one",
    callback=_directory_url,
)


@click.command(cls=_Certbot)
@click.option("--cert-name", default=None)
@_saved_server_option
@_staging_option
@click.option("--dry-run", is_flag=True)
@click.option("--force-renewal", "--renew-by-default", "force_renewal", is_flag=True)
@_obtain_options
@click.option(
    "--random-sleep-on-renew/--no-random-sleep-on-renew",
    default=None,
    help="sleep up to 8 minutes first, as certbot does, to spread load on the CA "
    "(default: on when not run from a terminal, --dry-run included)",
)
@click.option("--max-random-sleep", type=float, default=RENEW_MAX_SLEEP, show_default=True)
@_dir_options
def renew(**args: Any) -> None:
    """Renew every certificate that is due (certbot's lineages too).

    Run from cron or a timer (no terminal), it first sleeps a random time of up to
    8 minutes, as certbot does; --no-random-sleep-on-renew starts at once.
    """
    from acmekit.certbot.certmanager import RenewOptions

    _validate_hooks(args)
    sleep = args["random_sleep_on_renew"]
    if sleep is None:
        sleep = not sys.stdin.isatty()
    options = RenewOptions(
        cert_name=args["cert_name"],
        dry_run=args["dry_run"],
        force=args["force_renewal"],
        max_random_sleep=args["max_random_sleep"] if sleep else 0.0,
        before_sleep=_say_delay,
        overrides=_overrides(args),
    )
    report = _run(_with(_manager(args), lambda m: m.renew(options)))
    _report_renew(report)
    # certbot's exit status: 1 only when a renewal failed; a failing hook is reported
    # (as for certonly) but does not undo the certificate it follows.
    if any(o.action == "failed" for o in report.outcomes):
        sys.exit(1)


@click.command(cls=_Certbot)
@click.option("--cert-name", required=True)
@_saved_server_option
@_obtain_options
@_dir_options
def reconfigure(**args: Any) -> None:
    """Change a certificate's renewal settings (certbot's reconfigure): they are tried in
    a test run first, and saved only if it succeeds."""
    _validate_hooks(args)
    overrides = _overrides(args)
    if overrides is None:
        raise click.UsageError("give at least one setting to change (e.g. --webroot -w DIR)")
    name = args["cert_name"]
    _run(_with(_manager(args), lambda m: m.reconfigure(name, overrides)))
    click.echo(
        f"Successfully updated configuration of {name}. "
        "Changes will apply when the certificate renews."
    )


# Options whose RenewalParams field has another name.
_FIELD_OF = {
    "standalone": "authenticator",
    "webroot": "authenticator",
    "manual": "authenticator",
    "dns_rfc2136": "authenticator",
    "nginx": "authenticator",
    "preferred_challenges": "pref_challs",
    "http_01_port": "http01_port",
    "http_01_address": "http01_address",
    "deploy_hook": "renew_hook",
}
# Fields `renew` never takes from its command line: where files are is not how to obtain.
_NOT_OVERRIDDEN = {"config_dir", "work_dir", "logs_dir", "webroot_map"}


def _overrides(args: dict[str, Any]) -> Overrides | None:
    """certbot's rule for `renew`: what was given on the command line (not defaults)
    is used over each renewal conf."""
    from acmekit.certbot.renewalparams import Overrides, RenewalParams

    ctx = click.get_current_context()
    given = {
        _FIELD_OF.get(name, name)
        for name in ctx.params
        # cli.ini's values (the default map) count as given, as certbot's do
        if ctx.get_parameter_source(name)
        in (
            click.core.ParameterSource.COMMANDLINE,
            click.core.ParameterSource.ENVIRONMENT,
            click.core.ParameterSource.DEFAULT_MAP,
        )
    }
    if args["dns_hook"]:
        given.add("authenticator")
    if args.get("staging"):
        given.add("server")
    if args["nginx"]:
        given.add("installer")
    known = {f.name for f in dataclasses.fields(RenewalParams)} - _NOT_OVERRIDDEN
    fields = frozenset(given & known)
    if not fields:
        return None
    # Fields not given keep placeholders here; only `fields` are ever read.
    values = _params({**args, "server": args["server"] or ""}, default_authenticator="standalone")
    return Overrides(values, fields)


def _say_delay(seconds: float) -> None:
    """certbot's words, so that a cron mail or a timer's journal says why it waits
    (an INFO line in certbot's log: -q, which leaves only errors, silences it)."""
    if logging.getLogger().getEffectiveLevel() >= logging.ERROR:
        return
    click.echo(f"Non-interactive renewal: random delay of {seconds:.2f} seconds", err=True)


def _report_renew(report: RenewReport) -> None:
    for o in report.outcomes:
        if o.action == "failed":
            why = explain(o.exception) if o.exception is not None else o.error
            click.echo(f"acmekit: {o.name}: renewal failed: {why}", err=True)
        elif o.action == "not due":
            when = ""
            if o.renew_at is not None:
                by = "in the CA's renewal window (ARI)" if o.by_ari else "by its lifetime"
                when = f"; due {o.renew_at:%Y-%m-%d %H:%M:%S} UTC, {by}"
            click.echo(f"{o.name}: not due for renewal yet (expires {o.not_after:%Y-%m-%d}{when})")
        else:
            click.echo(f"{o.name}: {o.action} ({' '.join(o.domains)})")
    if not report.outcomes:
        click.echo("No certificates found.")
    if report.hook_failures:
        click.echo(f"acmekit: {report.hook_failures} hook(s) failed", err=True)


# -- revoke, delete, certificates -----------------------------------------------------------


@click.command(cls=_Certbot)
@click.option("--cert-path", type=click.Path(path_type=Path), default=None)
@click.option("--cert-name", default=None)
@click.option("--server", default=None, callback=_directory_url)
@_staging_option
@click.option(
    "--reason",
    type=click.Choice(
        [
            "unspecified",
            "keycompromise",
            "affiliationchanged",
            "superseded",
            "cessationofoperation",
        ],
        case_sensitive=False,
    ),
    default="unspecified",
)
@click.option(
    "--key-path",
    type=click.Path(path_type=Path),
    default=None,
    help="revoke with the certificate's private key instead of the account's",
)
@click.option("--delete-after-revoke/--no-delete-after-revoke", default=None)
@_account_options
@_dir_options
def revoke(**args: Any) -> None:
    """Revoke a certificate (and by default delete its lineage, as certbot -n does)."""
    if (args["cert_path"] is None) == (args["cert_name"] is None):
        raise click.UsageError("give exactly one of --cert-path and --cert-name")
    reason = RevocationReason.NAMES[args["reason"].lower()]
    delete_after = args["delete_after_revoke"] is not False
    path, lineage = _run(_revoke(args, reason, delete_after))
    click.echo(f"Congratulations! You have successfully revoked the certificate at {path}.")
    if lineage is not None and delete_after:
        click.echo(f"Deleted all files relating to certificate {lineage.name}.")


async def _revoke(
    args: dict[str, Any], reason: int, delete_after: bool
) -> tuple[Path, Lineage | None]:
    async with _manager(args) as manager:
        path = args["cert_path"] or manager.cert_path(args["cert_name"])
        lineage = await manager.revoke(
            path, reason, args["server"], delete_after=delete_after, key_path=args["key_path"]
        )
    return path, lineage


@click.command(cls=_Certbot)
@click.option("--cert-name", required=True)
@_dir_options
def delete(**args: Any) -> None:
    """Delete a lineage: its renewal conf, live links and archive."""
    _run(_with(_manager(args), lambda m: m.delete(args["cert_name"])))
    click.echo(f"Deleted all files relating to certificate {args['cert_name']}.")


@click.command("update_symlinks", cls=_Certbot)
@_dir_options
def update_symlinks(**args: Any) -> None:
    """Point every lineage's live links at its renewal conf's archive_dir (certbot's
    update_symlinks, after a conf was edited by hand)."""
    failed = _run(_with(_manager(args), lambda m: m.update_symlinks()))
    for line in failed:
        click.echo(f"acmekit: {line}", err=True)
    if failed:
        sys.exit(1)


@click.command(cls=_Certbot)
@click.option("--cert-name", default=None)
@click.option(
    "--server",
    default=None,
    callback=_directory_url,
    help="accepted as certbot accepts it; the list is of every lineage",
)
@click.option("-d", "--domains", "domains", multiple=True, help="only certificates for these names")
@click.option("--json", "as_json", is_flag=True, help="one JSON object (see module docs)")
@click.option(
    "--ct-log-list",
    "ct_log_lists",
    multiple=True,
    metavar="FILE",
    help="verify the embedded SCTs against this CT log list (Chrome v3; repeatable)",
)
@_dir_options
def certificates(**args: Any) -> None:
    """List the certificates in the config dir, with their SCTs."""
    from acmekit.certbot.certinfo import describe_lineages
    from acmekit.client.ctlogs import load_log_lists

    try:
        logs = load_log_lists(args["ct_log_lists"]) if args["ct_log_lists"] else None
    except ValueError as exc:
        _fail(str(exc))
        return
    manager = _manager(args)
    domains = [n.strip() for d in args["domains"] for n in d.split(",") if n.strip()]
    report = describe_lineages(
        manager.lineages, datetime.now(UTC), args["cert_name"], logs, domains
    )
    if args["as_json"]:
        click.echo(json.dumps(report, indent=2))
        return
    _print_certificates(report, bool(args["cert_name"] or domains))


def _print_certificates(report: dict[str, Any], filtered: bool) -> None:
    from acmekit.certbot.ctcheck import report_lines

    if not report["certificates"] and not report["errors"]:
        click.echo("No certificates found.")
    else:
        click.echo(f"Found the following {'matching ' if filtered else ''}certs:")
    for c in report["certificates"]:
        state = f"VALID: {c['days_left']} days" if c["valid"] else "INVALID: EXPIRED"
        click.echo(f"  Certificate Name: {c['name']}")
        click.echo(f"    Serial Number: {c['serial']}")
        click.echo(f"    Key Type: {c['key_type']}")
        click.echo(f"    Domains: {' '.join(c['domains'])}")
        expiry = datetime.fromisoformat(c["not_after"])
        click.echo(f"    Expiry Date: {expiry} ({state})")
        click.echo(f"    Certificate Path: {c['fullchain_path']}")
        click.echo(f"    Private Key Path: {c['privkey_path']}")
        if c.get("scts") or c.get("ct_policy"):
            for line in report_lines(c, "    "):
                click.echo(line)
    for e in report["errors"]:
        click.echo(f"  {e['name']}: {e['error']}")


# -- accounts -------------------------------------------------------------------------------


@click.command(cls=_Certbot)
@_server_option
@_account_options
@_dir_options
def register(**args: Any) -> None:
    """Create an ACME account and save it in certbot's accounts/ layout."""
    _, ident = _run(_with(_manager(args), lambda m: m.register(args["server"])))
    click.echo(f"Account registered: {ident}")


@click.command("show_account", cls=_Certbot)
@_server_option
@_account_options
@_dir_options
def show_account(**args: Any) -> None:
    """Show the account's URL and contacts as the server has them."""
    account = _run(_with(_manager(args), lambda m: m.account(args["server"])))
    click.echo(f"Account details for server {args['server']}:")
    click.echo(f"  Account URL: {account.url}")
    click.echo(f"  Account status: {account.status}")
    for contact in account.contact:
        click.echo(f"  Email contact: {contact.removeprefix('mailto:')}")


@click.command("persist-record")
@click.option("--server", required=True, callback=_directory_url)
@click.option("-d", "--domains", "domains", multiple=True, required=True)
@click.option("--wildcard", is_flag=True, help="add policy=wildcard (wildcards, subdomains)")
@click.option("--persist-until", default=None, help="date (YYYY-MM-DD or RFC 3339) or UNIX seconds")
@click.option("--issuer", default=None, help="one of the CA's issuer domain names")
@click.option("--any-domain", is_flag=True, help="one accounturi valid for every domain")
@_account_options
@_dir_options
def persist_record(**args: Any) -> None:
    """Print the dns-persist-01 TXT record(s) to publish for the stored account."""
    from acmekit.client.persist import PersistUnavailable

    until = _unix_time(args["persist_until"]) if args["persist_until"] else None
    # Checked as every other command's -d: ASCII first, for the record's folding
    # (case-fold, NFC, IDNA) would take "\u212aexample.test" to kexample.test's record.
    domains = [_requested(d) for d in args["domains"]]
    manager = _manager(args)

    def records(m: CertManager) -> Awaitable[list[PersistRecordText]]:
        return m.persist_records(
            args["server"],
            domains,
            wildcard=args["wildcard"],
            persist_until=until,
            issuer=args["issuer"],
            any_domain=args["any_domain"],
        )

    try:
        found = _run(_with(manager, records))
    except PersistUnavailable as exc:
        raise click.ClickException(f"{exc} (does the CA offer dns-persist-01?)") from None
    for record in found:
        click.echo(record.zone_line())


def _unix_time(text: str) -> int:
    """UNIX seconds from digits, a date (midnight UTC) or an RFC 3339 time."""
    if text.isascii() and text.isdigit():  # not '²' (int() raises) nor '١٢' (int() reads 12)
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date, a time or UNIX seconds") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


@click.command("update_account", cls=_Certbot)
@_server_option
@_account_options
@_dir_options
def update_account(**args: Any) -> None:
    """Replace the account's contacts with -m (empty to remove them)."""
    contact = [f"mailto:{e}" for e in _account(args).email]
    account = _run(_with(_manager(args), lambda m: m.update_account(args["server"], contact)))
    emails = [c.removeprefix("mailto:") for c in account.contact]
    if not emails:  # certbot's words for both cases
        click.echo("Any contact information associated with this account has been removed.")
    else:
        click.echo(f"Your e-mail address was updated to {','.join(emails)}.")


@click.command(cls=_Certbot)
@_server_option
@_account_options
@_dir_options
def unregister(**args: Any) -> None:
    """Deactivate the account at the server and remove it from the config dir."""
    _run(_with(_manager(args), lambda m: m.unregister(args["server"])))
    click.echo("Account deactivated.")


# -- check ------------------------------------------------------------------------------------


@click.command()
@click.argument("target")
@click.option("--servername", default=None, help="SNI name (default: the host)")
@click.option("--ca-bundle", default=None, help="PEM roots to verify against")
@click.option("--timeout", default=10.0, type=float)
@click.option(
    "--ct-log-list",
    "ct_log_lists",
    multiple=True,
    metavar="FILE",
    help="verify the embedded SCTs against this CT log list (Chrome v3; repeatable)",
)
def check(
    target: str,
    servername: str | None,
    ca_bundle: str | None,
    timeout: float,
    ct_log_lists: tuple[str, ...],
) -> None:
    """Connect with TLS and show the served certificate's validity, verification and SCTs."""
    from acmekit.certbot.ctcheck import report_lines
    from acmekit.certbot.tlscheck import check_tls, parse_target
    from acmekit.client.ctlogs import load_log_lists
    from acmekit.client.transport import RootsError, trust_store

    try:
        logs = load_log_lists(ct_log_lists) if ct_log_lists else None
    except ValueError as exc:
        _fail(str(exc))
        return

    host, port = parse_target(target)
    bundle = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or None
    try:
        trust_store(bundle)  # a bad bundle is named before any connection is blamed
        result = check_tls(host, port, servername or host, bundle, timeout, datetime.now(UTC))
    except RootsError as exc:
        _fail(str(exc))
        return
    except OSError as exc:
        _fail(f"{target}: {exc}")
        return
    click.echo(f"subject: {result.subject}")
    click.echo(f"names: {' '.join(result.names)}")
    click.echo(f"notBefore: {result.not_before.isoformat()}")
    click.echo(f"notAfter: {result.not_after.isoformat()}")
    click.echo(f"days left: {result.days_left}")
    click.echo(f"verify: {'ok' if result.verified else 'failed: ' + result.verify_error}")
    if result.certificate is not None:
        report = _sct_report(result.certificate, result.chain, bundle, logs, timeout)
        for line in report_lines(report):
            click.echo(line)
        policy = report["ct_policy"]
        if policy is not None and not policy["compliant"]:
            sys.exit(1)
    if not result.verified:
        sys.exit(1)


def _sct_report(
    cert: Any, sent: Sequence[Any], bundle: str | None, logs: Any, timeout: float
) -> dict[str, Any]:
    """SCTs of a served certificate: its issuer from the chain the server sent, else from
    the bundle, else from its AIA."""
    from cryptography import x509

    from acmekit.certbot.ctcheck import fetch_issuer, issuer_from, sct_report

    issuer = None
    if logs is not None:
        issuer = issuer_from(cert, sent)
        if issuer is None and bundle:
            try:
                issuer = issuer_from(
                    cert, x509.load_pem_x509_certificates(Path(bundle).read_bytes())
                )
            except (OSError, ValueError):
                issuer = None
        issuer = issuer or fetch_issuer(cert, timeout)
    return sct_report(cert, issuer, logs)
