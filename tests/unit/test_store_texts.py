"""Statement texts kept per shape (`Texts`) are the texts the store built per call."""

from __future__ import annotations

import pytest

from acmekit.server.repos import base, orders


def test_a_text_is_made_once_per_key() -> None:
    made: list[int] = []
    texts = base.Texts(lambda n: made.append(n) or f"IN ({base.marks(n)})")
    assert texts[2] == "IN (?, ?)"
    assert texts[2] is texts[2]
    assert texts[3] == "IN (?, ?, ?)"
    assert made == [2, 3]


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_the_kept_texts_are_the_ones_built_before(n: int) -> None:
    assert orders._INSERT_CHALLENGES[n] == (
        "INSERT INTO challenges (id, authz_id, type, token, status) VALUES "
        + ", ".join(["(?, ?, ?, ?, ?)"] * n)
    )
    for dialect, reads in orders._READS.items():
        head = reads.authzs[1].removesuffix("(?)")
        assert head.endswith("FROM authorizations a WHERE a.id IN "), dialect
        assert reads.authzs[n] == head + f"({base.marks(n)})"


@pytest.mark.parametrize(
    ("extend", "evidence"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_a_finished_challenges_update_is_the_one_built_before(extend: bool, evidence: bool) -> None:
    # The deciding challenge first, always (migration 0010), then what the outcome adds.
    sets = [orders._DECIDED_BY] + (["expires = ?"] if extend else [])
    if evidence:
        sets += ["mpic_quorum = ?", "mpic_perspectives = ?", "dnssec_dcv = ?", "dnssec_caa = ?"]
    assert orders._FINISH_AUTHZ[(extend, evidence)] == (
        f"UPDATE authorizations SET {', '.join(sets)} WHERE id = "
        "(SELECT authz_id FROM challenges WHERE id = ?)"
    )


def test_statements_together_are_one_with_data_modifying_withs() -> None:
    texts = ("INSERT INTO a VALUES (?)", "UPDATE b SET c = ?", "INSERT INTO d VALUES (?)")
    assert base._TOGETHER[texts] == (
        "WITH w0 AS (INSERT INTO a VALUES (?)), w1 AS (UPDATE b SET c = ?) INSERT INTO d VALUES (?)"
    )
