"""A DnsProvider that runs a command, in the shape of lego's `exec` provider.

`HookDnsProvider("/usr/local/bin/dns-hook --zone x")` runs, without a shell,

    /usr/local/bin/dns-hook --zone x present _acme-challenge.example.com. VALUE
    /usr/local/bin/dns-hook --zone x cleanup _acme-challenge.example.com. VALUE

The command line is split like a POSIX shell would (shlex) and the two arguments are
appended. FQDN is absolute, with the trailing dot, exactly as lego passes it, so a
script written for lego's exec provider works unchanged. A command that exits non-zero
raises HookError naming it and its status. The value is never logged.
"""

from __future__ import annotations

import logging
import shlex

from acmekit.client.solvers.dnslookup import absolute
from acmekit.client.solvers.errors import HookError
from acmekit.hookprocs import run_exec

log = logging.getLogger(__name__)


class HookDnsProvider:
    def __init__(self, command: str) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("the DNS hook command is empty")

    async def add_txt(self, fqdn: str, value: str) -> None:
        await self._run("present", fqdn, value)

    async def remove_txt(self, fqdn: str, value: str) -> None:
        await self._run("cleanup", fqdn, value)

    async def _run(self, action: str, fqdn: str, value: str) -> None:
        argv = [*self.argv, action, absolute(fqdn), value]
        status, out, err = await run_exec(argv)
        if status != 0:
            lines = (err or out).decode(errors="replace").strip().splitlines()
            raise HookError(
                f"DNS hook {action} {self.argv[0]!r}", status, lines[-1] if lines else ""
            )
        log.debug("DNS hook %s ran for %s", action, fqdn)
