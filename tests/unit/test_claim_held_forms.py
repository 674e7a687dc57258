"""The statements of a claimed replacement's batch are rewritten to be made only while
the claim is held (repos/orders._while_claim_held); a statement of another form is
refused, not rewritten into something else (a trailing clause silently dropped)."""

from __future__ import annotations

import pytest

from acmekit.server.repos.orders import _while_claim_held


def test_rows_of_parameters_become_a_select_while_the_claim_is_held() -> None:
    made = _while_claim_held("INSERT INTO challenges (id, token) VALUES (?, ?), (?, ?)")
    assert made.startswith("INSERT INTO challenges (id, token) SELECT * FROM (VALUES ")
    assert made.count("CAST(? AS") == 4


@pytest.mark.parametrize(
    "text",
    [
        "INSERT INTO challenges (id, token) VALUES (?, ?) ON CONFLICT DO NOTHING",
        "INSERT INTO challenges (id, token) VALUES (?, ?) RETURNING id",
        "INSERT INTO challenges (id, token) SELECT id, token FROM challenges",
        "DELETE FROM challenges WHERE id = ?",
        "UPDATE authorizations SET renewal_order_id = ?",
    ],
)
def test_other_forms_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="no form made while a claim is held"):
        _while_claim_held(text)
