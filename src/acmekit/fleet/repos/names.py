"""Which site holds which name.

A name belongs to at most one site that is not removed: `fleet_names` (name lower-cased
as its primary key, site id) gains a site's names in the transaction that adds the site
and loses them in the one that removes it, so of two processes adding the same name at
once the database lets one win. An add looks first (to name the holder in `NameTaken`),
then inserts; one that loses a race between the two looks again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from acmekit.fleet.delegation import delegation_label, delegation_twins
from acmekit.fleet.model import name_key
from acmekit.fleet.repos.base import Repository
from acmekit.fleet.schema import site_names

_IN_CHUNK = 500  # names per IN (...) when looking up holders: SQLite caps parameters


class NameTaken(Exception):
    """`name` already belongs to site `site_id`, which is not removed."""

    def __init__(self, name: str, site_id: str) -> None:
        super().__init__(f"{name} already belongs to site {site_id}")
        self.name = name
        self.site_id = site_id


def keys(names: Iterable[str]) -> list[str]:
    """A site's names as `fleet_names` keys, each once, in order."""
    return list(dict.fromkeys(name_key(n) for n in names))


def holders(c: Connection, keys: Collection[str]) -> dict[str, str]:
    """Name key -> the site holding it, for those of `keys` that are taken."""
    wanted, found = list(keys), dict[str, str]()
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        query = sa.select(site_names.c.name, site_names.c.site_id).where(
            site_names.c.name.in_(chunk)
        )
        found.update({str(n): str(s) for n, s in c.execute(query)})
    return found


def twin_holders(c: Connection, keys: Collection[str]) -> dict[str, str]:
    """Name key -> the site holding it, for the taken names that share a dns-01
    delegation target with one of `keys` (`delegation_twins`) and are none of them."""
    listed: list[str] = []
    found: dict[str, str] = {}
    for key in keys:
        twins = delegation_twins(key)
        if twins is None:
            found.update(_twins_scanned(c, key))
        else:
            listed.extend(twins)
    found.update(holders(c, listed))
    return {k: v for k, v in found.items() if k not in keys}


def _twins_scanned(c: Connection, key: str) -> dict[str, str]:
    """`twin_holders` of a name with too many dots and dashes to list its twins: a scan
    of every name (rare: more than ten in one label's length)."""
    base = key.removeprefix("*.")
    label = delegation_label(base)
    if label is None:
        return {}
    written = sa.func.replace(site_names.c.name, ".", "-")
    query = sa.select(site_names.c.name, site_names.c.site_id).where(
        written.in_([label, f"*-{label}"]),
        site_names.c.name.not_in([base, f"*.{base}"]),
    )
    return {str(n): str(s) for n, s in c.execute(query)}


def claim(c: Connection, rows: Sequence[dict[str, str]]) -> None:
    """Give each row's `name` (a key) to its `site_id`; IntegrityError if one is held."""
    c.execute(site_names.insert(), rows)


def free(c: Connection, site_id: str) -> None:
    """The names of `site_id` are free for another site."""
    c.execute(site_names.delete().where(site_names.c.site_id == site_id))


class NameRepository(Repository):
    """The names of the sites that are not removed."""

    def holder(self, name: str) -> str | None:
        """The id of the site, not removed, that has `name` (case does not matter)."""
        with self._tx() as c:
            return holders(c, [name_key(name)]).get(name_key(name))
