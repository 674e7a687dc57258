"""RFC 2136 dynamic UPDATE against the record store, restricted to TXT (no I/O).

The caller has already checked the TSIG signature (RFC 8945); this module applies the
rules of RFC 2136 §3 in order and returns the RCODE:

1. zone section (§3.1): one SOA-typed RR naming a zone we are authoritative for, else
   NOTAUTH. dnspython's parser already rejects a malformed zone section with FORMERR.
2. prerequisites (§3.2, table in §3.2.5): YXDOMAIN / NXDOMAIN / YXRRSET / NXRRSET, and
   NOTZONE for a name outside the zone.
3. prescan (§3.4.1): every update RR is in the zone (NOTZONE) and of a legal class and
   type (FORMERR); our policy then allows only TXT (REFUSED otherwise), like BIND's
   `grant KEY zonesub TXT`. A delete of all RRsets at a name (class ANY, type ANY)
   deletes only the TXT there, as that policy would.
4. apply (§3.4.2): all changes or none, since nothing is applied before the prescan.
"""

from __future__ import annotations

import logging

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update

from acmekit.dns.store import RecordStore

log = logging.getLogger(__name__)

TXT = dns.rdatatype.TXT
ANY = dns.rdatatype.ANY


def apply_update(store: RecordStore, message: dns.update.UpdateMessage) -> dns.rcode.Rcode:
    """Check and apply one UPDATE message; the RCODE to answer with."""
    zone = message.zone[0].name
    if message.zone[0].rdclass != dns.rdataclass.IN or not store.is_apex(zone):
        return dns.rcode.NOTAUTH
    rcode = _check_prerequisites(store, zone, message.prerequisite)
    if rcode == dns.rcode.NOERROR:
        rcode = _prescan(zone, message.update)
    if rcode != dns.rcode.NOERROR:
        return rcode
    for rrset in message.update:
        _apply(store, rrset)
    log.info("update applied to zone %s: %d rrsets", zone, len(message.update))
    return dns.rcode.NOERROR


def _in_use(store: RecordStore, name: dns.name.Name) -> bool:
    return store.has_data(name)


def _class(rrset: dns.rrset.RRset) -> dns.rdataclass.RdataClass:
    """ANY or NONE for deletions and value-independent prerequisites, else the zone class.

    Parsed messages carry ANY/NONE in `deleting`; messages built in memory in `rdclass`.
    """
    return rrset.deleting if rrset.deleting is not None else rrset.rdclass


def _check_prerequisites(
    store: RecordStore, zone: dns.name.Name, prereqs: list[dns.rrset.RRset]
) -> dns.rcode.Rcode:
    for rrset in prereqs:
        if not rrset.name.is_subdomain(zone):
            return dns.rcode.NOTZONE
        rcode = _check_one(store, rrset)
        if rcode != dns.rcode.NOERROR:
            return rcode
    return dns.rcode.NOERROR


def _check_one(store: RecordStore, rrset: dns.rrset.RRset) -> dns.rcode.Rcode:
    present = store.rdatas(rrset.name, rrset.rdtype) if rrset.rdtype != ANY else []
    if _class(rrset) == dns.rdataclass.ANY:
        if rrset.rdtype == ANY:
            return dns.rcode.NOERROR if _in_use(store, rrset.name) else dns.rcode.NXDOMAIN
        return dns.rcode.NOERROR if present else dns.rcode.NXRRSET
    if _class(rrset) == dns.rdataclass.NONE:
        if rrset.rdtype == ANY:
            return dns.rcode.YXDOMAIN if _in_use(store, rrset.name) else dns.rcode.NOERROR
        return dns.rcode.YXRRSET if present else dns.rcode.NOERROR
    if rrset.rdtype == ANY:
        return dns.rcode.FORMERR
    same = set(present) == set(rrset)
    return dns.rcode.NOERROR if same else dns.rcode.NXRRSET


def _prescan(zone: dns.name.Name, updates: list[dns.rrset.RRset]) -> dns.rcode.Rcode:
    for rrset in updates:
        if not rrset.name.is_subdomain(zone):
            return dns.rcode.NOTZONE
        if _class(rrset) not in (dns.rdataclass.IN, dns.rdataclass.ANY, dns.rdataclass.NONE):
            return dns.rcode.FORMERR
        if _class(rrset) == dns.rdataclass.IN and (
            rrset.rdtype == ANY or dns.rdatatype.is_metatype(rrset.rdtype)
        ):
            return dns.rcode.FORMERR
        if _class(rrset) == dns.rdataclass.NONE and rrset.rdtype == ANY:
            return dns.rcode.FORMERR
        if rrset.rdtype not in (TXT, ANY):
            return dns.rcode.REFUSED
    return dns.rcode.NOERROR


def _apply(store: RecordStore, rrset: dns.rrset.RRset) -> None:
    if _class(rrset) == dns.rdataclass.ANY:
        store.clear(rrset.name, TXT)
    elif _class(rrset) == dns.rdataclass.NONE:
        for rdata in rrset:
            store.remove(rrset.name, rdata)
    else:
        for rdata in rrset:
            store.add(rrset.name, rdata)
