"""Certificate profiles (draft-ietf-acme-profiles): which one an order gets, what it allows.

The directory's `meta.profiles` maps each name to a description; a newOrder may name
one in `profile` (an unknown name is `invalidProfile`, §4 of the draft), else the
configured default applies. A profile fixes the certificate's lifetime, the order's and
the authorizations' lifetimes, and whether IP address identifiers (RFC 8738) are allowed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from acmekit.protocol.messages import Identifier, IdentifierType
from acmekit.protocol.problems import ProblemType, malformed, problem
from acmekit.server.config import Profile


def select_profile(
    requested: object, profiles: Mapping[str, Profile], default: str
) -> tuple[str, Profile]:
    """The (name, profile) for a newOrder's `profile` field (None: the default)."""
    if requested is None:
        return default, profiles[default]
    if not isinstance(requested, str):
        raise malformed("profile must be a string")
    if requested not in profiles:
        offered = ", ".join(sorted(profiles))
        raise problem(
            ProblemType.INVALID_PROFILE, f"no profile {requested!r}; this CA offers {offered}"
        )
    return requested, profiles[requested]


def check_identifiers(
    name: str, profiles: Mapping[str, Profile], identifiers: Sequence[Identifier]
) -> None:
    """rejectedIdentifier for what the profile `name` does not issue for, naming the
    profiles that do, so a user learns the way out from the refusal itself."""
    if profiles[name].ip_identifiers:
        return
    for ident in identifiers:
        if ident.type == IdentifierType.IP:
            raise problem(
                ProblemType.REJECTED_IDENTIFIER,
                f"profile {name!r} does not allow IP address identifiers"
                + _profiles_allowing_ip(profiles),
                identifier=ident.to_json(),
            )


def _profiles_allowing_ip(profiles: Mapping[str, Profile]) -> str:
    allowing = sorted(n for n, p in profiles.items() if p.ip_identifiers)
    if not allowing:
        return ""
    pick = "shortlived" if "shortlived" in allowing else allowing[0]
    named = " or ".join(repr(n) for n in allowing)
    return f"; ask for profile {named} instead (--preferred-profile {pick})"


def descriptions(profiles: Mapping[str, Profile]) -> dict[str, str]:
    return {name: p.description for name, p in profiles.items()}
