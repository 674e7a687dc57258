"""The challenge DNS server (`acmekit dns`). Its client side, publishing TXT records with
RFC 2136, is the client library's `client.solvers.rfc2136`.

store     records, zones and the resolution rules (pure)
handler   one DNS message in, one out: queries, EDNS, TSIG, UPDATE dispatch (pure)
update    RFC 2136 prerequisite and update rules, TXT only (pure)
tsig      `--tsig-key` parsing and the unsigned error record of RFC 8945
xfr       zone transfers out of the store: AXFR (RFC 5936), IXFR from its journal (RFC 1995)
notify    NOTIFY (RFC 1996) to the secondaries on every change
shared    a store shared by several processes through one database (schema, migrations/)
registry  acme-dns style delegated registrations (pure)
state     the atomically written state file
server    asyncio UDP and TCP listeners around the handler
api       the HTTP API (challtestsrv's calls, acme-dns's /register and /update)
service   all of the above started and stopped as one
"""
