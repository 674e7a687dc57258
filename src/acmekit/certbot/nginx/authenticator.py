"""http-01 answered by the running nginx (certbot's `--nginx` authenticator).

For each name, the server block nginx would pick for it on the http-01 port (see
`vhosts.select`: exact name, wildcards, regex, then the port's default server) gets one
`include` of a file of ours holding, for each token, what certbot adds (RFC 8555 §8.3):

    location = /.well-known/acme-challenge/TOKEN { default_type text/plain; return 200 "KEYAUTH"; }

An exact `location =` wins over every other location of the block. A block that
answers at server level (`return`, `rewrite`, `if`: nginx runs these in order before
it picks a location) also gets, first in the block and so first to run,

    if ($uri = /.well-known/acme-challenge/TOKEN) { return 200 "KEYAUTH"; }

When no block
listens on the port, a new server block for the names is included in the `http`
block. After the edit, `nginx -t`; if nginx refuses it, every file is put back and the
error is raised; else nginx reloads and we wait `sleep_seconds`. Once the last
challenge is cleaned up the files are put back byte for byte and nginx reloads again.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from acmekit.certbot.nginx.backup import Checkpoint, checkpoints
from acmekit.certbot.nginx.control import NginxControl, NginxError, NginxLock
from acmekit.certbot.nginx.edit import MARK, Changes, append_to_block, prepend_to_block
from acmekit.certbot.nginx.parser import NginxConfig, NginxParseError, dump_directive
from acmekit.certbot.nginx.vhosts import ServerBlock, http_blocks, select, server_blocks
from acmekit.client.resources import Challenge
from acmekit.client.solvers.errors import SolverError
from acmekit.client.solvers.presented import Presented
from acmekit.protocol.challenges import HTTP01_PATH, token_is_wellformed
from acmekit.protocol.messages import Identifier, IdentifierType, parse_dns_name
from acmekit.protocol.problems import AcmeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Answer:
    name: str
    token: str
    key_authorization: str


def location_block(token: str, key_authorization: str) -> str:
    return (
        f"location = {HTTP01_PATH}{token} {{ default_type text/plain; "
        f'return 200 "{key_authorization}"; }}'
    )


def server_level_if(token: str, key_authorization: str) -> str:
    return f'if ($uri = {HTTP01_PATH}{token}) {{ return 200 "{key_authorization}"; }}'


_REWRITES = {"return", "rewrite", "if"}
_BASE64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _wellformed_key_authorization(key_authorization: str) -> bool:
    """RFC 8555 §8.1: token || '.' || base64url(thumbprint): base64url and one dot,
    nothing nginx would read as the end of the quoted string or of the directive."""
    token, dot, thumbprint = key_authorization.partition(".")
    return dot == "." and bool(thumbprint) and set(token + thumbprint) <= _BASE64URL


def _wellformed_name(identifier: Identifier) -> bool:
    """A DNS name (RFC 8555 §7.1.4, not a wildcard: no http-01 for those) or an IP
    address (RFC 8738) in its plain form."""
    if identifier.type == IdentifierType.IP:
        try:
            return ipaddress.ip_address(identifier.value).compressed == identifier.value
        except ValueError:
            return False
    if identifier.is_wildcard:
        return False
    try:
        parse_dns_name(identifier.value)
    except AcmeError:
        return False
    return True


def plan(
    config: NginxConfig, answers: Iterable[_Answer], port: int, directory: Path
) -> tuple[Changes, dict[str, str]]:
    """The edits that serve `answers` on `port`, and for each name the block (file:line)
    chosen, or "new server block"."""
    blocks = server_blocks(config)
    chosen: dict[int, tuple[ServerBlock, list[_Answer]]] = {}
    orphans: dict[str, list[_Answer]] = {}
    where: dict[str, str] = {}
    for answer in answers:
        match = select(blocks, answer.name, port)
        if match is None:
            orphans.setdefault(answer.name, []).append(answer)
            where[answer.name] = "a new server block"
            continue
        key = id(match.block)
        chosen.setdefault(key, (match.block, []))[1].append(answer)
        where[answer.name] = f"{match.block.directive.where} ({match.kind})"
    changes = Changes()
    for n, (block, found) in enumerate(chosen.values()):
        path = directory / f"challenge-{n}.conf"
        lines = [location_block(a.token, a.key_authorization) for a in found]
        if any(d.name in _REWRITES for d in block.directives()):
            lines += [server_level_if(a.token, a.key_authorization) for a in found]
        changes.create(path, "".join(line + "\n" for line in lines))
        splice = prepend_to_block(
            block.directive, [f"{dump_directive('include', [str(path)])} {MARK} (http-01)"]
        )
        changes.splice(block.directive, splice)
    if orphans:
        https = http_blocks(config)
        if not https:
            raise SolverError(f"{config.main.path} has no http block to serve http-01 from")
        path = directory / "challenge-servers.conf"
        servers = []
        for name, found in orphans.items():
            locations = "".join(
                f"    {location_block(a.token, a.key_authorization)}\n" for a in found
            )
            servers.append(
                f"server {{\n    listen {port};\n    server_name {name};\n{locations}}}\n"
            )
        changes.create(path, "".join(servers))
        splice = append_to_block(
            https[0], [f"{dump_directive('include', [str(path)])} {MARK} (http-01)"]
        )
        changes.splice(https[0], splice)
    return changes, where


SELF_CHECK_SECONDS = 10.0
SELF_CHECK_IN_A_ROW = 3


async def _answers(address: str, port: int, answer: _Answer) -> bool:
    """Whether nginx on address:port answers `answer`'s challenge URL with its key
    authorization (one HTTP/1.0 GET with the name as Host)."""
    request = (f"GET {HTTP01_PATH}{answer.token} HTTP/1.0\r\nHost: {answer.name}\r\n\r\n").encode()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 5)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(65536), 5)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    return status == [b"200"] and body == answer.key_authorization.encode()


class NginxSolver:
    """A Solver (with `wait` and `close`) for http-01 through nginx."""

    def __init__(self, control: NginxControl, work_dir: Path, http01_port: int = 80) -> None:
        self.control = control
        # One directory per server root: runs for two nginx installations share no file.
        root = hashlib.sha256(str(control.server_root.absolute()).encode()).hexdigest()[:16]
        self.directory = work_dir.absolute() / "nginx-http01" / root
        self.backups = work_dir.absolute() / "temp_checkpoint" / root
        self.port = http01_port
        self._answers: Presented[str, _Answer] = Presented()
        self._checkpoint: Checkpoint | None = None
        self._served: frozenset[str] = frozenset()
        self._tested = False
        self._lock = asyncio.Lock()
        self._nginx_lock = NginxLock(control.server_root)

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        token = challenge.token or ""
        if not token_is_wellformed(token):
            raise SolverError(f"refusing a malformed token {token!r}")
        # The identifier and key authorization end up in nginx's configuration (a
        # `server_name`, a quoted `return` string) and in the self-check's Host header:
        # what the CA sent is checked first, so that a hostile CA cannot add directives.
        if not _wellformed_key_authorization(key_authorization):
            raise SolverError(f"refusing a malformed key authorization {key_authorization!r}")
        if not _wellformed_name(identifier):
            raise SolverError(f"refusing a malformed identifier {identifier.value!r}")
        self._answers.add(token, _Answer(identifier.value.lower(), token, key_authorization))

    async def wait(self) -> None:
        async with self._lock:
            live = frozenset(self._answers.keys())
            if live != self._served:
                await self._apply(live)

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        self._answers.release(challenge.token or "")
        if len(self._answers) == 0:
            await self.close()

    async def close(self) -> None:
        """Put the files back and reload. The files come first: if nginx cannot be
        reloaded, its configuration on disk is still the user's own."""
        async with self._lock:
            try:
                if self._checkpoint is not None:
                    await asyncio.to_thread(self._restore)
                    self._served = frozenset()
                    try:
                        await self.control.reload()
                    except NginxError as exc:
                        log.warning("the nginx configuration is restored, but: %s", exc)
            finally:
                self._nginx_lock.release()

    def _addresses(self, config: NginxConfig, answers: list[_Answer]) -> dict[str, str]:
        """For each name, an address its block listens on for the port (loopback for
        a block on every address): where the self-check asks."""
        blocks = server_blocks(config)
        found: dict[str, str] = {}
        for a in answers:
            match = select(blocks, a.name, self.port)
            listens = match.block.on_port(self.port) if match is not None else []
            address = listens[0].address if listens else "*"
            found[a.name] = "127.0.0.1" if address in ("*", "[::]") else address.strip("[]")
        return found

    async def _self_check(self, answers: list[_Answer], where: dict[str, str]) -> None:
        """A reload returns before the new workers serve: after `sleep_seconds`, ask
        nginx for each answer as the CA will (RFC 8555 §8.3), for up to
        SELF_CHECK_SECONDS more, so that the CA is not told too early. An answer not
        seen by then is logged, and the CA asked anyway (nginx may not be reachable
        from here the way it is from the CA)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SELF_CHECK_SECONDS
        for a in answers:
            seen = 0  # on fresh connections in a row: old workers may still take one
            while seen < SELF_CHECK_IN_A_ROW:
                if await _answers(where[a.name], self.port, a):
                    seen += 1
                    continue
                seen = 0
                if loop.time() > deadline:
                    log.warning("nginx does not serve the http-01 answer for %s yet", a.name)
                    return
                await asyncio.sleep(0.05)

    def _recover(self) -> None:
        """A run that died with its answers in place left its checkpoint: with the lock
        held, no live run owns one, so each is rolled back first (certbot's recovery
        of its temporary checkpoint)."""
        for left in checkpoints(self.backups):
            log.warning("restoring the nginx files a previous run left edited: %s", left.paths)
            left.rollback()
            left.discard()

    def _restore(self) -> None:
        if self._checkpoint is not None:
            self._checkpoint.rollback()
            self._checkpoint.discard()
            self._checkpoint = None

    async def _apply(self, tokens: frozenset[str]) -> None:
        if not self._nginx_lock.held:
            try:
                await self._nginx_lock.acquire()
            except NginxError as exc:
                raise SolverError(str(exc)) from exc
            await asyncio.to_thread(self._recover)
        if not self._tested:  # a configuration nginx refuses already is not ours to edit
            try:
                await self.control.test()
            except NginxError as exc:
                raise SolverError(f"{exc} (before any change by acmekit)") from exc
            self._tested = True
        await asyncio.to_thread(self._restore)
        answers = [a for t in tokens if (a := self._answers.get(t)) is not None]
        try:
            config = NginxConfig.load(self.control.conf)
            changes, where = plan(config, answers, self.port, self.directory)
            where_to_ask = self._addresses(config, answers)
        except (NginxParseError, OSError) as exc:
            raise SolverError(f"cannot read the nginx configuration: {exc}") from exc
        for name, block in sorted(where.items()):
            log.info("http-01 for %s through nginx: %s", name, block)
        self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._checkpoint = Checkpoint.new(self.backups, "http01")
        await asyncio.to_thread(changes.write, self._checkpoint)
        try:
            await self.control.test()
        except NginxError as exc:
            await asyncio.to_thread(self._restore)
            raise SolverError(f"{exc}; the configuration was restored") from exc
        self._served = tokens
        await self.control.reload()
        await self._self_check(answers, where_to_ask)
