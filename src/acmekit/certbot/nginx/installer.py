"""The certificate installed into nginx (certbot's `--nginx` installer).

For each name of the certificate, the server block that serves it: the one nginx picks
for it on the HTTPS port among blocks with TLS there, else the one that has the name
on the HTTP port (a name match; the default server does not count). A name no block
has gets one, as certbot does: a copy of the HTTP port's default server with the
name as its `server_name` (its socket options and `default_server` left out, since
only one block may set them), or a new block when the port has no server at all.

In each block: `ssl_certificate` and `ssl_certificate_key` set to the lineage's
`fullchain.pem` and `privkey.pem` (replacing what was there), a `listen PORT ssl` on
each address the block listens on when it has no TLS on the HTTPS port yet, and with
`redirect`, a redirect from HTTP to HTTPS for the certificate's names. The redirect is
made of server-level rewrite directives, first in the block (nginx runs them in order,
before any location):

    set $acmekit_redirect 0;
    if ($host = NAME) { set $acmekit_redirect 1; }
    if ($scheme = https) { set $acmekit_redirect 0; }
    if ($request_uri ~ "^/\\.well-known/acme-challenge/") { set $acmekit_redirect 0; }
    if ($acmekit_redirect) { return 301 https://$host$request_uri; }

so the HTTPS side of the same block and later http-01 challenges are not redirected.

Every file is saved in a checkpoint under the work directory's `backups/` before it is
written; when `nginx -t` refuses the result, all are put back and the error raised.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from acmekit.certbot.nginx.backup import Checkpoint, checkpoints
from acmekit.certbot.nginx.control import NginxControl, NginxError, nginx_lock
from acmekit.certbot.nginx.edit import (
    MARK,
    Changes,
    append_to_block,
    prepend_to_block,
    replace_directive,
)
from acmekit.certbot.nginx.parser import (
    Directive,
    NginxConfig,
    Splice,
    apply_splices,
    dump_directive,
)
from acmekit.certbot.nginx.vhosts import (
    MatchKind,
    ServerBlock,
    default_block,
    http_blocks,
    select,
    server_blocks,
)
from acmekit.client.errors import ClientError
from acmekit.protocol.messages import parse_dns_name
from acmekit.protocol.problems import AcmeError

log = logging.getLogger(__name__)

# listen parameters that only one block may give for an address:port (nginx's docs).
_SOCKET_OPTIONS = ("default_server", "default", "reuseport", "deferred", "bind")
_SOCKET_PREFIXES = ("backlog=", "rcvbuf=", "sndbuf=", "ipv6only=", "fastopen=", "so_keepalive=",
                    "accept_filter=", "setfib=")  # fmt: skip
REDIRECT_VAR = "$acmekit_redirect"


class InstallError(ClientError):
    """The certificate could not be installed; the configuration is as it was."""


def installable_name(name: str) -> bool:
    """A name that may go into a `server_name` directive: a DNS name (RFC 8555 §7.1.4,
    a wildcard included) or an IP address in its plain form."""
    try:
        return ipaddress.ip_address(name).compressed == name
    except ValueError:
        pass
    try:
        parse_dns_name(name)
    except AcmeError:
        return False
    return True


@dataclass(frozen=True)
class Installation:
    names: Sequence[str]
    fullchain: Path
    privkey: Path
    https_port: int = 443
    http_port: int = 80
    redirect: bool = False


@dataclass
class InstallReport:
    blocks: dict[str, list[str]] = field(default_factory=dict)  # block (file:line) -> names
    created: list[str] = field(default_factory=list)  # names given a new block
    files: list[Path] = field(default_factory=list)


def _name_match(blocks: Sequence[ServerBlock], name: str, port: int) -> ServerBlock | None:
    found = select(blocks, name, port)
    return None if found is None or found.kind == MatchKind.DEFAULT else found.block


def target_block(
    blocks: Sequence[ServerBlock], name: str, inst: Installation
) -> ServerBlock | None:
    tls = [b for b in blocks if b.is_ssl_on(inst.https_port)]
    return _name_match(tls, name, inst.https_port) or _name_match(blocks, name, inst.http_port)


def _listen_copy(directive: Directive) -> str:
    args = [
        a for a in directive.args if a not in _SOCKET_OPTIONS and not a.startswith(_SOCKET_PREFIXES)
    ]
    return dump_directive("listen", args)


def copy_of_block(block: ServerBlock, names: Sequence[str]) -> str:
    """The text of `block` with `server_name` set to `names` and no socket options."""
    d = block.directive
    base = d.start
    splices = [
        Splice(
            d.file.path, x.start - base, x.end - base, _listen_copy(x) if x.name == "listen" else ""
        )
        for x in d.block or []
        if x.name in ("listen", "server_name")
    ]
    line = f"\n{d.body_indent()}server_name {' '.join(names)}; {MARK}"
    if not d.file.text[d.body_start :].startswith(("\n", "\r\n")):
        line += "\n" + d.body_indent()  # `server { listen 80; ...`: the rest on its own line
    splices.append(Splice(d.file.path, d.body_start - base, d.body_start - base, line))
    return apply_splices(d.file.text[d.start : d.end], splices)


def plan_new_blocks(config: NginxConfig, names: Sequence[str], port: int) -> Changes:
    """A block for `names` (which none has): a copy of the port's default server placed
    after it, or a new block at the end of the first `http` block."""
    changes = Changes()
    if not names:
        return changes
    blocks = server_blocks(config)
    default = default_block(blocks, port)
    if default is not None:
        d = default.directive
        text = f"\n\n{d.indent()}{copy_of_block(default, names)}"
        changes.splice(d, Splice(d.file.path, d.end, d.end, text))
        return changes
    https = http_blocks(config)
    if not https:
        raise InstallError(f"{config.main.path} has no http block to add a server to")
    line = f"server {{ listen {port}; server_name {' '.join(names)}; }} {MARK}"
    changes.splice(https[0], append_to_block(https[0], [line]))
    return changes


def redirect_lines(names: Sequence[str], https_port: int) -> list[str]:
    port = "" if https_port == 443 else f":{https_port}"
    lines = [f"set {REDIRECT_VAR} 0; {MARK}"]
    lines += [f"if ($host = {n}) {{ set {REDIRECT_VAR} 1; }} {MARK}" for n in names]
    lines += [
        f"if ($scheme = https) {{ set {REDIRECT_VAR} 0; }} {MARK}",
        f'if ($request_uri ~ "^/\\.well-known/acme-challenge/") {{ set {REDIRECT_VAR} 0; }} {MARK}',
        f"if ({REDIRECT_VAR}) {{ return 301 https://$host{port}$request_uri; }} {MARK}",
    ]
    return lines


def _has_redirect(block: ServerBlock) -> bool:
    return any(d.name == "set" and d.args[:1] == [REDIRECT_VAR] for d in block.directives())


def plan_install(
    config: NginxConfig, inst: Installation
) -> tuple[Changes, InstallReport, list[str]]:
    """The edits for `inst`, what they touch, and the names no block has yet."""
    blocks = server_blocks(config)
    targets: dict[int, tuple[ServerBlock, list[str]]] = {}
    missing: list[str] = []
    for name in inst.names:
        block = target_block(blocks, name, inst)
        if block is None:
            missing.append(name)
        else:
            targets.setdefault(id(block), (block, []))[1].append(name)
    changes, report = Changes(), InstallReport()
    for block, names in targets.values():
        report.blocks[block.directive.where] = names
        _install_in(block, names, inst, changes)
    if inst.redirect:
        _redirects_elsewhere(blocks, targets, inst, changes)
    return changes, report, missing


def _install_in(block: ServerBlock, names: list[str], inst: Installation, changes: Changes) -> None:
    d = block.directive
    add: list[str] = []
    own = d.block or []
    for directive, value in (
        ("ssl_certificate", inst.fullchain),
        ("ssl_certificate_key", inst.privkey),
    ):
        line = dump_directive(directive, [str(value)])
        found = [x for x in own if x.name == directive]
        if not found:
            add.append(f"{line} {MARK}")
            continue
        if found[0].args != [str(value)]:
            changes.splice(found[0], replace_directive(found[0], line))
        for extra in found[1:]:
            changes.splice(extra, replace_directive(extra, ""))
    if not block.is_ssl_on(inst.https_port):
        hosts = dict.fromkeys(lis.host_part for lis in block.listens if not lis.ssl) or {"": None}
        add += [f"listen {h}{inst.https_port} ssl; {MARK}" for h in hosts]
    if inst.redirect and block.on_port(inst.http_port) and not _has_redirect(block):
        # first in the block: server-level rewrites run in order, before any `return` there
        changes.splice(d, prepend_to_block(d, redirect_lines(names, inst.https_port)))
    if add:
        changes.splice(d, append_to_block(d, add))


def _redirects_elsewhere(
    blocks: Sequence[ServerBlock],
    targets: dict[int, tuple[ServerBlock, list[str]]],
    inst: Installation,
    changes: Changes,
) -> None:
    """With TLS in one block and HTTP in another, the redirect goes to the HTTP one."""
    plain = [b for b in blocks if not b.is_ssl_on(inst.http_port)]
    for block, names in list(targets.values()):
        if block.on_port(inst.http_port):
            continue
        for name in names:
            http_block = _name_match(plain, name, inst.http_port)
            if (
                http_block is not None
                and id(http_block) not in targets
                and not _has_redirect(http_block)
            ):
                d = http_block.directive
                changes.splice(d, prepend_to_block(d, redirect_lines(names, inst.https_port)))
                targets[id(http_block)] = (http_block, names)


class NginxInstaller:
    def __init__(self, control: NginxControl, work_dir: Path) -> None:
        self.control = control
        self.backups = work_dir.absolute() / "backups"

    async def install(self, inst: Installation) -> InstallReport:
        async with nginx_lock(self.control.server_root):
            return await self._install(inst)

    async def _install(self, inst: Installation) -> InstallReport:
        for name in inst.names:
            if not installable_name(name):
                # the names are read from the certificate, which the CA wrote: one could
                # carry `;`, braces or newlines into a `server_name` line
                raise InstallError(f"refusing to install for a malformed name {name!r}")
        try:
            await self.control.test()
        except NginxError as exc:
            raise InstallError(f"{exc} (before any change by acmekit)") from exc
        checkpoint = Checkpoint.new(self.backups, "install")
        try:
            report = await self._edit(inst, checkpoint)
            await self.control.test()
        except BaseException as exc:
            # Interrupted too (Ctrl-C, a cancelled task): no half-edited configuration
            # is left for the next reload to pick up.
            checkpoint.rollback()
            checkpoint.discard()
            if not isinstance(exc, Exception):
                raise
            raise InstallError(f"{exc}; every file was restored") from exc
        await self.control.reload()
        return report

    async def _edit(self, inst: Installation, checkpoint: Checkpoint) -> InstallReport:
        config = NginxConfig.load(self.control.conf)
        _, _, missing = plan_install(config, inst)
        files: list[Path] = []
        if missing:
            files += plan_new_blocks(config, missing, inst.http_port).write(checkpoint)
            config = config.reload()
        changes, report, still = plan_install(config, inst)
        if still:
            raise InstallError(f"no server block found or made for {', '.join(still)}")
        report.created = missing
        files += changes.write(checkpoint)
        report.files = sorted(set(files))
        for where, names in report.blocks.items():
            log.info("certificate for %s installed in %s", " ".join(names), where)
        return report

    async def restart(self) -> None:
        """After a renewal: the same files have new contents; nginx reads them again."""
        await self.control.test()
        await self.control.reload()

    async def rollback(self, count: int = 1) -> list[Path]:
        """Undo the last `count` installations (newest first), then test and reload."""
        async with nginx_lock(self.control.server_root):
            return await self._rollback(count)

    async def _rollback(self, count: int) -> list[Path]:
        found = checkpoints(self.backups)[-count:] if count > 0 else []
        restored: list[Path] = []
        for checkpoint in reversed(found):
            checkpoint.rollback()
            restored += checkpoint.paths
            checkpoint.discard()
        if found:
            await self.control.test()
            await self.control.reload()
        return restored
