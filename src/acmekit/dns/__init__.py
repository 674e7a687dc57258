"""The challenge DNS server (`acmekit dns`) and the RFC 2136 updater that solvers use.

store     records, zones and the resolution rules (pure)
handler   one DNS message in, one out: queries, EDNS, TSIG, UPDATE dispatch (pure)
update    RFC 2136 prerequisite and update rules, TXT only (pure)
tsig      TSIG key parsing and the unsigned error record of RFC 8945
registry  acme-dns style delegated registrations (pure)
state     the atomically written state file
server    asyncio UDP and TCP listeners around the handler
api       the HTTP API (challtestsrv's calls, acme-dns's /register and /update)
service   all of the above started and stopped as one
rfc2136   the client side: publish TXT records on any RFC 2136 server
"""
