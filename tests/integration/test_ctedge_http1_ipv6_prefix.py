"""The HTTP/1.1 server of the CA's listeners and the CT log (`acmekit.http1`) counts an
IPv6 client by its /64 (RFC 6177), as the guarded listeners do (`hostport.client_of`).

Counted by its full address, one subscriber's /64 had 2^64 shares of
`max_connections_per_address`: it could hold unfinished TLS handshakes or slow request
heads beyond any bound.

Real sockets in a network namespace of its own, whose loopback holds a /48 (AnyIP), so
that connections come from many source addresses (IPV6_FREEBIND).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from acmekit_testkit.anyip import run_anyip_driver

DRIVER = textwrap.dedent(
    """
    import asyncio, json, socket
    from acmekit_testkit.anyip import connect_from
    from acmekit.http1 import Http1Server, ListenerLimits

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def fate(s):
        try:
            data = s.recv(65536)
        except BlockingIOError:
            return "served"  # open, nothing said: waiting for its request
        except OSError:
            return "dropped"  # reset
        if data.startswith(b"HTTP/1.1 503"):
            return "refused"
        return "dropped" if data == b"" else "other"

    async def held(server, port):
        one = [await connect_from(f"2001:db8:1::{0x100 + i:x}", port) for i in range(12)]
        other = [await connect_from(f"2001:db8:1:1::{0x100 + i:x}", port) for i in range(4)]
        await asyncio.sleep(1.5)  # past LINGER: a refused connection has its answer
        found = {}
        for name, socks in (("one", one), ("other", other)):
            fates = [fate(s) for s in socks]
            found[name] = {f: fates.count(f) for f in sorted(set(fates))}
        found["counted"] = sorted(server.per_address)
        for s in one + other:
            s.close()
        return found

    async def main():
        limits = ListenerLimits(max_connections_per_address=4)
        server = Http1Server(app, limits)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.bind(("2001:db8:1::1", 0))
        sock.listen(64)
        await server.start(sock)
        found = await held(server, sock.getsockname()[1])
        await server.shutdown(1.0)
        print(json.dumps(found))

    asyncio.run(main())
    """
)


def test_one_ipv6_64_holds_one_share_of_the_listener(tmp_path: Path) -> None:
    found = run_anyip_driver(DRIVER, tmp_path)
    # Twelve addresses of one /64: its four places served, four more answered 503, the
    # rest (twice the cap and beyond) closed at once. Another /64 has its own four.
    assert found["one"] == {"served": 4, "refused": 4, "dropped": 4}, found
    assert found["other"] == {"served": 4}, found
    assert found["counted"] == ["2001:db8:1:1::/64", "2001:db8:1::/64"], found
