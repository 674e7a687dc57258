"""Two names whose dns-01 delegation targets are one (`my-shop.example.com` and
`my.shop-example.com`: dots are written as dashes) never belong to two sites: the
newcomer is refused, on both databases, so one customer cannot make another's dns-01
fail, and no existing customer's target changes."""

from __future__ import annotations

import pytest

from acmekit.fleet.delegation import delegation_target, delegation_twins
from acmekit.fleet.inventory import Inventory, NameTaken
from acmekit.fleet.model import ChallengeMethod

ZONE = "acme.cdn.test."


def test_a_twin_of_a_held_name_is_refused_for_dns01(inventory: Inventory) -> None:
    first = inventory.sites.add_site(["my-shop.example.com"], ChallengeMethod.DNS_01, 0)
    assert delegation_target("my.shop-example.com", ZONE) == delegation_target(
        "my-shop.example.com", ZONE
    )
    with pytest.raises(NameTaken) as taken:
        inventory.sites.add_site(["my.shop-example.com"], ChallengeMethod.DNS_01, 0)
    assert (taken.value.name, taken.value.site_id) == ("my-shop.example.com", first.id)
    # a wildcard is validated through the same target as its base name
    with pytest.raises(NameTaken):
        inventory.sites.add_site(["*.my-shop-example.com"], ChallengeMethod.DNS_01, 0)


def test_twins_within_one_bulk_add(inventory: Inventory) -> None:
    added = inventory.sites.add_sites(
        [("a-b.example.com",), ("a.b-example.com",), ("c.example.com",)],
        ChallengeMethod.DNS_01,
        0,
    )
    assert len(added.ids) == 2
    assert [(c.line, c.name) for c in added.conflicts] == [(1, "a-b.example.com")]


def test_what_is_not_delegated_is_not_refused(inventory: Inventory) -> None:
    inventory.sites.add_site(["my-shop.example.com"], ChallengeMethod.DNS_01, 0)
    # the apex and the wildcard of one name share their record as well as the target:
    # one customer's, as before
    inventory.sites.add_site(["*.my-shop.example.com"], ChallengeMethod.DNS_01, 0)
    # http-01 has no CNAME to share
    inventory.sites.add_site(["my.shop-example.com"], ChallengeMethod.HTTP_01, 0)
    # a name too long for one label has a digest of itself in its target
    long = "a-" * 30 + "b.example.com"
    twin = "a." * 30 + "b.example.com"
    inventory.sites.add_site([long], ChallengeMethod.DNS_01, 0)
    assert delegation_target(long, ZONE) != delegation_target(twin, ZONE)
    inventory.sites.add_site([twin], ChallengeMethod.DNS_01, 0)


def test_a_name_with_many_dashes_is_looked_for_by_a_scan(inventory: Inventory) -> None:
    many = "a-b-c-d-e-f-g-h-i-j-k-l.example.com"
    assert delegation_twins(many) is None  # too many to list
    held = inventory.sites.add_site(
        ["a-b-c-d-e-f.g-h-i-j-k-l-example.com"], ChallengeMethod.DNS_01, 0
    )
    with pytest.raises(NameTaken) as taken:
        inventory.sites.add_site([many], ChallengeMethod.DNS_01, 0)
    assert taken.value.site_id == held.id


def test_existing_targets_do_not_change() -> None:
    assert delegation_target("shop.example.com", ZONE) == "shop-example-com.acme.cdn.test."
    assert delegation_target("*.My-Shop.Example.com", ZONE) == "my-shop-example-com.acme.cdn.test."
    twins = delegation_twins("a-b.example.com")
    assert twins is not None
    assert set(twins[::2]) == {
        "a.b.example.com",
        "a.b.example-com",
        "a.b-example.com",
        "a.b-example-com",
        "a-b.example-com",
        "a-b-example.com",
    }  # "a-b-example-com" is one label, no name the fleet takes
    assert twins[1::2] == [f"*.{t}" for t in twins[::2]]
