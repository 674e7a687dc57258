"""The PostgreSQL statement that joins an order's inserts is keyed by their texts, whose
sequence follows the order's identifiers (three challenges for a DNS name, one for a
wildcard, two for an IP address): a client picks among 3**n shapes. The texts kept per
shape must stay bounded however many shapes clients send."""

from __future__ import annotations

import itertools

from psycopg.adapt import PyFormat

from acmekit.server.repos import base, orders


def _shapes(count: int) -> list[tuple[str, ...]]:
    authz = orders._INSERT_AUTHZ
    chall = orders._INSERT_CHALLENGES
    shapes = []
    for picks in itertools.islice(itertools.product((1, 2, 3), repeat=12), count):
        texts = [t for n in picks for t in (authz, chall[n])]
        shapes.append((*texts, orders._INSERT_ORDER))
    return shapes


def test_the_joined_texts_kept_stay_bounded_over_many_order_shapes() -> None:
    together = base.Texts(base._together_text)
    for shape in _shapes(5000):
        assert together[shape] == base._together_text(shape)
    assert len(together) <= base.Texts.KEPT


def test_the_process_wide_joined_texts_stay_bounded() -> None:
    for shape in _shapes(5000):
        base._TOGETHER[shape]
    assert len(base._TOGETHER) <= base.Texts.KEPT


def test_a_text_past_the_bound_is_still_the_text_of_its_key() -> None:
    texts = base.Texts(lambda n: f"IN ({base.marks(n)})")
    for n in range(1, base.Texts.KEPT + 50):
        assert texts[n] == f"IN ({base.marks(n)})"
    assert len(texts) == base.Texts.KEPT


def test_the_texts_translated_for_postgresql_stay_bounded() -> None:
    class Statements:
        def send(self, sql: tuple[bytes, tuple[str, ...]], params: object) -> object:
            self.sql = sql
            return Result()

    class Result:
        status = 1  # COMMAND_OK
        command_tuples = 1

    statements = Statements()
    kept = base.Texts(base._translated, base.FORMAT_TEXTS_KEPT)  # as a Database keeps them
    cursor = base._FormatCursor(None, kept, statements)  # type: ignore[arg-type]
    for shape in _shapes(base.FORMAT_TEXTS_KEPT + 100):
        text = base._together_text(shape)
        assert cursor.run(text, ()) == 1
        assert statements.sql == (base.numbered(text), (PyFormat.AUTO,) * text.count("?"))
    assert len(kept) == base.FORMAT_TEXTS_KEPT


def test_placeholders_are_numbered_in_order() -> None:
    assert base.numbered("SELECT a FROM t WHERE b = ? AND c IN (?, ?)") == (
        b"SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
    )
    assert base.numbered("SELECT 1") == b"SELECT 1"
