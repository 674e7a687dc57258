"""ACME Renewal Information (RFC 9773): certificate IDs and suggested renewal windows.

A certificate is named by its certID (§4.1; the rules are in acmekit.protocol.ari).

The window follows Let's Encrypt: centred on two thirds of the validity period, a day
either side (narrower for short lifetimes: a twelfth of the validity at most), so a
client renews with a third of the lifetime left. A revoked certificate's window is
pulled into the past (start an hour ago, end half an hour later), which tells clients
to renew now (§4.2). An operator can move a window to start at a chosen time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from acmekit.protocol.ari import CertId, cert_id_of, parse_cert_id, serial_bytes

MAX_HALF_WIDTH = timedelta(days=1)
MOVED_WIDTH = timedelta(hours=1)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def suggested_window(not_before: datetime, not_after: datetime) -> Window:
    """Centred on two thirds of the validity period."""
    validity = not_after - not_before
    ideal = not_before + validity * 2 / 3
    half = min(MAX_HALF_WIDTH, validity / 12)
    return Window(ideal - half, ideal + half)


def revoked_window(now: datetime) -> Window:
    """Entirely in the past: renew immediately."""
    start = now - timedelta(hours=1)
    return Window(start, start + timedelta(minutes=30))


def moved_window(start: datetime) -> Window:
    return Window(start, start + MOVED_WIDTH)


__all__ = [
    "CertId",
    "Window",
    "cert_id_of",
    "moved_window",
    "parse_cert_id",
    "revoked_window",
    "serial_bytes",
    "suggested_window",
]
