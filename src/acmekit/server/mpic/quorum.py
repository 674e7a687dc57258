"""The quorum rule of multi-perspective issuance corroboration (pure).

CA/Browser Forum Baseline Requirements §3.2.2.9: after the primary network perspective
validated, remote perspectives must corroborate both the domain control validation and
the CAA check. Of N remote perspectives,

| remotes used | may fail to corroborate |
|--------------|-------------------------|
| 2 to 5       | 1                       |
| 6 or more    | 2                       |

and the corroborating ones must fall within the service regions of at least two distinct
Regional Internet Registries. Fewer than two remotes cannot corroborate anything.

`decide` is asked after each answer, so the caller can stop asking (and cancel the
stragglers) as soon as the outcome can no longer change: it returns PASS once the
corroborating perspectives already satisfy the rule, FAIL once no set of further answers
could, and PENDING otherwise. For any order of answers its first decided verdict is the
verdict of the complete set (tests/unit/test_mpic_quorum.py checks it exhaustively).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

MIN_REMOTES = 2
MIN_RIRS = 2


class Rir(StrEnum):
    """The five Regional Internet Registries (a perspective's service region)."""

    ARIN = "ARIN"
    RIPE = "RIPE"
    APNIC = "APNIC"
    LACNIC = "LACNIC"
    AFRINIC = "AFRINIC"


class Verdict(StrEnum):
    PENDING = "pending"
    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class Remote:
    """A configured remote perspective: its name and its RIR."""

    name: str
    rir: Rir


def allowed_failures(remotes: int) -> int:
    """How many remotes may fail to corroborate (BR §3.2.2.9's table)."""
    if remotes < MIN_REMOTES:
        raise ValueError(f"at least {MIN_REMOTES} remote perspectives are needed, not {remotes}")
    return 1 if remotes <= 5 else 2


def required(remotes: int) -> int:
    """How many remotes must corroborate."""
    return remotes - allowed_failures(remotes)


def check_remotes(remotes: Sequence[Remote]) -> None:
    """Raise ValueError for a set of remotes that could never meet the rule: fewer than
    two, names given twice, or all of them in one RIR."""
    allowed_failures(len(remotes))
    names = [r.name for r in remotes]
    if len(set(names)) != len(names):
        raise ValueError("perspective names must be unique")
    if len({r.rir for r in remotes}) < MIN_RIRS:
        raise ValueError(f"the perspectives must span at least {MIN_RIRS} RIRs")


def _rirs(remotes: Sequence[Remote], names: Collection[str]) -> int:
    return len({r.rir for r in remotes if r.name in names})


def meets(remotes: Sequence[Remote], corroborating: Collection[str]) -> bool:
    """Whether these corroborating remotes (by name) satisfy the rule."""
    return (
        len(corroborating) >= required(len(remotes)) and _rirs(remotes, corroborating) >= MIN_RIRS
    )


def decide(remotes: Sequence[Remote], answers: Mapping[str, bool]) -> Verdict:
    """The verdict given the answers so far (name -> corroborated); unanswered remotes
    are pending. PASS or FAIL is final: no later answer can change it."""
    passed = {name for name, ok in answers.items() if ok}
    if meets(remotes, passed):
        return Verdict.PASS
    pending = {r.name for r in remotes if r.name not in answers}
    # The best case: every pending remote corroborates.
    return Verdict.PENDING if meets(remotes, passed | pending) else Verdict.FAIL


def quorum_text(remotes: int, corroborating: int) -> str:
    """As recorded and logged: "3/4" is three of four remotes corroborated."""
    return f"{corroborating}/{remotes}"


__all__ = [
    "Remote",
    "Rir",
    "Verdict",
    "allowed_failures",
    "check_remotes",
    "decide",
    "meets",
    "quorum_text",
    "required",
]
