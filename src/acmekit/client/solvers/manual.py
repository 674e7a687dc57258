"""certbot's `--manual`: the user (or the user's hook scripts) publishes the challenge.

`present` only queues a challenge; `wait`, which the order flow awaits once after every
challenge is presented, then handles the queue in order, as certbot's manual plugin
handles the list of challenges it is given:

- With an auth hook, each challenge runs `auth_hook` through the shell with certbot's
  environment: CERTBOT_DOMAIN, CERTBOT_VALIDATION (the key authorization for http-01,
  the TXT value for dns-01, RFC 8555 §8.3/§8.4), CERTBOT_TOKEN (http-01 only),
  CERTBOT_REMAINING_CHALLENGES (how many follow this one) and CERTBOT_ALL_DOMAINS (the
  comma-separated domains of the whole batch, one per challenge as certbot gives them).
  Its standard output is kept and given to the cleanup hook as CERTBOT_AUTH_OUTPUT. A
  hook that exits non-zero raises HookError.
- Without an auth hook, `prompt(text)` is awaited with instructions: the URL and file
  content for http-01, the TXT record's name and value for dns-01. The command line
  passes a prompt that prints the text and waits for Enter.

Hooks run one at a time. Their output is logged only at debug level, never the
validation value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from acmekit.client.resources import Challenge
from acmekit.client.solvers.errors import HookError, NoManualAuth, SolverError
from acmekit.hookprocs import run_shell
from acmekit.protocol import dnsaccount
from acmekit.protocol.challenges import HTTP01_PATH, dns01_record_name, dns01_txt_value
from acmekit.protocol.messages import ChallengeType, Identifier

if TYPE_CHECKING:
    from acmekit.client.solvers.accountbound import AccountInfo

log = logging.getLogger(__name__)

Prompt = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ManualChallenge:
    """One challenge as the manual plugin shows it to a hook or a person."""

    domain: str  # the name validated: a wildcard's base name, as certbot gives it
    kind: ChallengeType
    token: str
    key_authorization: str
    # dns-account-01 (draft-ietf-acme-dns-account-label-03): the account's own TXT name.
    record_name: str | None = None

    @property
    def validation(self) -> str:
        """What to publish: the key authorization (http-01) or the TXT value (dns-01,
        dns-account-01)."""
        if self.kind in (ChallengeType.DNS_01, ChallengeType.DNS_ACCOUNT_01):
            return dns01_txt_value(self.key_authorization)
        return self.key_authorization

    @property
    def txt_name(self) -> str:
        return self.record_name or dns01_record_name(self.domain)

    @classmethod
    def of(
        cls,
        identifier: Identifier,
        challenge: Challenge,
        key_auth: str,
        account_url: str | None = None,
    ) -> ManualChallenge:
        kind = challenge.known_type
        if kind not in (ChallengeType.HTTP_01, ChallengeType.DNS_01, ChallengeType.DNS_ACCOUNT_01):
            raise SolverError(f"the manual solver cannot answer {challenge.type} challenges")
        record = None
        if kind == ChallengeType.DNS_ACCOUNT_01:
            if account_url is None:
                raise SolverError("dns-account-01 needs the account URL")
            record = dnsaccount.record_name(identifier.base_name, account_url)
        return cls(identifier.base_name, kind, challenge.token or "", key_auth, record)


def hook_env(
    item: ManualChallenge,
    remaining: int,
    all_domains: list[str],
    auth_output: str | None = None,
) -> dict[str, str]:
    """The CERTBOT_* variables for one run of a hook (added to the inherited env)."""
    env = {
        "CERTBOT_DOMAIN": item.domain,
        "CERTBOT_VALIDATION": item.validation,
        "CERTBOT_REMAINING_CHALLENGES": str(remaining),
        "CERTBOT_ALL_DOMAINS": ",".join(all_domains),
    }
    if item.kind == ChallengeType.HTTP_01:
        env["CERTBOT_TOKEN"] = item.token
    if item.record_name is not None:
        # Not certbot's: the TXT owner a dns-account-01 hook must publish at.
        env["CERTBOT_RECORD_NAME"] = item.record_name
    if auth_output is not None:
        env["CERTBOT_AUTH_OUTPUT"] = auth_output
    return env


def prompt_text(item: ManualChallenge) -> str:
    """What a person must publish for `item` before pressing Enter."""
    if item.kind in (ChallengeType.DNS_01, ChallengeType.DNS_ACCOUNT_01):
        return (
            f"Please deploy a DNS TXT record under the name:\n\n"
            f"{item.txt_name}.\n\n"
            f"with the following value:\n\n{item.validation}\n\n"
            "Before continuing, verify the TXT record has been deployed: a name may need\n"
            "several TXT values at once (a name and its wildcard), so keep the others.\n"
        )
    return (
        f"Create a file containing just this data:\n\n{item.validation}\n\n"
        f"And make it available on your web server at this URL:\n\n"
        f"http://{item.domain}{HTTP01_PATH}{item.token}\n"
    )


async def run_hook(name: str, command: str, env: Mapping[str, str]) -> str:
    """Run `command` through the shell with `env` added; its stdout, or HookError."""
    status, out, err = await run_shell(command, env)
    if err:
        log.debug("%s wrote to stderr: %s", name, err.decode(errors="replace").strip()[-500:])
    if status != 0:
        detail = err.decode(errors="replace").strip().splitlines()
        raise HookError(f"{name} {command!r}", status, detail[-1] if detail else "")
    return out.decode(errors="replace")


class ManualSolver:
    def __init__(
        self,
        auth_hook: str | None,
        cleanup_hook: str | None,
        *,
        prompt: Prompt | None = None,
    ) -> None:
        if auth_hook is None and prompt is None:
            raise NoManualAuth()
        self.auth_hook = auth_hook
        self.cleanup_hook = cleanup_hook
        self.prompt = prompt
        self._queue: list[ManualChallenge] = []
        self._performed: dict[ManualChallenge, dict[str, str]] = {}  # item -> its hook env
        self._lock = asyncio.Lock()
        self._account_url: str | None = None

    def for_account(self, info: AccountInfo) -> None:
        """dns-account-01's label comes from the account URL (AccountAware)."""
        self._account_url = info.account_url

    async def present(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        item = ManualChallenge.of(identifier, challenge, key_authorization, self._account_url)
        self._queue.append(item)

    async def wait(self) -> None:
        async with self._lock:
            batch, self._queue = self._queue, []
            # certbot joins every challenge's domain, so NAME and *.NAME (both
            # challenged as NAME, RFC 8555 §7.1.3) give NAME twice.
            domains = [item.domain for item in batch]
            for index, item in enumerate(batch):
                env = hook_env(item, len(batch) - index - 1, domains)
                await self._perform(item, env)

    async def _perform(self, item: ManualChallenge, env: dict[str, str]) -> None:
        if self.auth_hook is not None:
            output = await run_hook("auth hook", self.auth_hook, env)
            # certbot passes the output stripped: a trailing newline would end up in
            # the record name or file path the cleanup hook builds from it.
            env = {**env, "CERTBOT_AUTH_OUTPUT": output.strip()}
            log.info("auth hook ran for %s (%s)", item.domain, item.kind)
        elif self.prompt is not None:
            await self.prompt(prompt_text(item))
        self._performed[item] = env

    async def cleanup(
        self, identifier: Identifier, challenge: Challenge, key_authorization: str
    ) -> None:
        """Run the cleanup hook with the environment its auth hook had (and its output)."""
        item = ManualChallenge.of(identifier, challenge, key_authorization, self._account_url)
        if item in self._queue:  # presented but never performed
            self._queue.remove(item)
            return
        env = self._performed.pop(item, None)
        if self.cleanup_hook is None or env is None:
            return
        async with self._lock:
            await run_hook("cleanup hook", self.cleanup_hook, {"CERTBOT_AUTH_OUTPUT": "", **env})
