"""The fleet inventory on SQLite and on PostgreSQL (127.0.0.1:5432)."""

from __future__ import annotations

from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import CertVersion, ChallengeMethod, DesiredState, SiteState

T0 = 1_700_000_000_000_000
MIN = 60_000_000
HTTP = ChallengeMethod.HTTP_01


def _version(site_id: str, version: int) -> CertVersion:
    return CertVersion(site_id, version, f"{version:x}", T0, T0 + 90 * 1440 * MIN,
                       "CHAIN", "KEY", T0, "ca")  # fmt: skip


def test_sites_are_added_listed_and_counted(inventory: Inventory) -> None:
    one = inventory.add_site(("a.test", "www.a.test"), HTTP, T0)
    ids = inventory.add_sites([("b.test",), ("c.test",)], ChallengeMethod.DNS_01, T0)
    assert one.names == ("a.test", "www.a.test") and one.state == SiteState.PENDING
    assert one.next_action_at == T0 and one.current_version == 0
    assert inventory.site_by_name("a.test") == one
    assert inventory.site_by_name("www.a.test") is None
    listed = inventory.sites()
    assert sorted(s.id for s in listed) == sorted([one.id, *ids])
    first = inventory.sites(limit=1)
    assert [s.id for s in inventory.sites(after=first[0].id)] == [s.id for s in listed[1:]]
    assert inventory.sites(SiteState.ACTIVE) == []
    counts = inventory.counts_by_state()
    assert counts[SiteState.PENDING] == 3 and counts[SiteState.ACTIVE] == 0


def test_leases_are_exclusive_and_expire(inventory: Inventory) -> None:
    ids = set(inventory.add_sites([(f"s{i}.test",) for i in range(5)], HTTP, T0))
    first = inventory.lease_due("w1", T0, 10 * MIN, 3)
    second = inventory.lease_due("w2", T0, 10 * MIN, 10)
    assert len(first) == 3 and len(second) == 2
    assert {s.id for s in first} | {s.id for s in second} == ids
    assert all(s.lease_owner == "w1" and s.lease_until == T0 + 10 * MIN for s in first)
    assert inventory.lease_due("w3", T0 + 10 * MIN - 1, 10 * MIN, 10) == []
    # w1 dies: its sites come due again when the lease expires, and w3 takes them.
    taken = inventory.lease_due("w3", T0 + 10 * MIN, 10 * MIN, 10)
    assert len(taken) == 5
    assert not inventory.update_leased(first[0].id, "w1", state=SiteState.ISSUING)
    assert inventory.update_leased(first[0].id, "w3", state=SiteState.ISSUING)


def test_not_yet_due_sites_are_not_leased(inventory: Inventory) -> None:
    site = inventory.add_site(("later.test",), HTTP, T0 + MIN)
    assert inventory.lease_due("w", T0, MIN, 10) == []
    assert [s.id for s in inventory.lease_due("w", T0 + MIN, MIN, 10)] == [site.id]


def test_store_version_is_a_compare_and_set(inventory: Inventory) -> None:
    site = inventory.add_site(("cas.test",), HTTP, T0)
    inventory.lease_due("w1", T0, MIN, 1)
    assert not inventory.store_version("w2", _version(site.id, 1), T0)  # not the holder
    assert inventory.store_version("w1", _version(site.id, 1), T0 + 5)
    assert not inventory.store_version("w1", _version(site.id, 1), T0)  # already version 1
    assert not inventory.store_version("w1", _version(site.id, 3), T0)  # skips a version
    after = inventory.site(site.id)
    assert after is not None
    assert after.current_version == 1 and after.state == SiteState.ACTIVE
    assert after.renew_at == T0 + 5
    current = inventory.current(after)
    assert current is not None and current.serial == "1"
    assert [v.version for v in inventory.versions(site.id)] == [1]


def test_order_key_and_url_are_kept_until_a_version_is_stored(inventory: Inventory) -> None:
    site = inventory.add_site(("key.test",), HTTP, T0)
    inventory.lease_due("w1", T0, MIN, 1)
    assert inventory.update_leased(site.id, "w1", order_key_pem="PEM", order_url="https://o/1")
    assert inventory.order_key(site.id) == "PEM"
    assert inventory.store_version("w1", _version(site.id, 1), T0)
    assert inventory.order_key(site.id) is None
    stored = inventory.site(site.id)
    assert stored is not None and stored.order_url is None


def test_release_plans_and_removal_overrides(inventory: Inventory) -> None:
    site = inventory.add_site(("rel.test",), HTTP, T0)
    inventory.lease_due("w1", T0, MIN, 1)
    assert inventory.release(site.id, "w1", T0 + 99 * MIN, T0)
    released = inventory.site(site.id)
    assert released is not None
    assert released.lease_owner is None and released.next_action_at == T0 + 99 * MIN
    assert inventory.force_renewal(site.id, T0 + 1)
    inventory.lease_due("w1", T0 + 1, MIN, 1)
    assert inventory.remove_site(site.id, T0 + 2)  # removed while leased
    assert inventory.release(site.id, "w1", T0 + 99 * MIN, T0 + 3)
    removed = inventory.site(site.id)
    assert removed is not None
    assert removed.desired == DesiredState.REMOVED and removed.next_action_at == T0 + 3
    assert not inventory.force_renewal(site.id, T0 + 4)


def test_deployments_record_success_and_failures(inventory: Inventory) -> None:
    site = inventory.add_site(("dep.test",), HTTP, T0)
    inventory.record_deployment(site.id, "edge-a", 1, T0, None)
    inventory.record_deployment(site.id, "edge-b", 1, T0, "unreachable")
    inventory.record_deployment(site.id, "edge-b", 1, T0 + 1, "unreachable")
    deps = inventory.deployments(site.id)
    assert deps["edge-a"].version == 1 and deps["edge-a"].failure_count == 0
    assert deps["edge-b"].version == 0 and deps["edge-b"].failure_count == 2
    inventory.record_deployment(site.id, "edge-b", 1, T0 + 2, None)
    fixed = inventory.deployments(site.id)["edge-b"]
    assert fixed.version == 1 and fixed.failure_count == 0 and fixed.last_error is None


def test_challenges_and_settings(inventory: Inventory) -> None:
    inventory.put_challenge("tok", "tok.thumb", T0)
    inventory.put_challenge("tok", "tok.thumb2", T0)
    assert inventory.challenge("tok") == "tok.thumb2"
    inventory.drop_challenge("tok")
    assert inventory.challenge("tok") is None
    assert inventory.setting_or_store("k", "first") == "first"
    assert inventory.setting_or_store("k", "second") == "first"
    inventory.set_setting("k", "third")
    assert inventory.setting("k") == "third"


def test_a_wildcard_site_is_recorded_as_dns01(inventory: Inventory) -> None:
    site = inventory.add_site(["*.wild.inv.test", "wild.inv.test"], ChallengeMethod.HTTP_01, 1)
    assert site.method == ChallengeMethod.DNS_01
    (bulk_id,) = inventory.add_sites([["*.bulk.inv.test"]], ChallengeMethod.HTTP_01, 1)
    assert inventory.site(bulk_id).method == ChallengeMethod.DNS_01  # type: ignore[union-attr]
    plain = inventory.add_site(["plain.inv.test"], ChallengeMethod.HTTP_01, 1)
    assert plain.method == ChallengeMethod.HTTP_01
