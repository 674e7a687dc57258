"""What the fleet's repositories share: short transactions over one engine, the
compare-and-set on a site's lease holder, and the INSERT that can say ON CONFLICT."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from enum import Enum
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from acmekit.fleet.schema import sites

_T = TypeVar("_T")


class Keep(Enum):
    """A field of a change left as it is stored."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


def changed(change: Any) -> dict[str, Any]:
    """The fields of the dataclass `change` that are not `KEEP`, by column name."""
    found = {f.name: getattr(change, f.name) for f in fields(change)}
    return {name: value for name, value in found.items() if value is not KEEP}


class Lost(Exception):
    """A compare-and-set found the row changed: roll the transaction back."""


def _holds(c: Connection, site_id: str, owner: str) -> bool:
    found = c.execute(
        sa.select(sites.c.id).where(sites.c.id == site_id, sites.c.lease_owner == owner)
    ).first()
    return found is not None


def conflict_insert(c: Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can say ON CONFLICT: both databases have it, and SQLAlchemy spells
    it per dialect."""
    if c.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


class Repository:
    """Methods are short transactions and take `now` from the caller; none reads a
    clock."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _scalar(self, query: sa.Select[_T]) -> _T | None:
        """The one value `query` selects (None for no row), in a transaction of its own."""
        with self._tx() as c:
            return c.execute(query).scalar_one_or_none()

    def _committed(
        self,
        work: Callable[[Connection], object],
        lost: tuple[type[Exception], ...] = (Lost,),
    ) -> bool:
        """`work` in a transaction: True if it committed, False if it raised one of
        `lost` (a compare-and-set that found the row changed, a row inserted first by
        another process), which rolls the whole transaction back."""
        try:
            with self._tx() as c:
                work(c)
        except lost:
            return False
        return True

    def _while_holding(
        self, site_id: str, owner: str, work: Callable[[Connection], object]
    ) -> bool:
        """`_committed(work)`, only while `owner` holds the lease of site `site_id`."""

        def guarded(c: Connection) -> None:
            if not _holds(c, site_id, owner):
                raise Lost
            work(c)

        return self._committed(guarded)

    def _insert_new(self, insert: sa.Insert) -> None:
        """Insert a row unless another process inserted its key first (theirs stays)."""
        self._committed(lambda c: c.execute(insert), lost=(sa.exc.IntegrityError,))
