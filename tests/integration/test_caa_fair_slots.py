"""One account cannot take every CAA lookup slot from another (`validation.slots`).

Account A has many checks pending for names whose nameservers never answer: the loopback
resolver reads their questions and drops them, so each of A's lookups holds its slot
until it times out. Account B's check, of a name the resolver answers, started while A's
wait: shared first come first served, B queued behind A's waits and had a slot only as
A's lookups timed out (under load, after its own time; it failed closed). With a share
per account, A holds `LOOKUPS_PER_ACCOUNT` slots at most and B's check takes a free one
at once and passes, every one of A's checks still pending.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvloop

from acmekit.protocol.messages import ChallengeType, Identifier, IdentifierType
from acmekit.server.caa import LOOKUPS_IN_FLIGHT, LOOKUPS_PER_ACCOUNT, CaaChecker
from acmekit.server.config import load_config
from acmekit.server.policy import Policy
from acmekit.server.validation.resolve import STUB_ATTEMPT
from acmekit_testkit.databases import fresh_store
from acmekit_testkit.stubdns import scripted_resolver
from acmekit_testkit.waits import until

US = "ca.test"
ACCOUNT_A = "https://ca.test/acme/acct/1"
ACCOUNT_B = "https://ca.test/acme/acct/2"
DNS_01 = ChallengeType.DNS_01
# More checks than the process has slots: shared, A would hold them all, and wait too.
A_CHECKS = LOOKUPS_IN_FLIGHT + 2 * LOOKUPS_PER_ACCOUNT


def test_an_account_with_silent_nameservers_leaves_slots_for_another() -> None:
    async def main() -> tuple[int, int, int]:
        async with scripted_resolver() as (at, resolver):
            # One stub attempt: each of A's checks holds one slot for its whole time.
            caa = CaaChecker(at, (US,), timeout=STUB_ATTEMPT)

            def silent_questions() -> int:
                return sum("silent" in name for name in resolver.asked)

            # The climb from n<i>.silent asks n<i>.silent and silent, in one batch.
            checks_a = [
                asyncio.ensure_future(
                    caa.check(
                        f"n{i}.silent", wildcard=False, account_uri=ACCOUNT_A, method="dns-01"
                    )
                )
                for i in range(A_CHECKS)
            ]
            await until(lambda: silent_questions() >= 2 * LOOKUPS_PER_ACCOUNT)
            # No CAA records from www.b.test up: CAA permits; it raises otherwise.
            await caa.check("www.b.test", wildcard=False, account_uri=ACCOUNT_B, method="dns-01")
            done_a = sum(check.done() for check in checks_a)
            asked_a = silent_questions()
            for check in checks_a:
                check.cancel()
            await asyncio.gather(*checks_a, return_exceptions=True)
            return done_a, asked_a, len(resolver.asked) - asked_a

    done_a, asked_a, asked_b = uvloop.run(main())
    assert done_a == 0  # B did not wait for A's lookups to time out
    assert asked_a == 2 * LOOKUPS_PER_ACCOUNT  # A's share of batches, no more in flight
    assert asked_b == 3  # www.b.test, b.test, test


def test_the_configured_share_bounds_an_accounts_lookups(tmp_path: Path) -> None:
    """`[caa] lookups_per_account` reaches the CA's checker: with a share of one, A's
    three checks have one lookup in flight, and B's still passes."""

    async def main() -> int:
        async with scripted_resolver() as (at, resolver):
            path = tmp_path / "ca.toml"
            path.write_text(
                f'dns_resolver = "{at[0]}:{at[1]}"\n'
                f"[caa]\ntimeout = {STUB_ATTEMPT}\nlookups_per_account = 1\n"
            )
            with fresh_store("sqlite", tmp_path, "ca.db") as store:
                policy = Policy(load_config(path, {}), store)

                def silent_questions() -> int:
                    return sum("silent" in name for name in resolver.asked)

                checks_a = [
                    asyncio.ensure_future(
                        policy.check_caa(
                            _dns(f"n{i}.silent"), False, ACCOUNT_A, ChallengeType.DNS_01
                        )
                    )
                    for i in range(3)
                ]
                await until(lambda: silent_questions() >= 2)
                await policy.check_caa(_dns("www.b.test"), False, ACCOUNT_B, DNS_01)
                asked_a = silent_questions()
                for check in checks_a:
                    check.cancel()
                await asyncio.gather(*checks_a, return_exceptions=True)
                return asked_a

    assert uvloop.run(main()) == 2  # one batch of A's: n0.silent and silent


def _dns(name: str) -> Identifier:
    return Identifier(IdentifierType.DNS, name)
