"""The fleet inventory on SQLite and on PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import CertVersion, ChallengeMethod, DesiredState, SiteState
from acmekit.fleet.repos.sites import SiteChange

T0 = 1_700_000_000_000_000
MIN = 60_000_000
HTTP = ChallengeMethod.HTTP_01


def _version(site_id: str, version: int) -> CertVersion:
    return CertVersion(site_id, version, f"{version:x}", T0, T0 + 90 * 1440 * MIN,
                       "CHAIN", "KEY", T0, "ca")  # fmt: skip


def test_sites_are_added_listed_and_counted(inventory: Inventory) -> None:
    one = inventory.sites.add_site(("a.test", "www.a.test"), HTTP, T0)
    ids = inventory.sites.add_sites([("b.test",), ("c.test",)], ChallengeMethod.DNS_01, T0)
    assert one.names == ("a.test", "www.a.test") and one.state == SiteState.PENDING
    assert one.next_action_at == T0 and one.current_version == 0
    assert inventory.sites.site_by_name("a.test") == one
    assert inventory.sites.site_by_name("www.a.test") is None
    listed = inventory.sites.page()
    assert sorted(s.id for s in listed) == sorted([one.id, *ids])
    first = inventory.sites.page(limit=1)
    assert [s.id for s in inventory.sites.page(after=first[0].id)] == [s.id for s in listed[1:]]
    assert inventory.sites.page(SiteState.ACTIVE) == []
    counts = inventory.sites.counts_by_state()
    assert counts[SiteState.PENDING] == 3 and counts[SiteState.ACTIVE] == 0


def test_leases_are_exclusive_and_expire(inventory: Inventory) -> None:
    ids = set(inventory.sites.add_sites([(f"s{i}.test",) for i in range(5)], HTTP, T0))
    first = inventory.sites.lease_due("w1", T0, 10 * MIN, 3)
    second = inventory.sites.lease_due("w2", T0, 10 * MIN, 10)
    assert len(first) == 3 and len(second) == 2
    assert {s.id for s in first} | {s.id for s in second} == ids
    assert all(s.lease_owner == "w1" and s.lease_until == T0 + 10 * MIN for s in first)
    assert inventory.sites.lease_due("w3", T0 + 10 * MIN - 1, 10 * MIN, 10) == []
    # w1 dies: its sites come due again when the lease expires, and w3 takes them.
    taken = inventory.sites.lease_due("w3", T0 + 10 * MIN, 10 * MIN, 10)
    assert len(taken) == 5
    assert not inventory.sites.update_leased(first[0].id, "w1", SiteChange(state=SiteState.ISSUING))
    assert inventory.sites.update_leased(first[0].id, "w3", SiteChange(state=SiteState.ISSUING))


def test_not_yet_due_sites_are_not_leased(inventory: Inventory) -> None:
    site = inventory.sites.add_site(("later.test",), HTTP, T0 + MIN)
    assert inventory.sites.lease_due("w", T0, MIN, 10) == []
    assert [s.id for s in inventory.sites.lease_due("w", T0 + MIN, MIN, 10)] == [site.id]


def test_store_version_is_a_compare_and_set(inventory: Inventory) -> None:
    site = inventory.sites.add_site(("cas.test",), HTTP, T0)
    inventory.sites.lease_due("w1", T0, MIN, 1)
    assert not inventory.sites.store_version("w2", _version(site.id, 1), T0)  # not the holder
    assert inventory.sites.store_version("w1", _version(site.id, 1), T0 + 5)
    assert not inventory.sites.store_version("w1", _version(site.id, 1), T0)  # already version 1
    assert not inventory.sites.store_version("w1", _version(site.id, 3), T0)  # skips a version
    after = inventory.sites.site(site.id)
    assert after is not None
    # stored, not yet on the edges: active only once the worker has deployed it
    assert after.current_version == 1 and after.state == SiteState.ISSUING
    assert after.renew_at == T0 + 5
    current = inventory.sites.current(after)
    assert current is not None and current.serial == "1"
    assert [v.version for v in inventory.sites.versions(site.id)] == [1]


def test_order_key_and_url_are_kept_until_a_version_is_stored(inventory: Inventory) -> None:
    site = inventory.sites.add_site(("key.test",), HTTP, T0)
    inventory.sites.lease_due("w1", T0, MIN, 1)
    assert inventory.sites.update_leased(
        site.id, "w1", SiteChange(order_key_pem="PEM", order_url="https://o/1")
    )
    assert inventory.sites.order_key(site.id) == "PEM"
    assert inventory.sites.store_version("w1", _version(site.id, 1), T0)
    assert inventory.sites.order_key(site.id) is None
    stored = inventory.sites.site(site.id)
    assert stored is not None and stored.order_url is None


def test_release_plans_and_removal_overrides(inventory: Inventory) -> None:
    site = inventory.sites.add_site(("rel.test",), HTTP, T0)
    inventory.sites.lease_due("w1", T0, MIN, 1)
    assert inventory.sites.release(site.id, "w1", T0 + 99 * MIN, T0)
    released = inventory.sites.site(site.id)
    assert released is not None
    assert released.lease_owner is None and released.next_action_at == T0 + 99 * MIN
    assert inventory.sites.force_renewal(site.id, T0 + 1)
    inventory.sites.lease_due("w1", T0 + 1, MIN, 1)
    assert inventory.sites.remove_site(site.id, T0 + 2)  # removed while leased
    assert inventory.sites.release(site.id, "w1", T0 + 99 * MIN, T0 + 3)
    removed = inventory.sites.site(site.id)
    assert removed is not None
    assert removed.desired == DesiredState.REMOVED and removed.next_action_at == T0 + 3
    assert not inventory.sites.force_renewal(site.id, T0 + 4)


def test_deployments_record_success_and_failures(inventory: Inventory) -> None:
    site = inventory.sites.add_site(("dep.test",), HTTP, T0)
    inventory.sites.record_deployment(site.id, "edge-a", 1, T0, None)
    inventory.sites.record_deployment(site.id, "edge-b", 1, T0, "unreachable")
    inventory.sites.record_deployment(site.id, "edge-b", 1, T0 + 1, "unreachable")
    deps = inventory.sites.deployments(site.id)
    assert deps["edge-a"].version == 1 and deps["edge-a"].failure_count == 0
    assert deps["edge-b"].version == 0 and deps["edge-b"].failure_count == 2
    inventory.sites.record_deployment(site.id, "edge-b", 1, T0 + 2, None)
    fixed = inventory.sites.deployments(site.id)["edge-b"]
    assert fixed.version == 1 and fixed.failure_count == 0 and fixed.last_error is None


def test_challenges_and_settings(inventory: Inventory) -> None:
    inventory.challenges.put("tok", "tok.thumb", T0)
    inventory.challenges.put("tok", "tok.thumb2", T0)
    assert inventory.challenges.key_authorization("tok") == "tok.thumb2"
    inventory.challenges.drop("tok")
    assert inventory.challenges.key_authorization("tok") is None
    assert inventory.settings.value_or_store("k", "first") == "first"
    assert inventory.settings.value_or_store("k", "second") == "first"
    inventory.settings.store("k", "third")
    assert inventory.settings.value("k") == "third"


def test_a_wildcard_site_is_recorded_as_dns01(inventory: Inventory) -> None:
    site = inventory.sites.add_site(
        ["*.wild.inv.test", "wild.inv.test"], ChallengeMethod.HTTP_01, 1
    )
    assert site.method == ChallengeMethod.DNS_01
    (bulk_id,) = inventory.sites.add_sites([["*.bulk.inv.test"]], ChallengeMethod.HTTP_01, 1)
    assert inventory.sites.site(bulk_id).method == ChallengeMethod.DNS_01  # type: ignore[union-attr]
    plain = inventory.sites.add_site(["plain.inv.test"], ChallengeMethod.HTTP_01, 1)
    assert plain.method == ChallengeMethod.HTTP_01


def test_a_site_change_sets_only_its_fields_and_the_lease_ends_two_ways(
    inventory: Inventory,
) -> None:
    site = inventory.sites.add_site(("steps.test",), HTTP, T0)
    inventory.sites.lease_due("w1", T0, MIN, 1)
    problem = {"type": "urn:ietf:params:acme:error:rateLimited", "detail": "later"}
    change = SiteChange(order_url="https://o/1", order_key_pem="PEM")
    assert inventory.sites.update_leased(site.id, "w1", change)
    assert inventory.sites.update_leased(
        site.id, "w1", SiteChange(order_url=None, last_problem=problem)
    )
    stored = inventory.sites.site(site.id)
    assert stored is not None and stored.order_url is None and stored.order_key_pem == "PEM"
    assert stored.last_problem == problem and stored.lease_owner == "w1"
    assert not inventory.sites.defer(site.id, "w2", T0 + MIN, 1)
    assert inventory.sites.defer(site.id, "w1", T0 + MIN, 3)
    deferred = inventory.sites.site(site.id)
    assert deferred is not None and deferred.lease_owner is None and deferred.failure_count == 3
    assert deferred.next_action_at == T0 + MIN and deferred.order_key_pem == "PEM"
    inventory.sites.lease_due("w2", T0 + MIN, MIN, 1)
    assert inventory.sites.mark_removed(site.id, "w2")
    gone = inventory.sites.site(site.id)
    assert gone is not None and gone.state == SiteState.REMOVED and gone.next_action_at is None
    assert gone.lease_owner is None and gone.order_key_pem is None
