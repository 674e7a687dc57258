"""NOTIFY (RFC 1996) to the secondaries after every change of a zone.

The store calls `changed(delta)` for each new serial; the zones it touched are marked and
a task sends, for each of them, a NOTIFY (opcode 4, AA, the zone's SOA in the question and
its current SOA in the answer, §3.7) over UDP to every `--notify HOST:PORT`, signed with
the first `--allow-transfer` key if there is one, and retries each unanswered one after
1, 2, 4 and 8 seconds (§3.6). Changes that arrive while a round is out are folded into the
next round: a secondary asks for the newest serial anyway. A secondary that stays silent
still catches up through the SOA's refresh timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsig

from acmekit.dns.store import Delta, RecordStore
from acmekit.dnsbackend import CLOSING_BACKEND

log = logging.getLogger(__name__)

RETRIES = (1.0, 2.0, 4.0, 8.0)
STATUS_TIMEOUT = 1.0  # seconds a secondary has to answer the status page's SOA query


@dataclass(frozen=True)
class Secondary:
    host: str
    port: int

    @property
    def label(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Notifier:
    """Sends NOTIFY for changed zones to `targets` until `close()`."""

    def __init__(
        self,
        store: RecordStore,
        targets: Sequence[tuple[str, int]],
        key: dns.tsig.Key | None = None,
    ) -> None:
        self.store = store
        self.secondaries = [Secondary(h, p) for h, p in targets]
        self.key = key
        self._dirty: set[dns.name.Name] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        store.on_delta.append(self.changed)

    def changed(self, delta: Delta) -> None:
        zones = {self.store.zone_of(c.name) for c in delta.changes}
        self._dirty.update(z for z in zones if z is not None)
        if self._dirty:
            self._wake.set()

    def start(self) -> None:
        if self.secondaries and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            zones, self._dirty = sorted(self._dirty), set()
            await asyncio.gather(*(self._notify(s, z) for s in self.secondaries for z in zones))

    def _message(self, zone: dns.name.Name) -> dns.message.Message:
        message = dns.message.make_query(zone, dns.rdatatype.SOA)
        message.flags = dns.flags.AA  # no RD (§3.3); the opcode lives in the flags too
        message.set_opcode(dns.opcode.NOTIFY)
        message.answer.append(self.store.soa_rrset(zone))
        if self.key is not None:
            message.use_tsig({self.key.name: self.key}, self.key.name)
        return message

    async def _notify(self, secondary: Secondary, zone: dns.name.Name) -> None:
        serial = self.store.serial
        for wait in RETRIES:
            try:
                reply = await dns.asyncquery.udp(
                    self._message(zone),
                    secondary.host,
                    timeout=wait,
                    port=secondary.port,
                    backend=CLOSING_BACKEND,
                )
            except (dns.exception.Timeout, OSError, dns.exception.DNSException) as exc:
                log.debug("NOTIFY %s to %s: %s", zone, secondary.label, exc)
                continue
            if reply.rcode() != dns.rcode.NOERROR:
                log.warning(
                    "NOTIFY %s serial %d to %s: %s",
                    zone, serial, secondary.label, dns.rcode.to_text(reply.rcode()),
                )  # fmt: skip
            else:
                log.info("NOTIFY %s serial %d to %s acknowledged", zone, serial, secondary.label)
            return
        log.warning("NOTIFY %s serial %d to %s: no answer", zone, serial, secondary.label)

    async def status(self) -> list[dict[str, object]]:
        """For each secondary and zone: the serial it answers (None if it does not) and
        whether that is ours ("in step") or not ("behind")."""
        zones = list(self.store.zones)

        async def one(secondary: Secondary, zone: dns.name.Name) -> dict[str, object]:
            serial = await _soa_serial(secondary, zone)
            return {
                "secondary": secondary.label,
                "zone": zone.to_text(),
                "serial": serial,
                "primary_serial": self.store.serial,
                "state": "in step" if serial == self.store.serial else "behind",
            }

        return list(await asyncio.gather(*(one(s, z) for s in self.secondaries for z in zones)))


async def _soa_serial(secondary: Secondary, zone: dns.name.Name) -> int | None:
    query = dns.message.make_query(zone, dns.rdatatype.SOA)
    try:
        reply = await dns.asyncquery.udp(
            query,
            secondary.host,
            timeout=STATUS_TIMEOUT,
            port=secondary.port,
            backend=CLOSING_BACKEND,
        )
    except (OSError, dns.exception.DNSException):
        return None
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return int(rrset[0].serial)
    return None
