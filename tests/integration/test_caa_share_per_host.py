"""An account's share of the CAA lookup slots is its own, whatever Host it wrote to.

Without a configured base URL the account URL a validation carries is built from the
request's Host header, which the listener matches without regard to case (RFC 9110
§4.2.3: the host is case-insensitive), so one account reaches the CA under many URLs
(ca.test, CA.test, cA.test, ...). Keyed by that text, each spelling had a share of its
own, and one account whose names lead to silent nameservers took every slot from the
others after all. Keyed by the account's path, the spellings share one."""

from __future__ import annotations

import asyncio

import uvloop

from acmekit.server.caa import CaaChecker
from acmekit.server.validation.resolve import STUB_ATTEMPT
from acmekit_testkit.stubdns import scripted_resolver
from acmekit_testkit.waits import until

SPELLINGS = ("ca.test", "CA.test", "Ca.test", "cA.test")
ACCOUNT_B = "https://ca.test/acme/acct/2"


def test_one_account_under_hosts_spelled_differently_has_one_share() -> None:
    async def main() -> tuple[int, int]:
        async with scripted_resolver() as (at, resolver):
            caa = CaaChecker(
                at, ("ca.test",), timeout=STUB_ATTEMPT, in_flight=len(SPELLINGS), per_account=1
            )

            def silent_questions() -> int:
                return sum("silent" in name for name in resolver.asked)

            # The climb from n<i>.silent asks n<i>.silent and silent, in one batch.
            checks_a = [
                asyncio.ensure_future(
                    caa.check(
                        f"n{i}.silent",
                        wildcard=False,
                        account_uri=f"https://{host}/acme/acct/1",
                        method="dns-01",
                    )
                )
                for i, host in enumerate(SPELLINGS)
            ]
            await until(lambda: silent_questions() >= 2)
            # B's check takes a free slot and passes (no CAA records: CAA permits).
            await caa.check("www.b.test", wildcard=False, account_uri=ACCOUNT_B, method="dns-01")
            asked_a = silent_questions()
            done_a = sum(check.done() for check in checks_a)
            for check in checks_a:
                check.cancel()
            await asyncio.gather(*checks_a, return_exceptions=True)
            return asked_a, done_a

    asked_a, done_a = uvloop.run(main())
    assert done_a == 0
    assert asked_a == 2  # one batch of the account's in flight, under any spelling
