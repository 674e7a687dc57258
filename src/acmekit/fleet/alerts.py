"""Alerts: a site that enters the failing state is announced once.

The worker builds an `Alert` when a site's consecutive failures reach the planner's
`failing_after` threshold, which happens once per run of failures: a success resets
the count, so a site alerts again only after it recovered and then failed again.
Retries of a site already failing do not alert.

`ShellAlertHook` runs a command through the shell with the alert in its environment:

    FLEET_SITE_ID         the site's id
    FLEET_SITE_NAMES      its names, separated by spaces
    FLEET_FAILURES        consecutive failures so far
    FLEET_PROBLEM_TYPE    the last problem's type (an RFC 8555 URN, or about:blank)
    FLEET_PROBLEM_DETAIL  the last problem's detail

A hook that fails (exits non-zero, cannot start, outlives its timeout) is logged; it
never stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    site_id: str
    names: tuple[str, ...]
    failures: int
    problem: Mapping[str, Any]

    def environment(self) -> dict[str, str]:
        return {
            "FLEET_SITE_ID": self.site_id,
            "FLEET_SITE_NAMES": " ".join(self.names),
            "FLEET_FAILURES": str(self.failures),
            "FLEET_PROBLEM_TYPE": str(self.problem.get("type", "about:blank")),
            "FLEET_PROBLEM_DETAIL": str(self.problem.get("detail", "")),
        }


AlertHook = Callable[[Alert], Awaitable[None]]


class ShellAlertHook:
    """Runs `command` through the shell for each alert (see the top of the module)."""

    def __init__(self, command: str, timeout: float = 60.0) -> None:
        self.command = command
        self.timeout = timeout

    async def __call__(self, alert: Alert) -> None:
        env = {**os.environ, **alert.environment()}
        try:
            proc = await asyncio.create_subprocess_shell(
                self.command,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            log.error("site %s: alert hook could not start: %s", alert.site_id, exc)
            return
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.error("site %s: alert hook killed after %.0f s", alert.site_id, self.timeout)
            return
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip()[-500:]
            log.error("site %s: alert hook exited %d: %s", alert.site_id, proc.returncode, detail)
            return
        log.info("site %s: alert hook ran (%d failures)", alert.site_id, alert.failures)
