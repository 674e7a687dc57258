"""The fleet-wide cap on orders in flight per CA, in the inventory: two clients, each with
its own engine and connections as two worker processes have, share one SQLite file or
one PostgreSQL database (127.0.0.1) and race for a CA's slots from two threads. They
never hold more than the cap between them, never one slot twice; a slot whose lease
expired is taken over, and its old holder can then neither refresh nor free it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from acmekit.fleet import planner
from acmekit.fleet.inventory import Inventory
from acmekit.fleet.model import CaSlot, to_us

CAP = 3
TAKES = 40  # per client
T0 = 1_700_000_000_000_000
LEASE = planner.MINUTE


@pytest.fixture
def clients(db_url: str) -> Iterator[tuple[Inventory, Inventory]]:
    first, second = Inventory.from_url(db_url), Inventory.from_url(db_url)
    yield first, second
    first.close()
    second.close()


@dataclass
class Tally:
    """The slots held right now, as the clients report them. A client adds a slot only
    after the database gave it, and drops it before giving it back, so this is never
    more than what the database holds. `full` is set once CAP slots were held at once;
    `releases` counts slots given back to the database, so that a refused client waits
    for the next one instead of polling."""

    changed: threading.Condition = field(default_factory=threading.Condition)
    held: set[int] = field(default_factory=set)
    most: int = 0
    clashes: list[int] = field(default_factory=list)
    taken: int = 0
    releases: int = 0
    full: threading.Event = field(default_factory=threading.Event)

    def add(self, slot: CaSlot) -> None:
        with self.changed:
            if slot.number in self.held:
                self.clashes.append(slot.number)
            self.held.add(slot.number)
            self.most = max(self.most, len(self.held))
            self.taken += 1
            if len(self.held) == CAP:
                self.full.set()

    def drop(self, slot: CaSlot) -> None:
        with self.changed:
            self.held.discard(slot.number)

    def released(self) -> None:
        with self.changed:
            self.releases += 1
            self.changed.notify_all()

    def wait_for_release(self, seen: int) -> None:
        """Until a slot was given back since `releases` was `seen`."""
        with self.changed:
            if not self.changed.wait_for(lambda: self.releases != seen, timeout=30):
                raise AssertionError("no CA slot was given back within 30 s")


def _race(inventory: Inventory, name: str, tally: Tally, failures: list[BaseException]) -> None:
    """Take a slot TAKES times (waiting for a release while all are held), and free it;
    the first slots are kept until CAP are held at once, so that the clients contend."""
    try:
        inventory.cas.ensure_slots("ca", CAP)
        for n in range(TAKES):
            holder = f"{name}/{n}"
            while True:
                seen, now = tally.releases, _now()
                slot = inventory.cas.take_slot("ca", CAP, holder, f"site-{n}", now, now + LEASE)
                if slot is not None:
                    break
                tally.wait_for_release(seen)
            tally.add(slot)
            if not tally.full.wait(timeout=30):
                raise AssertionError(f"{CAP} slots were never held at once")
            tally.drop(slot)
            assert inventory.cas.release_slot(slot)
            tally.released()
    except BaseException as exc:  # reported by the test
        failures.append(exc)


def _now() -> int:
    return to_us(datetime.now(UTC))


def test_two_clients_never_hold_more_than_the_cap(clients: tuple[Inventory, Inventory]) -> None:
    tally, failures = Tally(), list[BaseException]()
    threads = [
        threading.Thread(target=_race, args=(inventory, f"w{i}-{j}", tally, failures))
        for i, inventory in enumerate(clients)
        for j in range(2)  # two orders at once in each client, as a worker has
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    assert tally.taken == 4 * TAKES
    assert tally.clashes == []
    assert tally.most == CAP  # they did contend, up to the cap and never past it
    assert clients[0].cas.slots_held("ca", _now()) == {}


def test_an_expired_slot_is_taken_over(clients: tuple[Inventory, Inventory]) -> None:
    dead, alive = clients
    dead.cas.ensure_slots("ca", CAP)
    alive.cas.ensure_slots("ca", CAP)  # a second time changes nothing
    held = [dead.cas.take_slot("ca", CAP, f"dead/{n}", "s", T0, T0 + LEASE) for n in range(CAP)]
    assert [s.number for s in held if s is not None] == [0, 1, 2]
    assert alive.cas.take_slot("ca", CAP, "alive/0", "s", T0 + LEASE - 1, T0 + 2 * LEASE) is None
    # One of the dead worker's slots was refreshed before it died: it stays held.
    assert held[1] is not None and dead.cas.refresh_slot(held[1], T0 + 3 * LEASE)

    later = T0 + LEASE
    first = alive.cas.take_slot("ca", CAP, "alive/0", "s", later, later + LEASE)
    second = alive.cas.take_slot("ca", CAP, "alive/1", "s", later, later + LEASE)
    assert first is not None and second is not None
    assert (first.number, second.number) == (0, 2)
    assert alive.cas.take_slot("ca", CAP, "alive/2", "s", later, later + LEASE) is None
    assert dead.cas.slots_held("ca", later) == {0: "alive/0", 1: "dead/1", 2: "alive/1"}

    # The old holder of a slot taken over can neither keep it nor free it.
    assert held[0] is not None
    assert not dead.cas.refresh_slot(held[0], later + 5 * LEASE)
    assert not dead.cas.release_slot(held[0])
    assert alive.cas.slots_held("ca", later)[0] == "alive/0"
    assert alive.cas.release_slot(first)
    assert 0 not in alive.cas.slots_held("ca", later)


def test_a_lower_cap_uses_only_the_first_slots(clients: tuple[Inventory, Inventory]) -> None:
    one, other = clients
    one.cas.ensure_slots("ca", 4)
    taken = [other.cas.take_slot("ca", 2, f"h{n}", "s", T0, T0 + LEASE) for n in range(3)]
    assert [None if s is None else s.number for s in taken] == [0, 1, None]
    # Another CA's slots are its own.
    other.cas.ensure_slots("other", 1)
    assert other.cas.take_slot("other", 1, "h", "s", T0, T0 + LEASE) is not None
