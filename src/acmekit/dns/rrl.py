"""Response rate limiting over UDP, after BIND's RRL.

A UDP source address can be forged, so an authoritative server can be made to send its
answers to a victim: an amplifier. RRL bounds what one client network gets: each /24
(IPv4) or /56 (IPv6) has a bucket of `rate` responses that refills at `rate` per second.
A query beyond it is not answered, except that every `slip`-th one gets a truncated empty
answer (TC=1), so a real resolver behind a busy network retries over TCP, which cannot
be forged and is not limited. `slip` 0 never answers beyond the rate; 1 always slips.

Loopback is exempt by default: a packet from 127.0.0.0/8 or ::1 cannot arrive from
another host, and the tests and the CA's validations on one machine ask at any rate.

Pure: the clock is injected, and the verdict is made before the query is parsed, so a
dropped query costs no more than the bucket arithmetic.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    SEND = "send"
    SLIP = "slip"  # answer with TC=1 and nothing else
    DROP = "drop"


@dataclass(frozen=True)
class RrlSettings:
    rate: float = 20.0  # responses per second per client network; 0: no limit
    slip: int = 2
    exempt_loopback: bool = True
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56


MAX_NETWORKS = 100_000  # buckets kept; beyond it, idle ones are forgotten


class ResponseRateLimiter:
    def __init__(self, settings: RrlSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        # network -> [tokens, time of last refill, responses refused so far]
        self._buckets: dict[tuple[int, int], list[float]] = {}

    def verdict(self, address: str) -> Verdict:
        """What to do with a response to `address` (an IP address, as the socket gives)."""
        rate = self.settings.rate
        if not rate:
            return Verdict.SEND
        network = self._network(address)
        if network is None:
            return Verdict.SEND
        now = self._clock()
        bucket = self._buckets.get(network)
        if bucket is None:
            if len(self._buckets) >= MAX_NETWORKS:
                self._forget_idle(now)
            bucket = self._buckets[network] = [rate, now, 0]
        tokens = min(rate, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return Verdict.SEND
        bucket[0] = tokens
        bucket[2] += 1
        slip = self.settings.slip
        return Verdict.SLIP if slip and bucket[2] % slip == 0 else Verdict.DROP

    def __len__(self) -> int:
        """How many client networks have a bucket now."""
        return len(self._buckets)

    def _network(self, address: str) -> tuple[int, int] | None:
        """(family, prefix bits of the address); None for an exempt or unparsable one."""
        try:
            if ":" in address:
                # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; their
                # network is the IPv4 one, or every IPv4 client would share one bucket.
                mapped = ipaddress.IPv6Address(address.split("%")[0]).ipv4_mapped
                if mapped is not None:
                    return self._network(str(mapped))
                if self.settings.exempt_loopback and address == "::1":
                    return None
                raw = socket.inet_pton(socket.AF_INET6, address.split("%")[0])
                bits = 128 - self.settings.ipv6_prefix
            else:
                raw = socket.inet_pton(socket.AF_INET, address)
                if self.settings.exempt_loopback and raw[0] == 127:
                    return None
                bits = 32 - self.settings.ipv4_prefix
        except (OSError, ValueError):
            return None
        return len(raw), int.from_bytes(raw, "big") >> bits

    def _forget_idle(self, now: float) -> None:
        """Drop buckets that have refilled (idle a second or more); all, if none has."""
        idle = [k for k, b in self._buckets.items() if now - b[1] >= 1.0]
        for key in idle:
            del self._buckets[key]
        if not idle:
            self._buckets.clear()
