"""The PostgreSQL statement that joins an order's inserts is keyed by their texts, whose
sequence follows the order's identifiers (three challenges for a DNS name, one for a
wildcard, two for an IP address): a client picks among 3**n shapes. The texts kept per
shape must stay bounded however many shapes clients send."""

from __future__ import annotations

import itertools

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


def test_the_texts_translated_for_psycopg_stay_bounded() -> None:
    class Driver:
        def execute(self, text: str, params: object) -> None:
            self.text = text

        rowcount = 1

    driver = Driver()
    kept: dict[str, str] = {}
    cursor = base._FormatCursor(driver, kept)
    for shape in _shapes(base.FORMAT_TEXTS_KEPT + 100):
        text = base._together_text(shape)
        cursor.run(text, ())
        assert driver.text == text.replace("?", "%s")
    assert len(kept) == base.FORMAT_TEXTS_KEPT
