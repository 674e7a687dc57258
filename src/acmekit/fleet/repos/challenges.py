"""http-01 answers (RFC 8555 §8.3) that every API process serves, and the fleet's
settings."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from acmekit.fleet.repos.base import Repository, conflict_insert
from acmekit.fleet.schema import challenges, settings

_DROP = challenges.delete().where(challenges.c.token == sa.bindparam("p_token"))
_PUTS: dict[str, sa.Insert] = {}


def _put(c: Connection) -> sa.Insert:
    """The upsert of a key authorization, with bound parameters, built once per dialect
    (building a statement costs more CPU than sending it)."""
    found = _PUTS.get(c.dialect.name)
    if found is None:
        insert = conflict_insert(c, challenges).values(
            token=sa.bindparam("p_token"),
            key_authorization=sa.bindparam("p_ka"),
            created=sa.bindparam("p_now"),
        )
        found = insert.on_conflict_do_update(
            index_elements=[challenges.c.token],
            set_={"key_authorization": insert.excluded.key_authorization,
                  "created": insert.excluded.created},
        )  # fmt: skip
        _PUTS[c.dialect.name] = found
    return found


class ChallengeRepository(Repository):
    """Key authorizations by token. What this process put is also kept in memory until
    it drops it, so that the CA's request for it, which usually reaches the process
    whose worker asked for the validation, costs no query; any other process reads
    the database."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._mine: dict[str, str] = {}

    def put(self, token: str, key_authorization: str, now: int) -> None:
        params = {"p_token": token, "p_ka": key_authorization, "p_now": now}
        with self._tx() as c:
            c.execute(_put(c), params)
        self._mine[token] = key_authorization

    def drop(self, token: str) -> None:
        self._mine.pop(token, None)
        with self._tx() as c:
            c.execute(_DROP, {"p_token": token})

    def key_authorization(self, token: str) -> str | None:
        found = self._mine.get(token)
        if found is not None:
            return found
        return self._scalar(
            sa.select(challenges.c.key_authorization).where(challenges.c.token == token)
        )


class SettingRepository(Repository):
    """Values by name, each stored once by whichever process comes first."""

    def value(self, name: str) -> str | None:
        return self._scalar(sa.select(settings.c.value).where(settings.c.name == name))

    def value_or_store(self, name: str, default: str) -> str:
        """The stored value of `name`, storing `default` first if there is none."""
        found = self.value(name)
        if found is not None:
            return found
        self._insert_new(settings.insert().values(name=name, value=default))
        stored = self.value(name)
        assert stored is not None
        return stored

    def store(self, name: str, value: str) -> None:
        with self._tx() as c:
            c.execute(settings.delete().where(settings.c.name == name))
            c.execute(settings.insert().values(name=name, value=value))
