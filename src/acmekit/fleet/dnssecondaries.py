"""The DNS secondaries' state, as the fleet's status page and /metrics show it.

The fleet knows its DNS API (`--dns-api`, `acmekit dns`); that server's
`GET /secondaries` (docs/dns.md) asks each secondary given to it with `--notify` for
each zone's SOA and says which serial each answers. The fleet fetches it when its page
or /metrics is asked for, at most once per `max_age` seconds (a scrape and a page load
together cost one fetch), with the API token, within `timeout` seconds.

A secondary's lag is the serial distance from its serial to the primary's (RFC 1982
§3.2): how many changes it has not transferred yet when the primary counts one serial a
change, as `acmekit dns` does. Negative means it holds a serial the primary has not
reached (a primary whose serial went back). A secondary that does not answer has no
serial and no lag.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

SERIAL_HALF = 2**31


def serial_lag(primary: int, secondary: int) -> int:
    """How far `secondary` is behind `primary` in RFC 1982 serial arithmetic (§3.2):
    positive when behind, negative when ahead; 2^31 apart is undefined, taken as behind."""
    distance = (primary - secondary) % 2**32
    return distance if distance <= SERIAL_HALF else distance - 2**32


@dataclass(frozen=True)
class SecondaryState:
    secondary: str  # HOST:PORT, as given to `acmekit dns --notify`
    zone: str
    serial: int | None  # None: it did not answer the SOA query
    primary_serial: int

    @property
    def lag(self) -> int | None:
        return None if self.serial is None else serial_lag(self.primary_serial, self.serial)

    @property
    def in_step(self) -> bool:
        return self.serial == self.primary_serial


@dataclass(frozen=True)
class SecondariesReport:
    api: str
    error: str | None = None  # why the DNS API could not be asked; None when it was
    primary_serial: int | None = None
    secondaries: tuple[SecondaryState, ...] = ()

    @property
    def reachable(self) -> bool:
        return self.error is None


def _serial(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise ValueError(f"not a serial: {value!r}")
    return value


def parse_secondaries(api: str, doc: Any) -> SecondariesReport:
    """The report from the JSON `GET /secondaries` answered; ValueError for another shape."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("secondaries"), list):
        raise ValueError("not a /secondaries document")
    found = []
    for entry in doc["secondaries"]:
        if not isinstance(entry, Mapping):
            raise ValueError("a secondary is not an object")
        serial = entry.get("serial")
        found.append(
            SecondaryState(
                secondary=str(entry.get("secondary")),
                zone=str(entry.get("zone")),
                serial=None if serial is None else _serial(serial),
                primary_serial=_serial(entry.get("primary_serial")),
            )
        )
    ordered = sorted(found, key=lambda s: (s.zone, s.secondary))
    return SecondariesReport(api, None, _serial(doc.get("serial")), tuple(ordered))


class DnsSecondaries:
    """Asks the DNS API at `api` (its base URL) for its secondaries' state."""

    def __init__(
        self,
        api: str,
        token: str | None = None,
        *,
        timeout: float = 5.0,
        max_age: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.max_age = max_age
        self._clock = clock
        self._last: tuple[float, SecondariesReport] | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def report(self) -> SecondariesReport:
        """The state, fetched again once the last is `max_age` old; never raises."""
        async with self._lock:  # callers at once share one fetch
            if self._last is not None and self._clock() - self._last[0] < self.max_age:
                return self._last[1]
            found = await self._fetch()
            self._last = (self._clock(), found)
            return found

    async def _fetch(self) -> SecondariesReport:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with self._session.get(self.api + "/secondaries", headers=headers) as resp:
                if resp.status != 200:
                    return SecondariesReport(self.api, f"HTTP {resp.status}")
                doc = await resp.json(content_type=None)
            return parse_secondaries(self.api, doc)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return SecondariesReport(self.api, f"{type(exc).__name__}: {exc}".rstrip(": "))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
