"""http-01 answers (RFC 8555 §8.3) that every API process serves, and the fleet's
settings."""

from __future__ import annotations

import sqlalchemy as sa

from acmekit.fleet.repos.base import Repository
from acmekit.fleet.schema import challenges, settings


class ChallengeRepository(Repository):
    """Key authorizations by token."""

    def put(self, token: str, key_authorization: str, now: int) -> None:
        with self._tx() as c:
            c.execute(challenges.delete().where(challenges.c.token == token))
            c.execute(
                challenges.insert().values(
                    token=token, key_authorization=key_authorization, created=now
                )
            )

    def drop(self, token: str) -> None:
        with self._tx() as c:
            c.execute(challenges.delete().where(challenges.c.token == token))

    def key_authorization(self, token: str) -> str | None:
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
