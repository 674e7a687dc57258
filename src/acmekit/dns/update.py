"""RFC 2136 dynamic UPDATE against the record store, restricted to TXT (no I/O).

The caller has already checked the TSIG signature (RFC 8945) and that the key may
update; this module applies the rules of RFC 2136 §3 in order and returns the RCODE:

1. zone section (§3.1): one SOA-typed RR naming a zone we are authoritative for, else
   NOTAUTH. dnspython's parser already rejects a malformed zone section with FORMERR.
2. prerequisites (§3.2, table in §3.2.5): YXDOMAIN / NXDOMAIN / YXRRSET / NXRRSET, and
   NOTZONE for a name outside the zone (or in a deeper zone of ours). They are checked
   against the zone's data as a query sees it at that very name: the synthesized SOA
   and NS at the apex and the NS host's address count (§2.4.1, §2.4.4), wildcards and
   default addresses do not.
3. prescan (§3.4.1): every update RR is in the zone, not a deeper one (NOTZONE), and of
   a legal class and type (FORMERR); our policy then allows only TXT (REFUSED
   otherwise), like BIND's `grant KEY zonesub TXT`, and only where the API may publish
   (not at the root or a top-level domain when no `--zone` is given: REFUSED). A delete
   of all RRsets at a name (class ANY, type ANY) deletes only the TXT there, as that
   policy would.
4. apply (§3.4.2): the updates are worked out in order on a copy of the names they
   touch, then committed as one change under one new serial (one transaction with a
   shared database), so an UPDATE takes effect whole or not at all (§3.6). With a
   shared database the zone's lock is taken first and steps 2 to 4 run under it, in
   that transaction, so no other process's UPDATE comes between a prerequisite and the
   change it guards (§3.7). A name whose
   records would no longer fit in one DNS message is REFUSED, and nothing is applied.
"""

from __future__ import annotations

import logging

import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update

from acmekit.dns.store import Change, RecordStore
from acmekit.protocol.problems import AcmeError

log = logging.getLogger(__name__)

TXT = dns.rdatatype.TXT
ANY = dns.rdatatype.ANY


def apply_update(store: RecordStore, message: dns.update.UpdateMessage) -> dns.rcode.Rcode:
    """Check and apply one UPDATE message; the RCODE to answer with."""
    zone = message.zone[0].name
    if message.zone[0].rdclass != dns.rdataclass.IN or not store.is_apex(zone):
        return dns.rcode.NOTAUTH
    try:
        return store.transact(lambda: _decide(store, zone, message))
    except AcmeError as exc:  # the shared database is out of reach: nothing was applied
        log.warning("update not applied to zone %s: %s", zone, exc.problem.detail)
        return dns.rcode.SERVFAIL


def _decide(
    store: RecordStore, zone: dns.name.Name, message: dns.update.UpdateMessage
) -> tuple[dns.rcode.Rcode, list[Change]]:
    """The RCODE and the changes to make, decided on the store as it is now (under the
    zone's lock with a shared store: RFC 2136 §3.7)."""
    rcode = _check_prerequisites(store, zone, message.prerequisite)
    if rcode == dns.rcode.NOERROR:
        rcode = _prescan(store, zone, message.update)
    if rcode != dns.rcode.NOERROR:
        return rcode, []
    final = _worked_out(store, message.update)
    try:
        for name, rdatas in final.items():
            store.check_room(name, TXT, rdatas)
    except AcmeError as exc:
        log.info("update refused in zone %s: %s", zone, exc.problem.detail)
        return dns.rcode.REFUSED, []
    log.info("update applied to zone %s: %d rrsets", zone, len(message.update))
    return dns.rcode.NOERROR, _changes(store, final)


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
        if store.zone_of(rrset.name) != zone:
            return dns.rcode.NOTZONE
        rcode = _check_one(store, rrset)
        if rcode != dns.rcode.NOERROR:
            return rcode
    return dns.rcode.NOERROR


def _check_one(store: RecordStore, rrset: dns.rrset.RRset) -> dns.rcode.Rcode:
    present = store.records_at(rrset.name, rrset.rdtype) if rrset.rdtype != ANY else []
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


def _prescan(
    store: RecordStore, zone: dns.name.Name, updates: list[dns.rrset.RRset]
) -> dns.rcode.Rcode:
    for rrset in updates:
        if store.zone_of(rrset.name) != zone:
            return dns.rcode.NOTZONE
        if _class(rrset) not in (dns.rdataclass.IN, dns.rdataclass.ANY, dns.rdataclass.NONE):
            return dns.rcode.FORMERR
        if _class(rrset) == dns.rdataclass.IN and (
            rrset.rdtype == ANY or dns.rdatatype.is_metatype(rrset.rdtype)
        ):
            return dns.rcode.FORMERR
        if _class(rrset) == dns.rdataclass.NONE and rrset.rdtype == ANY:
            return dns.rcode.FORMERR
        if rrset.rdtype not in (TXT, ANY) or not _may_publish(store, rrset.name):
            return dns.rcode.REFUSED
    return dns.rcode.NOERROR


def _may_publish(store: RecordStore, name: dns.name.Name) -> bool:
    """The API's rule of where records may be (docs/security.md), for UPDATE too."""
    try:
        store.served(name)
    except AcmeError:
        return False
    return True


def _worked_out(
    store: RecordStore, updates: list[dns.rrset.RRset]
) -> dict[dns.name.Name, list[dns.rdata.Rdata]]:
    """The TXT records at each name the updates touch once all of them are applied, in
    order (§3.4.2)."""
    final: dict[dns.name.Name, list[dns.rdata.Rdata]] = {}
    for rrset in updates:
        current = final.setdefault(rrset.name, store.rdatas(rrset.name, TXT))
        if _class(rrset) == dns.rdataclass.ANY:
            current.clear()
        elif _class(rrset) == dns.rdataclass.NONE:
            for rdata in rrset:
                if rdata in current:
                    current.remove(rdata)
        else:
            current.extend(rdata for rdata in rrset if rdata not in current)
    return final


def _changes(store: RecordStore, final: dict[dns.name.Name, list[dns.rdata.Rdata]]) -> list[Change]:
    """What turns the stored TXT records into `final`: deletions, then additions."""
    gone, new = [], []
    for name, after in final.items():
        before = store.rdatas(name, TXT)
        gone += [Change(False, name, rdata) for rdata in before if rdata not in after]
        new += [Change(True, name, rdata) for rdata in after if rdata not in before]
    return gone + new
