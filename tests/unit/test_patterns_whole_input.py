"""Patterns that check a whole string check all of it: Python's `$` also matches before a
final newline, and `\\d` takes any script's digits (which `int()` then reads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from acmekit.certbot.lineage import archive_versions
from acmekit.certbot.nginx.parser import dump_directive, quote, tokenize


@pytest.mark.parametrize("word", ["/etc/ssl/x.pem\n", "a.test\n"], ids=["path", "name"])
def test_a_word_ending_in_a_newline_is_quoted_and_reads_back_whole(word: str) -> None:
    assert quote(word).startswith('"')
    written = dump_directive("d", [word])
    assert [t.value for t in tokenize(written)] == ["d", word, ";"]


def test_archive_versions_are_named_by_ascii_digits_alone(tmp_path: Path) -> None:
    for name in ("cert1.pem", "cert2.pem\n", "cert\u0663.pem", "privkey\u0661.pem"):
        (tmp_path / name).write_text("")
    assert archive_versions(tmp_path) == {1: {"cert"}}
